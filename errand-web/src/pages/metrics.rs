//! `/metrics`: Prometheus text for the whole store, computed once per scrape here (not
//! published by every worker and summed wrong): jobs by queue and state, each queue's lag
//! and pause, workers alive and silent, the jobs they hold, whether a leader runs
//! maintenance. A source that fails or is slow is left out and `errand_metrics_source_up`
//! says which.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use errand::{JobState, MAINTENANCE_LEADER};
use metrics::{describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::app::App;
use crate::pages::overview::bounded;

pub(crate) async fn show(State(app): State<App>) -> Response {
    let store = app.store();
    let now = app.now().await;
    let (counts, oldest, records, workers, leader) = tokio::join!(
        crate::pages::counts::Counts::read(&app),
        bounded(&app, store.oldest_available()),
        bounded(&app, store.queues()),
        bounded(&app, store.workers()),
        bounded(&app, store.leader(MAINTENANCE_LEADER)),
    );
    // A recorder of this scrape's own: nothing global is touched, and series of queues
    // that are gone disappear with it.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe_gauge!(
            "errand_queue_jobs",
            "Jobs in the store by queue and state (lower bounds where errand_queue_jobs_exact is 0)."
        );
        describe_gauge!(
            "errand_queue_jobs_exact",
            "0 when a state has more jobs than the dashboard's count limit: its errand_queue_jobs are lower bounds."
        );
        describe_gauge!(
            "errand_queue_lag_seconds",
            "Age of the oldest available job of each queue (0 when none waits)."
        );
        describe_gauge!("errand_queue_paused", "1 while the queue is paused.");
        describe_gauge!(
            "errand_workers",
            "Worker processes in the registry by status (alive: reported within three of its presence intervals)."
        );
        describe_gauge!(
            "errand_workers_jobs_held",
            "Jobs held (claimed or running) by alive workers."
        );
        describe_gauge!(
            "errand_leader_present",
            "1 while a worker holds the maintenance lease."
        );
        describe_gauge!(
            "errand_metrics_source_up",
            "1 when this scrape read the source in time; 0 when its series are missing."
        );
        let up = |source: &'static str, ok: bool| {
            gauge!("errand_metrics_source_up", "source" => source).set(if ok { 1.0 } else { 0.0 })
        };
        up("counts", counts.missing.is_empty());
        for (i, s) in JobState::ALL.iter().enumerate() {
            if counts.missing.iter().any(|(m, _)| m == s) {
                continue;
            }
            gauge!("errand_queue_jobs_exact", "state" => s.as_str())
                .set(if counts.capped.contains(s) { 0.0 } else { 1.0 });
            // Every known queue, so a state that empties reads 0, not absent.
            for (q, c) in &counts.queues {
                gauge!("errand_queue_jobs", "queue" => q.clone(), "state" => s.as_str())
                    .set(c[i] as f64);
            }
        }
        up("lag", oldest.is_ok());
        if let Ok(oldest) = &oldest {
            for (q, t) in oldest {
                gauge!("errand_queue_lag_seconds", "queue" => q.clone())
                    .set(((now - *t).num_milliseconds().max(0) as f64) / 1000.0);
            }
            // Queues known with nothing waiting: lag 0.
            for q in counts.queues.keys() {
                gauge!("errand_queue_lag_seconds", "queue" => q.clone()).increment(0.0);
            }
        }
        up("queues", records.is_ok());
        if let Ok(records) = &records {
            for r in records {
                gauge!("errand_queue_paused", "queue" => r.name.clone()).set(if r.paused {
                    1.0
                } else {
                    0.0
                });
            }
        }
        up("workers", workers.is_ok());
        if let Ok(workers) = &workers {
            let alive = workers.iter().filter(|w| w.is_alive(now));
            gauge!("errand_workers", "status" => "alive").set(alive.clone().count() as f64);
            gauge!("errand_workers", "status" => "silent")
                .set(workers.iter().filter(|w| !w.is_alive(now)).count() as f64);
            gauge!("errand_workers_jobs_held")
                .set(alive.map(|w| u64::from(w.running)).sum::<u64>() as f64);
        }
        up("leader", leader.is_ok());
        if let Ok(leader) = &leader {
            let present = leader.as_ref().is_some_and(|l| l.expires_at > now);
            gauge!("errand_leader_present").set(if present { 1.0 } else { 0.0 });
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
