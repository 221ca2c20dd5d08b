//! Records outcomes in batches: the first outcome opens a batch, which collects more for a
//! few milliseconds (or until full) and is written in one store call. A failed write is
//! retried with backoff, keeping the batch: an outcome is never dropped while the database
//! is unreachable or busy. An outcome the database refuses outright
//! ([`StoreError::Rejected`](errand_core::StoreError::Rejected)) is found by halving the
//! batch, logged, and left to the rescuer (its job's lease runs out, as if its worker had
//! died): one unwritable outcome never holds up the others.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Finish, JobId, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Pending, Shared};
use crate::telemetry;
use crate::worker::ErrorBackoff;

pub(crate) enum Msg {
    Outcome(Pending),
    /// Write everything queued before this message, then answer.
    Flush(oneshot::Sender<()>),
}

/// Outcomes that may wait for the completer; an executor whose outcome finds the queue full
/// waits (holding its slot), so a store that falls behind slows claiming down instead of
/// letting finished-but-unrecorded jobs pile up in memory.
pub(crate) const BACKLOG: usize = 5_000;

/// Runs on the keeper thread, writing through `store` (see `keeper`).
pub(crate) async fn run(shared: Arc<Shared>, store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let linger = shared.config.completer_linger;
    let max = shared.config.completer_batch;
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let take = |m: Msg, batch: &mut Vec<Pending>, flushes: &mut Vec<_>| match m {
            Msg::Outcome(p) => batch.push(p),
            Msg::Flush(tx) => flushes.push(tx),
        };
        take(first, &mut batch, &mut flushes);
        let deadline = Instant::now() + linger;
        while batch.len() < max && flushes.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => take(m, &mut batch, &mut flushes),
                Ok(None) | Err(_) => break,
            }
        }
        write(&shared, &*store, batch).await;
        for tx in flushes {
            let _ = tx.send(());
        }
    }
}

async fn write(shared: &Shared, store: &dyn Store, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let finishes: Vec<_> = batch.iter().map(|p| p.finish.clone()).collect();
    let (applied, refused) = finish_all(shared, store, finishes).await;
    for p in &batch {
        if refused.contains(&p.finish.lease.id) {
            continue; // logged by finish_all
        }
        // The store fired the wake-ups its changes cause (see `Store::finish`).
        if applied.contains(&p.finish.lease.id) {
            telemetry::ended(&p.queue, &p.kind, (&p.finish.action).into(), p.duration);
        } else {
            tracing::warn!(
                job_id = p.finish.lease.id,
                attempt = p.finish.lease.attempt,
                "outcome ignored: the job was cancelled, rescued or finished elsewhere meanwhile"
            );
        }
    }
    // Under a fleet-wide limit the store counts a job as running until its outcome is
    // written: written now, its slot is free. Wake the queue's producer, whose claim may
    // have come back short while these outcomes waited here.
    // (Nothing to look at per outcome unless one of this worker's queues is limited.)
    if shared.queues.values().any(|s| s.is_limited()) {
        let limited: std::collections::BTreeSet<&str> = batch
            .iter()
            .map(|p| p.queue.as_str())
            .filter(|q| shared.queues.get(*q).is_some_and(|s| s.is_limited()))
            .collect();
        for q in limited {
            store.signals().notify(q);
        }
    }
    shared
        .inflight
        .recorded(batch.iter().map(|p| p.finish.lease));
    shared
        .outcomes_written
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
}

/// Writes `finishes`: what the store applied, and the outcomes it refused. Transient
/// failures are retried with backoff; a refused part is halved until the refused outcomes
/// stand alone, so the rest are written.
async fn finish_all(
    shared: &Shared,
    store: &dyn Store,
    finishes: Vec<Finish>,
) -> (HashSet<JobId>, HashSet<JobId>) {
    let (mut applied, mut refused) = (HashSet::new(), HashSet::new());
    let mut todo = vec![finishes];
    let mut backoff = ErrorBackoff::default();
    while let Some(mut part) = todo.pop() {
        match store.finish(&part).await {
            Ok(ids) => {
                applied.extend(ids);
                backoff = ErrorBackoff::default();
            }
            Err(e) if e.is_transient() => {
                let wait = backoff.next();
                tracing::warn!(error = %e, jobs = part.len(), retry_in_ms = wait.as_millis() as u64,
                    "could not record job outcomes; retrying");
                tokio::time::sleep(wait).await;
                todo.push(part);
            }
            Err(e) if shared.check_lost(&e) => {
                // Nothing more can be written: drop these outcomes (their jobs are not
                // recorded as run; after a restore their leases run out and the rescuer
                // retries them).
                refused.extend(part.iter().map(|f| f.lease.id));
            }
            Err(e) if part.len() == 1 => {
                let f = &part[0];
                tracing::error!(error = %e, job_id = f.lease.id, attempt = f.lease.attempt,
                    "the database refused this job's outcome; its lease will run out and the rescuer will retry or discard it");
                refused.insert(f.lease.id);
            }
            Err(_) => {
                let rest = part.split_off(part.len() / 2);
                todo.push(rest);
                todo.push(part);
            }
        }
    }
    (applied, refused)
}

/// Default wait before a batch is written, so concurrent outcomes share one write.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_millis(2);
