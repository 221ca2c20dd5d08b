//! The metrics a worker publishes through the `metrics` facade (its own test binary, since
//! it installs the process-wide recorder).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use errand::{Client, JobState, ListFilter};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// A metric's name and labels.
type MetricId = (String, Vec<(String, String)>);

/// Accumulates snapshots: the debugging recorder drains values on every snapshot.
#[derive(Default)]
struct Seen {
    counters: HashMap<MetricId, u64>,
    gauges: HashMap<MetricId, f64>,
    histograms: HashMap<MetricId, Vec<f64>>,
}

impl Seen {
    fn absorb(&mut self, snap: &Snapshotter) {
        for (key, _, _, v) in snap.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let id = (key.name().to_owned(), labels);
            match (kind, v) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    *self.counters.entry(id).or_default() += n
                }
                (MetricKind::Gauge, DebugValue::Gauge(g)) => {
                    self.gauges.insert(id, g.into_inner());
                }
                (MetricKind::Histogram, DebugValue::Histogram(h)) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(h.into_iter().map(|x| x.into_inner())),
                _ => {}
            }
        }
    }

    fn find<'a, T>(
        map: &'a HashMap<MetricId, T>,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&'a T> {
        map.iter().find_map(|((n, ls), v)| {
            (n == name
                && labels
                    .iter()
                    .all(|(k, val)| ls.iter().any(|(lk, lv)| lk == k && lv == val)))
            .then_some(v)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        Self::find(&self.counters, name, labels)
            .copied()
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        Self::find(&self.gauges, name, labels).copied()
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        Self::find(&self.histograms, name, labels)
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_publishes_counters_histograms_and_gauges() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    recorder.install().expect("install recorder");

    let store = errand::MemoryStore::new();
    let client = Client::new(store.clone());
    client
        .enqueue_many((0..5).map(|n| Echo { n }))
        .await
        .unwrap();
    client.enqueue(Flaky { fail: 1 }).await.unwrap();
    client
        .enqueue(Ender {
            how: "cancel".into(),
        })
        .await
        .unwrap();
    client
        .enqueue(Ender {
            how: "discard".into(),
        })
        .await
        .unwrap();
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 4)
        .stats_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .start();
    wait_for("all jobs final", Duration::from_secs(10), || async {
        client
            .count(&ListFilter::new().state(JobState::Completed))
            .await
            .unwrap()
            == 6
            && client
                .count(&ListFilter::new().state(JobState::Cancelled))
                .await
                .unwrap()
                == 1
            && client
                .count(&ListFilter::new().state(JobState::Discarded))
                .await
                .unwrap()
                == 1
    })
    .await;
    let seen = std::sync::Mutex::new(Seen::default());
    wait_for("gauges published", Duration::from_secs(5), || async {
        let mut seen = seen.lock().unwrap();
        seen.absorb(&snap);
        let g = |state| seen.gauge("errand_jobs", &[("queue", "default"), ("state", state)]);
        g("available") == Some(0.0) && g("running") == Some(0.0) && g("retryable") == Some(0.0)
    })
    .await;
    worker.shutdown().await;
    let mut seen = seen.into_inner().unwrap();
    seen.absorb(&snap);

    let echo = [("queue", "default"), ("kind", "echo")];
    assert_eq!(seen.counter("errand_jobs_enqueued_total", &echo), 5);
    assert_eq!(seen.counter("errand_jobs_started_total", &echo), 5);
    assert_eq!(seen.counter("errand_jobs_completed_total", &echo), 5);
    let flaky = [("queue", "default"), ("kind", "flaky")];
    assert_eq!(seen.counter("errand_jobs_retried_total", &flaky), 1);
    assert_eq!(seen.counter("errand_jobs_completed_total", &flaky), 1);
    let ender = [("kind", "ender")];
    assert_eq!(seen.counter("errand_jobs_cancelled_total", &ender), 1);
    assert_eq!(seen.counter("errand_jobs_discarded_total", &ender), 1);
    assert_eq!(
        seen.histogram("errand_job_duration_seconds", &echo).len(),
        5
    );
    let latency = seen.histogram("errand_job_latency_seconds", &echo);
    assert!(
        latency.len() == 5 && latency.iter().all(|x| *x >= 0.0),
        "{latency:?}"
    );
    assert_eq!(
        seen.gauge(
            "errand_jobs",
            &[("queue", "default"), ("state", "completed")]
        ),
        None,
        "final states are not counted by the gauge service"
    );

    #[cfg(feature = "sqlite")]
    {
        // Inside the application's transaction: counted apart, at insert (errand cannot see the
        // commit), never in errand_jobs_enqueued_total.
        let (sqlite, _dir) = sqlite().await;
        let tx_client = Client::new(sqlite.clone());
        let mut tx = sqlite.pool().begin().await.unwrap();
        tx_client
            .enqueue_tx(&mut tx, Echo { n: 100 })
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let mut tx = sqlite.pool().begin().await.unwrap();
        tx_client
            .enqueue_tx(&mut tx, Echo { n: 101 })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        seen.absorb(&snap);
        assert_eq!(seen.counter("errand_jobs_enqueued_total", &echo), 5);
        assert_eq!(seen.counter("errand_jobs_enqueued_in_tx_total", &echo), 2);
    }
}
