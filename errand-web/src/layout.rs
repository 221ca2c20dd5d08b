//! The page shell (navigation, assets, live refresh) and the small pieces every page uses.
//! Everything is rendered by maud, which escapes every value spliced into the page: job
//! data can only ever appear as text.

use chrono::{DateTime, Utc};
use errand::JobState;
use maud::{html, Markup, DOCTYPE};

use crate::app::Page;

/// Renders `content` inside the shell, or alone when the request asked for the live
/// fragment only (the refresh script does).
pub(crate) fn page(p: &Page, title: &str, live: bool, content: Markup) -> Markup {
    if p.fragment {
        return content;
    }
    let base = &p.base;
    let nav = [
        ("/", "Overview"),
        ("/jobs", "Jobs"),
        ("/queues", "Queues"),
        ("/workers", "Workers"),
        ("/workflows", "Workflows"),
        ("/cron", "Cron"),
        ("/audit", "Audit log"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (p.config.title) }
                link rel="stylesheet" href={ (base) "/assets/style.css" };
                script src={ (base) "/assets/live.js" } defer {}
            }
            body {
                header {
                    a.brand href={ (base) "/" } { (p.config.title) }
                    nav {
                        @for (path, label) in nav {
                            a href={ (base) (path) }
                              aria-current=[(p.section == path).then_some("page")] { (label) }
                        }
                    }
                    span.who {
                        (p.actor.name)
                        @if p.read_only() { " · read-only" }
                    }
                    @if live {
                        button #live-toggle type="button" data-every=(p.config.refresh.as_millis()) {
                            "Pause live updates"
                        }
                    }
                }
                main #live data-live=[live.then_some("1")] {
                    (content)
                }
            }
        }
    }
}

/// A state as a coloured label.
pub(crate) fn state(s: JobState) -> Markup {
    html! { span class={ "state " (s.as_str()) } { (s.as_str()) } }
}

/// A time in UTC with how long ago (or ahead) it is from `now`.
pub(crate) fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) {
            (t.format("%Y-%m-%d %H:%M:%S")) " " small { "(" (ago(t, now)) ")" }
        }
    }
}

/// `3 s ago`, `in 2 min`.
pub(crate) fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    // Rounded to the nearest unit: a tick 2 h 59 min 59 s away reads "in 3 h".
    let span = match n {
        0..=59 => format!("{n} s"),
        60..=3_569 => format!("{} min", (n + 30) / 60),
        3_570..=172_799 => format!("{} h", (n + 1_800) / 3_600),
        _ => format!("{} d", (n + 43_200) / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A duration in seconds, for lags.
pub(crate) fn lag(secs: i64) -> String {
    match secs.max(0) {
        s @ 0..=119 => format!("{s} s"),
        s @ 120..=7_199 => format!("{} min", s / 60),
        s => format!("{} h", s / 3_600),
    }
}

/// The hidden field every action form carries.
pub(crate) fn csrf(p: &Page) -> Markup {
    html! { input type="hidden" name="csrf" value=(p.csrf); }
}

/// A form posting to `action` with one button; nothing when the viewer may not act.
pub(crate) fn action(p: &Page, action: &str, label: &str, class: &str) -> Markup {
    if p.read_only() {
        return html! {};
    }
    html! {
        form.inline method="post" action={ (p.base) (action) } {
            (csrf(p))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A notice that part of the page could not be read in time or at all.
pub(crate) fn degraded(what: &str, why: &str) -> Markup {
    html! { p.degraded role="status" { (what) ": " (why) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_both_ways() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let t = |s: i64| DateTime::from_timestamp(1_000_000 + s, 0).unwrap();
        assert_eq!(ago(t(-5), now), "5 s ago");
        assert_eq!(ago(t(120), now), "in 2 min");
        assert_eq!(ago(t(-7_200), now), "2 h ago");
        assert_eq!(ago(t(-3 * 86_400), now), "3 d ago");
        assert_eq!(ago(t(3 * 3_600 - 1), now), "in 3 h");
        assert_eq!(ago(t(-89), now), "1 min ago");
        assert_eq!(ago(t(-91), now), "2 min ago");
        assert_eq!(lag(-3), "0 s");
        assert_eq!(lag(7_300), "2 h");
    }
}
