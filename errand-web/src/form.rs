//! Form bodies with repeated fields (`ids=1&ids=2`), which `axum::Form` cannot read.

use axum::body::Bytes;

/// The fields of an `application/x-www-form-urlencoded` body, in order.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(crate) fn parse(body: &Bytes) -> Self {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `key`, when not empty.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_are_all_kept() {
        let f = Fields::parse(&Bytes::from_static(b"ids=1&ids=2&csrf=a%20b&empty="));
        assert_eq!(f.all("ids").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(f.get("csrf"), Some("a b"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.get("missing"), None);
    }
}
