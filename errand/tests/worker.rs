//! End-to-end behaviour of the worker runtime through the public API, on the in-memory
//! store, a real SQLite file and a real Postgres schema (with the `postgres` feature, which
//! `cargo test --workspace` enables).
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobOptions, JobState, ListFilter, QueueOptions};

on_every_store!(
    runs_every_job_once,
    failed_jobs_retry_then_succeed,
    out_of_attempts_is_discarded_with_history,
    panic_is_recorded_and_retried,
    timeout_stops_the_job_and_records_it,
    malformed_payload_is_discarded_and_kept,
    unknown_kind_is_kept_and_retryable,
    invalid_options_write_nothing,
    snooze_runs_again_without_using_an_attempt,
    cancel_and_discard_outcomes_are_final,
    delayed_job_waits_for_its_time,
    graceful_shutdown_returns_unfinished_jobs,
    shutdown_returns_prefetched_jobs_unstarted,
    shutdown_finishes_the_running_job_but_starts_no_buffered_one,
    a_buffered_job_cancelled_meanwhile_is_skipped,
    shutdown_lets_short_jobs_finish,
    heartbeat_keeps_a_long_job_past_its_lease,
    cancelling_a_running_job_stops_it,
);

async fn runs_every_job_once<S: Store + Clone>(store: S) {
    let probe = Probe::default();
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((0..200).map(|n| Echo { n }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 8)
        .build()
        .unwrap()
        .start();
    wait_for("200 jobs completed", Duration::from_secs(20), || async {
        client
            .count(&ListFilter::new().state(JobState::Completed))
            .await
            .unwrap()
            == 200
    })
    .await;
    worker.shutdown().await;
    for id in ids {
        assert_eq!(probe.runs(id), 1, "job {id} ran {} times", probe.runs(id));
    }
}

async fn failed_jobs_retry_then_succeed<S: Store + Clone>(store: S) {
    let probe = Probe::default();
    let client = Client::new(store.clone());
    let id = client.enqueue(Flaky { fail: 2 }).await.unwrap().id;
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(row.attempt, 3);
    assert_eq!(probe.runs(id), 3);
    let msgs: Vec<_> = row
        .errors
        .iter()
        .map(|e| (e.attempt, e.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [
            (1, "flaky failure on attempt 1"),
            (2, "flaky failure on attempt 2")
        ]
    );
}

async fn out_of_attempts_is_discarded_with_history<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Flaky { fail: 99 }).await.unwrap().id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(row.attempt, 3);
    assert_eq!(row.errors.len(), 3);
    assert_eq!(row.errors[2].message, "flaky failure on attempt 3");
    assert!(row.finalized_at.is_some());
}

async fn panic_is_recorded_and_retried<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Panicker).await.unwrap().id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    // The worker survived the panics: it still runs other jobs.
    let echo = client.enqueue(Echo { n: 1 }).await.unwrap().id;
    wait_state(&store, echo, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(probe.runs(id), 2, "retried once after the first panic");
    assert_eq!(row.errors.len(), 2);
    for e in &row.errors {
        assert!(e.panic, "{e:?}");
        assert_eq!(e.message, "job panicked: kaboom: index 3 of 0");
    }
}

async fn timeout_stops_the_job_and_records_it<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client
        .enqueue_with(
            Sleeper { ms: 60_000 },
            JobOptions::new().timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(row.errors.len(), 1);
    assert_eq!(
        row.errors[0].message,
        "job timed out after 100 ms and was stopped"
    );
}

async fn malformed_payload_is_discarded_and_kept<S: Store + Clone>(store: S) {
    let args = r#"{"n":"not a number"}"#;
    let id = store
        .insert(vec![raw_job("echo", args)], chrono::Utc::now())
        .await
        .unwrap()[0]
        .id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(
        probe.runs(id),
        0,
        "a job whose payload does not decode never runs"
    );
    assert_eq!(row.errors.len(), 1);
    let msg = &row.errors[0].message;
    assert!(
        msg.starts_with(
            "payload does not deserialize into kind 'echo': invalid type: string \"not a number\""
        ),
        "{msg}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&row.args).unwrap(),
        serde_json::from_str::<serde_json::Value>(args).unwrap(),
        "payload kept intact"
    );
}

async fn unknown_kind_is_kept_and_retryable<S: Store + Clone>(store: S) {
    let id = store
        .insert(vec![raw_job("mystery", "{}")], chrono::Utc::now())
        .await
        .unwrap()[0]
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Retryable).await;
    worker.shutdown().await;
    assert_eq!(row.attempt, 1);
    assert_eq!(row.errors.len(), 1);
    assert!(
        row.errors[0]
            .message
            .starts_with("unknown job kind 'mystery': this worker has no handler"),
        "{}",
        row.errors[0].message
    );
    // Recoverable by hand once a worker knows the kind.
    let retried = Client::new(store.clone()).retry(id).await.unwrap().unwrap();
    assert_eq!(retried.state, JobState::Available);
}

async fn invalid_options_write_nothing<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let cases = [
        ("max_attempts", JobOptions::new().max_attempts(0)),
        ("queue", JobOptions::new().queue("")),
        ("queue", JobOptions::new().queue("q".repeat(129))),
        (
            "delay",
            JobOptions::new().delay_by(chrono::TimeDelta::seconds(-1)),
        ),
    ];
    for (option, opts) in cases {
        match client.enqueue_with(Echo { n: 1 }, opts).await {
            Err(errand::EnqueueError::InvalidOption { option: o, reason }) => {
                assert_eq!(o, option, "{reason}");
            }
            other => panic!("expected InvalidOption({option}), got {other:?}"),
        }
    }
    // One bad job in a batch: nothing of the batch is written.
    let mut batch = errand::Batch::new();
    batch.add(Echo { n: 1 });
    batch.add_with(Echo { n: 2 }, JobOptions::new().max_attempts(0));
    assert!(client.enqueue_batch(batch).await.is_err());
    let too_big = Client::new(store.clone()).max_payload_bytes(8);
    assert!(matches!(
        too_big.enqueue(Echo { n: 123_456_789 }).await,
        Err(errand::EnqueueError::PayloadTooLarge {
            size: 15,
            limit: 8,
            ..
        })
    ));
    // Postgres cannot store U+0000 in JSON: every store refuses it alike, before writing.
    assert!(matches!(
        client.enqueue(Ender { how: "a\0b".into() }).await,
        Err(errand::EnqueueError::NulInPayload { kind: "ender" })
    ));
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 0);
}

async fn snooze_runs_again_without_using_an_attempt<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Snoozer).await.unwrap().id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(probe.runs(id), 2);
    assert_eq!(row.attempt, 1, "the snoozed run gave its attempt back");
    assert!(row.errors.is_empty());
}

async fn cancel_and_discard_outcomes_are_final<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let c = client
        .enqueue(Ender {
            how: "cancel".into(),
        })
        .await
        .unwrap()
        .id;
    let d = client
        .enqueue(Ender {
            how: "discard".into(),
        })
        .await
        .unwrap()
        .id;
    let r = client
        .enqueue(Ender {
            how: "retry".into(),
        })
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 3)
        .build()
        .unwrap()
        .start();
    let c = wait_state(&store, c, JobState::Cancelled).await;
    let d = wait_state(&store, d, JobState::Discarded).await;
    let r = wait_state(&store, r, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(c.errors[0].message, "no longer needed");
    assert_eq!(
        (d.attempt, d.errors[0].message.as_str()),
        (1, "corrupt input")
    );
    assert_eq!(r.attempt, 2, "explicit retry uses attempts, then discards");
    assert_eq!(r.errors[1].message, "try later");
}

async fn delayed_job_waits_for_its_time<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let start = chrono::Utc::now();
    let id = client
        .enqueue_with(
            Echo { n: 1 },
            JobOptions::new().delay(Duration::from_millis(400)),
        )
        .await
        .unwrap()
        .id;
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    let began = row.attempted_at.unwrap();
    assert!(
        began >= start + chrono::Duration::milliseconds(400),
        "ran at {began}, enqueued {start}"
    );
}

async fn graceful_shutdown_returns_unfinished_jobs<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Sleeper { ms: 60_000 }).await.unwrap().id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap()
        .start();
    wait_state(&store, id, JobState::Running).await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 1);
    let row = store.get(id).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.attempt, 0, "no attempt charged");
    assert!(row.errors.is_empty());
}

/// Sleepers of `ms` each on one slot, the first running and the rest waiting claimed in the
/// buffer; `tune` adjusts the worker. Returns once the first runs.
async fn one_running_rest_buffered<S: Store + Clone>(
    store: &S,
    ms: &[u64],
    tune: impl FnOnce(errand::WorkerBuilder<S, Probe>) -> errand::WorkerBuilder<S, Probe>,
) -> (Vec<i64>, Probe, errand::WorkerHandle) {
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many(ms.iter().map(|&ms| Sleeper { ms }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let probe = Probe::default();
    let worker = tune(builder(store.clone(), probe.clone()))
        .queue("default", QueueOptions::new(1).prefetch(ms.len() - 1))
        .build()
        .unwrap()
        .start();
    for id in &ids {
        wait_state(store, *id, JobState::Running).await;
    }
    wait_for("the first job to start", Duration::from_secs(5), || async {
        probe.total() == 1
    })
    .await;
    assert_eq!(probe.runs(ids[0]), 1, "the first job runs, the others wait");
    (ids, probe, worker)
}

async fn shutdown_returns_prefetched_jobs_unstarted<S: Store + Clone>(store: S) {
    let (ids, probe, worker) = one_running_rest_buffered(&store, &[60_000; 4], |b| {
        b.grace_period(Duration::from_millis(100))
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 4);
    assert_eq!(probe.total(), 1, "buffered jobs never started");
    for id in ids {
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, 0));
    }
}

/// The slot's executor takes buffered jobs itself when its job ends; once shutdown began it
/// must not, even though the job it ran finished within the grace period.
async fn shutdown_finishes_the_running_job_but_starts_no_buffered_one<S: Store + Clone>(store: S) {
    let (ids, probe, worker) = one_running_rest_buffered(&store, &[400; 4], |b| {
        b.grace_period(Duration::from_secs(10))
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 3);
    assert_eq!(
        probe.total(),
        1,
        "no buffered job started after shutdown began"
    );
    for id in ids {
        let row = store.get(id).await.unwrap().unwrap();
        let want = if probe.runs(id) == 1 {
            (JobState::Completed, 1)
        } else {
            (JobState::Available, 0)
        };
        assert_eq!((row.state, row.attempt), want, "job {id}");
    }
}

/// A job cancelled while it waits in the buffer loses its lease (the heartbeat finds out)
/// and is skipped when its turn comes; the one behind it runs.
async fn a_buffered_job_cancelled_meanwhile_is_skipped<S: Store + Clone>(store: S) {
    // Heartbeats every 400 ms: several while the first job runs.
    let (ids, probe, worker) = one_running_rest_buffered(&store, &[2_000, 10, 10], |b| {
        b.lease(Duration::from_millis(1_200))
    })
    .await;
    let client = Client::new(store.clone());
    client.cancel(ids[1]).await.unwrap();
    wait_state(&store, ids[2], JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(probe.runs(ids[1]), 0, "the cancelled job never started");
    assert_eq!(
        store.get(ids[1]).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        store.get(ids[0]).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

async fn heartbeat_keeps_a_long_job_past_its_lease<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    // 3.2× the lease. Heartbeats come every third of it, so the 2 s lease survives a stall of
    // over a second on a loaded 2-core CI machine (1 s proved too tight for the chaos test).
    let id = client.enqueue(Sleeper { ms: 6_400 }).await.unwrap().id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .lease(Duration::from_secs(2))
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(row.attempt, 1, "never rescued while its worker was alive");
    assert!(row.errors.is_empty(), "{:?}", row.errors);
}

async fn shutdown_lets_short_jobs_finish<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Sleeper { ms: 300 }).await.unwrap().id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 1)
        .grace_period(Duration::from_secs(5))
        .build()
        .unwrap()
        .start();
    // Started, not only claimed: a job claimed but not started when shutdown begins is
    // released unstarted (on a loaded machine the producer may not have handed it on yet).
    wait_for("the job to start", Duration::from_secs(10), || async {
        probe.runs(id) == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

async fn cancelling_a_running_job_stops_it<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let id = client.enqueue(Sleeper { ms: 60_000 }).await.unwrap().id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .lease(Duration::from_millis(600))
        .build()
        .unwrap()
        .start();
    wait_state(&store, id, JobState::Running).await;
    client.cancel(id).await.unwrap();
    wait_for(
        "the worker to drop the cancelled job",
        Duration::from_secs(5),
        || async { worker.in_flight() == 0 },
    )
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}

/// With one runtime thread, CPU-heavy jobs on the blocking pool leave async jobs running.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_jobs_do_not_starve_async_jobs() {
    let store = errand::MemoryStore::new();
    let client = Client::new(store.clone());
    let crunchers: Vec<_> = client
        .enqueue_many((0..2).map(|_| Cruncher { ms: 3_000 }))
        .await
        .unwrap();
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    for c in &crunchers {
        wait_state(&store, c.id, JobState::Running).await;
    }
    let echo = client.enqueue(Echo { n: 1 }).await.unwrap().id;
    wait_state(&store, echo, JobState::Completed).await;
    for c in &crunchers {
        assert_eq!(
            store.get(c.id).await.unwrap().unwrap().state,
            JobState::Running,
            "the async job finished while the CPU-bound ones were still running"
        );
    }
    for c in &crunchers {
        wait_state(&store, c.id, JobState::Completed).await;
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn builder_rejects_bad_configuration() {
    use errand::WorkerError;
    let store = errand::MemoryStore::new();
    let dup = errand::Worker::builder(store.clone(), Probe::default())
        .register::<Echo>()
        .register::<Echo>()
        .queue("default", 1)
        .build();
    assert!(
        matches!(dup, Err(WorkerError::DuplicateKind("echo"))),
        "{dup:?}"
    );
    let none = builder(store.clone(), Probe::default()).build();
    assert!(matches!(none, Err(WorkerError::NoQueues)), "{none:?}");
    let zero = builder(store.clone(), Probe::default())
        .queue("q", 0)
        .build();
    assert!(
        matches!(zero, Err(WorkerError::InvalidQueue { .. })),
        "{zero:?}"
    );
    let no_jobs = errand::Worker::builder(store.clone(), ())
        .queue("q", 1)
        .build();
    assert!(matches!(no_jobs, Err(WorkerError::NoJobs)), "{no_jobs:?}");
    for bad_id in ["", "host\0:1", "a\nb"] {
        let r = builder(store.clone(), Probe::default())
            .worker_id(bad_id)
            .queue("q", 1)
            .build();
        assert!(
            matches!(
                r,
                Err(WorkerError::InvalidSetting {
                    setting: "worker_id",
                    ..
                })
            ),
            "{bad_id:?}: {r:?}"
        );
    }
    let hoard = builder(store.clone(), Probe::default())
        .queue("q", QueueOptions::new(1).prefetch(10_001))
        .build();
    assert!(
        matches!(&hoard, Err(WorkerError::InvalidQueue { queue, reason })
            if queue == "q" && reason.contains("10000")),
        "{hoard:?}"
    );
    let slow_poll = builder(store.clone(), Probe::default())
        .queue("q", QueueOptions::new(1).poll_interval(Duration::ZERO))
        .build();
    assert!(
        matches!(&slow_poll, Err(WorkerError::InvalidQueue { reason, .. }) if reason.contains("poll_interval")),
        "{slow_poll:?}"
    );
    // Worker defaults apply at run time: a setting fixed at enqueue is refused, named.
    let enqueue_only = builder(store, Probe::default())
        .queue("q", 1)
        .job_defaults(
            JobOptions::new()
                .timeout(Duration::from_secs(1))
                .queue("other"),
        )
        .build();
    assert!(
        matches!(&enqueue_only, Err(WorkerError::InvalidSetting { setting: "job_defaults", reason })
            if reason.contains("`queue`")),
        "{enqueue_only:?}"
    );
}

/// Applications drive errand from spawned tasks: every public future must be `Send + 'static`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_futures_run_inside_spawned_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("spawn.db").display());
    let store = tokio::spawn(async move { errand::SqliteStore::open(&url).await })
        .await
        .unwrap()
        .unwrap();
    let client = Client::new(store.clone());
    let id = tokio::spawn({
        let client = client.clone();
        async move { client.enqueue(Echo { n: 1 }).await }
    })
    .await
    .unwrap()
    .unwrap()
    .id;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
    }));
    wait_state(&store, id, JobState::Completed).await;
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}
