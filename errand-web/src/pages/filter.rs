//! The job filter the jobs page and its bulk actions share: read from a query string or a
//! form, turned into a store filter, written back into links and hidden fields.

use errand::{store::ListFilter, JobState};
use maud::{html, Markup};

use crate::form::Fields;

/// What the operator filtered on (each optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JobsFilter {
    pub(crate) state: Option<JobState>,
    pub(crate) queue: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) tag: Option<String>,
}

impl JobsFilter {
    /// From the fields of a query string or form; an unknown state is an error to show.
    pub(crate) fn read(f: &Fields) -> Result<Self, String> {
        let state = match f.get("state") {
            None => None,
            Some(s) => Some(
                s.parse::<JobState>()
                    .map_err(|_| format!("unknown state {s:?}: choose one from the list"))?,
            ),
        };
        Ok(JobsFilter {
            state,
            queue: f.get("queue").map(str::to_owned),
            kind: f.get("kind").map(str::to_owned),
            tag: f.get("tag").map(str::to_owned),
        })
    }

    pub(crate) fn store_filter(&self) -> ListFilter {
        let mut f = ListFilter::new();
        if let Some(s) = self.state {
            f = f.state(s);
        }
        if let Some(q) = &self.queue {
            f = f.queue(q);
        }
        if let Some(k) = &self.kind {
            f = f.kind(k);
        }
        if let Some(t) = &self.tag {
            f = f.tag(t);
        }
        f
    }

    /// The store filter for a bulk `action`: the chosen state, or else the states the
    /// action changes, so that a run walks only jobs it can act on.
    pub(crate) fn for_action(&self, action: crate::pages::actions::JobAction) -> ListFilter {
        let mut f = self.store_filter();
        if self.state.is_none() {
            for s in action.default_states() {
                f = f.state(*s);
            }
        }
        f
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        if let Some(s) = self.state {
            v.push(("state", s.as_str()));
        }
        for (k, val) in [
            ("queue", &self.queue),
            ("kind", &self.kind),
            ("tag", &self.tag),
        ] {
            if let Some(val) = val {
                v.push((k, val.as_str()));
            }
        }
        v
    }

    /// As a query string (`state=discarded&queue=mail`), escaped for a URL.
    pub(crate) fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// As hidden form fields.
    pub(crate) fn hidden(&self) -> Markup {
        html! {
            @for (k, v) in self.pairs() {
                input type="hidden" name=(k) value=(v);
            }
        }
    }

    /// In words, for confirmations and the audit log.
    pub(crate) fn describe(&self) -> String {
        let p = self.pairs();
        if p.is_empty() {
            "every job".into()
        } else {
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    #[test]
    fn a_filter_survives_its_own_query_string() {
        let f = JobsFilter {
            state: Some(JobState::Discarded),
            queue: Some("a&b=c <x>".into()),
            kind: None,
            tag: Some("é".into()),
        };
        let back = JobsFilter::read(&Fields::parse(&Bytes::from(f.query()))).unwrap();
        assert_eq!(back, f);
        assert_eq!(f.describe(), "state=discarded queue=a&b=c <x> tag=é");
        assert!(JobsFilter::read(&Fields::parse(&Bytes::from_static(b"state=nope"))).is_err());
    }
}
