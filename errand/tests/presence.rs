//! The worker registry (issue 16): a running worker keeps its record in the store — its
//! queues and concurrency, the jobs it holds, a fresh heartbeat — and removes it when it
//! stops; on every store.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, QueueOptions, WorkerQueue};

on_every_store!(a_worker_is_in_the_registry_while_it_runs);

async fn a_worker_is_in_the_registry_while_it_runs<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let probe = Probe::default();
    let long = client.enqueue(Sleeper { ms: 2_000 }).await.unwrap().id;
    let worker = builder(store.clone(), probe.clone())
        .queue("default", QueueOptions::new(3))
        .queue("mail", QueueOptions::new(1))
        .worker_id("presence-test-worker")
        .presence_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start();
    wait_for("the long job to start", Duration::from_secs(10), || async {
        probe.runs(long) == 1
    })
    .await;
    // A heartbeat while it runs counts the held job.
    wait_for(
        "a record holding one job",
        Duration::from_secs(10),
        || async {
            let w = client.workers().await.unwrap();
            w.len() == 1 && w[0].running == 1
        },
    )
    .await;
    let w = &client.workers().await.unwrap()[0];
    assert_eq!(w.id, "presence-test-worker");
    assert_eq!(w.pid, std::process::id());
    assert_eq!(w.version, env!("CARGO_PKG_VERSION"));
    assert!(!w.host.is_empty());
    let mut queues = w.queues.clone();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        queues,
        vec![
            WorkerQueue {
                name: "default".into(),
                concurrency: 3
            },
            WorkerQueue {
                name: "mail".into(),
                concurrency: 1
            },
        ]
    );
    assert!(w.heartbeat_at >= w.started_at);
    let first_beat = w.heartbeat_at;
    wait_for("the heartbeat to move", Duration::from_secs(10), || async {
        client.workers().await.unwrap()[0].heartbeat_at > first_beat
    })
    .await;
    worker.shutdown().await;
    assert!(
        client.workers().await.unwrap().is_empty(),
        "a stopped worker removes its record"
    );
}
