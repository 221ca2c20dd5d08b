//! What the bench reads off the process: queries issued, CPU time, peak memory, latency
//! percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Counting of statements is on only while this is set (the idle phase), so that the
/// other phases pay nothing for it.
pub(crate) static COUNT_QUERIES: AtomicBool = AtomicBool::new(false);
/// Statements seen while counting.
pub(crate) static QUERIES: AtomicU64 = AtomicU64::new(0);

/// A tracing layer that counts per-statement events: sqlx's (target `sqlx::query`) and the
/// SQLite store's own connection's (`errand_sqlite::query`).
pub fn query_counter<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    struct Count;
    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(
            &self,
            _event: &tracing::Event<'_>,
            _cx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            QUERIES.fetch_add(1, Ordering::Relaxed);
        }
    }
    // A dynamic filter for sqlx's statement events: asked at every event, never cached, so
    // switching the flag takes effect at once. Every other callsite is ruled out once, when
    // first seen: a filter asked at every span and event would make errand's own (disabled)
    // per-job spans and debug events cost a check each, which an application does not pay.
    Count.with_filter(
        tracing_subscriber::filter::dynamic_filter_fn(|meta, _cx| {
            is_statement(meta) && COUNT_QUERIES.load(Ordering::Relaxed)
        })
        .with_callsite_filter(|meta| {
            if is_statement(meta) {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::never()
            }
        }),
    )
}

/// Whether an event reports a statement: sqlx's, and the SQLite store's own connection's.
fn is_statement(meta: &tracing::Metadata<'_>) -> bool {
    matches!(meta.target(), "sqlx::query" | "errand_sqlite::query")
}

/// Counts statements issued while `f` runs.
pub(crate) async fn count_queries<F: std::future::Future>(f: F) -> (u64, F::Output) {
    let before = QUERIES.load(Ordering::Relaxed);
    COUNT_QUERIES.store(true, Ordering::SeqCst);
    let out = f.await;
    COUNT_QUERIES.store(false, Ordering::SeqCst);
    (QUERIES.load(Ordering::Relaxed) - before, out)
}

/// CPU time (user + system) of this process so far.
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')' + state.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// Resets the kernel's peak-RSS mark for this process (Linux: `clear_refs` 5).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, in MiB.
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// p50/p95/p99 in milliseconds of latencies given in microseconds.
pub(crate) fn percentiles(micros: &[u64], floor_ms: f64) -> Option<super::Latency> {
    if micros.is_empty() {
        return None;
    }
    // Bounded: 1 µs to 10 minutes. (`Histogram::new` starts with a highest trackable value
    // of 2 and grows only through `record`: `saturating_record` clamped samples to 2 µs
    // whenever they spread past about 2 ms, which is how runs printed a p50 of 0.002 ms.)
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .expect("valid histogram bounds");
    for &us in micros {
        h.saturating_record(us.max(1));
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Some(super::Latency {
        p50: ms(0.50),
        p95: ms(0.95),
        p99: ms(0.99),
        floor_ms,
        enqueue_p50: 0.0,
        after_enqueue_p50: 0.0,
        samples: micros.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_those_of_the_samples() {
        // Samples spread over 0.9–19 ms. The histogram as it was built before
        // (`Histogram::new(3)`, which starts tracking values up to 2 and grows only through
        // `record`) clamped them through `saturating_record` and read this set's p50 as
        // 0.002 ms.
        let micros = [
            14415, 1584, 12002, 16401, 16471, 10574, 19261, 10647, 6114, 3027, 864,
        ];
        let l = percentiles(&micros, 0.5).expect("samples");
        let within = |v: f64, exact: f64| (v - exact).abs() <= exact * 0.002;
        assert!(within(l.p50, 10.647), "{l:?}"); // the 6th of 11
        assert!(within(l.p99, 19.261), "{l:?}");
        assert_eq!(l.samples, 11);
    }
}
