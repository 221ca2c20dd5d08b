use std::io::Write;

use errand::StoreError;

use crate::{open_store, CliError};

pub(crate) async fn migrate(url: &str, schema: &str, out: &mut impl Write) -> Result<(), CliError> {
    // Where the schema stood, so the report says what this run applied.
    let (before, created) = match open_store(url, schema, false).await {
        Ok(store) => (store.schema_version().await?.0, false),
        Err(StoreError::NotMigrated { found, .. }) => (found, false),
        Err(StoreError::Missing(_)) if !crate::open::is_postgres(url) => (0, true),
        Err(e) => return Err(e.into()),
    };
    let store = open_store(url, schema, true).await?;
    let (version, _) = store.schema_version().await?;
    let place = if store.as_postgres().is_some() {
        format!("{} (schema {schema})", errand::store::redact_url(url))
    } else {
        url.to_owned()
    };
    if created {
        writeln!(out, "{place}: created the database file")?;
    }
    if version == before {
        writeln!(
            out,
            "{place}: schema at version {version}, up to date (nothing to apply)"
        )?;
    } else {
        let applied: Vec<String> = (before + 1..=version).map(|v| v.to_string()).collect();
        writeln!(
            out,
            "{place}: applied migration{} {}; schema at version {version}, up to date",
            if applied.len() == 1 { "" } else { "s" },
            applied.join(", ")
        )?;
    }
    Ok(())
}
