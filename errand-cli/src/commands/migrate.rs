use std::io::Write;

use crate::{open_store, CliError};

pub(crate) async fn migrate(url: &str, schema: &str, out: &mut impl Write) -> Result<(), CliError> {
    let store = open_store(url, schema, true).await?;
    // Opening for migration applied everything pending; report where the schema stands.
    let (version, _) = store.schema_version().await?;
    let place = match &store {
        crate::Backend::Postgres(_) => {
            format!("{} (schema {schema})", errand::store::redact_url(url))
        }
        crate::Backend::Sqlite(_) => url.to_owned(),
    };
    writeln!(out, "{place}: schema at version {version}, up to date")?;
    Ok(())
}
