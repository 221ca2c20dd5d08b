//! Keeping database passwords out of messages.

/// `url` with its password replaced by `***`: the user-info password
/// (`postgres://user:secret@host/db`) and a `password=` query parameter. Everything errand
/// prints or returns about a database names it through this, so logs never carry a secret.
///
/// ```
/// use errand_core::redact_url;
/// assert_eq!(redact_url("postgres://app:S3cret@db:5432/app"), "postgres://app:***@db:5432/app");
/// assert_eq!(redact_url("postgres://db/app?password=S3cret&sslmode=require"),
///            "postgres://db/app?password=***&sslmode=require");
/// assert_eq!(redact_url("sqlite:///var/errand.db"), "sqlite:///var/errand.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        // The authority ends at the first '/', '?' or '#' after the scheme.
        let auth_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..auth_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// The password `url` carries, if any (user-info or `password=` parameter), raw and
/// percent-decoded: what [`scrub`] removes from driver messages.
pub fn url_password(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let auth = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = auth.rfind('@') {
            if let Some((_, pw)) = auth[..at].split_once(':') {
                found.push(pw.to_owned());
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=') {
                if k.eq_ignore_ascii_case("password") {
                    found.push(v.to_owned());
                }
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found.retain(|p| !p.is_empty());
    found.sort();
    found.dedup();
    found
}

/// `text` with every occurrence of the passwords `url` carries replaced by `***`.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for pw in url_password(url) {
        out = out.replace(&pw, "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_replaced_wherever_they_sit() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&PASSWORD=x"),
            "postgres://h/db?user=u&PASSWORD=***"
        );
        assert_eq!(
            scrub(
                "failed for postgres://u:p%40ss@h/db (p@ss)",
                "postgres://u:p%40ss@h/db"
            ),
            "failed for postgres://u:***@h/db (***)"
        );
        assert_eq!(scrub("nothing here", "postgres://h/db"), "nothing here");
    }
}
