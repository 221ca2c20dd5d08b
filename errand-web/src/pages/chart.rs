//! The overview's chart: jobs finished per minute over the last hour (completed, discarded,
//! cancelled, stacked), drawn as inline SVG from the store's per-minute tallies.

use chrono::{DateTime, TimeDelta, Utc};
use errand::store::{minute_of, MinuteCount};
use errand::JobState;
use maud::{html, Markup};

const MINUTES: i64 = 60;
const WIDTH: i64 = 600;
const HEIGHT: i64 = 120;
const SERIES: [JobState; 3] = [
    JobState::Completed,
    JobState::Discarded,
    JobState::Cancelled,
];

/// The start of the hour the chart covers.
pub(crate) fn since(now: DateTime<Utc>) -> DateTime<Utc> {
    minute_of(now) - TimeDelta::minutes(MINUTES - 1)
}

/// The chart for `counts` (all queues summed), ending at `now`'s minute.
pub(crate) fn chart(counts: &[MinuteCount], now: DateTime<Utc>) -> Markup {
    let first = since(now);
    // minute index → count per series
    let mut bars = vec![[0u64; SERIES.len()]; MINUTES as usize];
    for c in counts {
        let i = (c.minute - first).num_minutes();
        let s = SERIES.iter().position(|s| *s == c.state);
        if let (Ok(i), Some(s)) = (usize::try_from(i), s) {
            if let Some(bar) = bars.get_mut(i) {
                bar[s] += c.count;
            }
        }
    }
    let peak = bars
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let totals: Vec<u64> = (0..SERIES.len())
        .map(|s| bars.iter().map(|b| b[s]).sum())
        .collect();
    let step = WIDTH / MINUTES;
    html! {
        figure.chart #throughput {
            svg width=(WIDTH) height=(HEIGHT + 16) viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 16) } role="img"
                aria-label="Jobs finished per minute over the last hour" {
                @for (i, bar) in bars.iter().enumerate() {
                    @let minute = first + TimeDelta::minutes(i as i64);
                    @let mut y = HEIGHT;
                    @for (s, n) in bar.iter().enumerate() {
                        @if *n > 0 {
                            @let h = ((*n as f64 / peak as f64) * HEIGHT as f64).ceil().max(1.0) as i64;
                            @let top = { y -= h; y };
                            rect class=(SERIES[s].as_str()) x=(i as i64 * step) y=(top) width=(step - 1) height=(h) {
                                title { (minute.format("%H:%M")) " UTC: " (n) " " (SERIES[s].as_str()) }
                            }
                        }
                    }
                }
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) class="axis" {}
                text x="0" y=(HEIGHT + 13) class="label" { "60 min ago" }
                text x=(WIDTH) y=(HEIGHT + 13) class="label end" { "now" }
                text x="2" y="10" class="label" { "peak " (peak) "/min" }
            }
            figcaption {
                "Finished in the last hour: "
                @for (s, state) in SERIES.iter().enumerate() {
                    span class={ "key " (state.as_str()) } { (totals[s]) " " (state.as_str()) }
                    @if s + 1 < SERIES.len() { ", " }
                }
                "."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_land_in_their_minute_and_scale_to_the_peak() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T22:30:20Z")
            .unwrap()
            .to_utc();
        let m = |ago: i64| minute_of(now) - TimeDelta::minutes(ago);
        let counts = vec![
            MinuteCount::new(m(0), "a", JobState::Completed, 40),
            MinuteCount::new(m(0), "b", JobState::Completed, 20),
            MinuteCount::new(m(0), "a", JobState::Discarded, 60),
            MinuteCount::new(m(59), "a", JobState::Completed, 30),
            MinuteCount::new(m(60), "a", JobState::Completed, 999), // before the hour
        ];
        let svg = chart(&counts, now).into_string();
        assert!(svg.contains("peak 120/min"), "{svg}");
        assert!(svg.contains("22:30 UTC: 60 completed"));
        assert!(svg.contains("22:30 UTC: 60 discarded"));
        assert!(svg.contains("21:31 UTC: 30 completed"));
        assert!(!svg.contains("999"));
        assert!(svg.contains("90 completed"), "the hour's total");
        // The last minute's bar fills the height: two halves of 60 px.
        assert!(
            svg.contains(r#"x="590" y="60" width="9" height="60""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"x="590" y="0" width="9" height="60""#),
            "{svg}"
        );
    }
}
