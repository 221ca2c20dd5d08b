//! Records outcomes in batches: the first outcome opens a batch, which collects more for a
//! few milliseconds (or until full) and is written in one store call; up to
//! [`WRITES_IN_FLIGHT`] batches are written at once, and a batch keeps collecting while
//! they are. A failed write is retried with backoff, keeping the batch: an outcome is never
//! dropped while the database is unreachable or busy. An outcome the database refuses
//! outright ([`StoreError::Rejected`](errand_core::StoreError::Rejected)) is found by
//! halving the batch, logged, and left to the rescuer (its job's lease runs out, as if its
//! worker had died): one unwritable outcome never holds up the others.

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

/// Outcome batches written at once. While one batch is being written the next collects,
/// and is written beside it rather than after it: one write at a time left the database
/// idle between a batch's answer and the next batch's statement.
pub(crate) const WRITES_IN_FLIGHT: usize = 2;

/// Runs on the keeper thread, writing through `store` (see `keeper`).
pub(crate) async fn run(shared: Arc<Shared>, store: Arc<dyn Store>, rx: mpsc::Receiver<Msg>) {
    let linger = shared.config.completer_linger;
    let max = shared.config.completer_batch;
    let write_one = move |batch: Vec<Pending>| {
        let (shared, store) = (shared.clone(), store.clone());
        async move { write(&shared, &*store, batch).await }
    };
    batches(rx, linger, max, write_one).await;
}

/// Cuts the outcomes of `rx` into batches (the first outcome plus what arrives within
/// `linger`, at most `max`, more while [`WRITES_IN_FLIGHT`] writes are running) and hands
/// each to `write_one`, [`WRITES_IN_FLIGHT`] at once; a flush is answered once everything
/// before it is written.
async fn batches<W, F>(mut rx: mpsc::Receiver<Msg>, linger: Duration, max: usize, write_one: W)
where
    W: Fn(Vec<Pending>) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut writing = tokio::task::JoinSet::new();
    let mut batch: Vec<Pending> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    // When the batch's first outcome arrived plus the linger: the batch is due then.
    let mut due: Option<Instant> = None;
    let mut open = true;
    loop {
        let ready = !flushes.is_empty()
            || (!batch.is_empty()
                && (batch.len() >= max || !open || due.is_some_and(|d| Instant::now() >= d)));
        if ready && writing.len() < WRITES_IN_FLIGHT {
            if !batch.is_empty() {
                due = None;
                writing.spawn(write_one(std::mem::take(&mut batch)));
                continue;
            }
            // A flush, with nothing left to hand out: answered once every batch before it
            // is written.
            while writing.join_next().await.is_some() {}
            for tx in flushes.drain(..) {
                let _ = tx.send(());
            }
            continue;
        }
        if !open && batch.is_empty() && flushes.is_empty() {
            break;
        }
        // Wait for an outcome (the batch keeps filling while both writes run), the batch
        // to fall due, or a write to end.
        let due_at = due.unwrap_or_else(Instant::now);
        tokio::select! {
            m = rx.recv(), if open && batch.len() < max && flushes.is_empty() => match m {
                Some(Msg::Outcome(p)) => {
                    if batch.is_empty() {
                        due = Some(Instant::now() + linger);
                    }
                    batch.push(p);
                }
                Some(Msg::Flush(tx)) => flushes.push(tx),
                None => open = false,
            },
            _ = tokio::time::sleep_until(due_at), if due.is_some() && !ready => {}
            Some(_) = writing.join_next(), if !writing.is_empty() => {}
        }
    }
    while writing.join_next().await.is_some() {}
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use chrono::Utc;
    use errand_core::{Finish, FinishAction, LeaseRef};
    use tokio::sync::{mpsc, oneshot, Semaphore};

    use super::{batches, Msg, Pending, WRITES_IN_FLIGHT};

    fn outcome(id: i64) -> Msg {
        Msg::Outcome(Pending {
            finish: Finish {
                lease: LeaseRef { id, attempt: 1 },
                at: Utc::now(),
                action: FinishAction::Complete,
            },
            queue: "q".into(),
            kind: "k".into(),
            duration: std::time::Duration::ZERO,
        })
    }

    /// Until `n` writes are running (or have run), on tokio's paused clock.
    async fn until_started(started: &Mutex<Vec<usize>>, n: usize) {
        for _ in 0..1_000 {
            if started.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("{n} writes never started: {:?}", started.lock().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_written_beside_the_one_being_written_and_a_flush_waits_for_both() {
        let (tx, rx) = mpsc::channel(100);
        // Each write records its batch's size and waits for a permit.
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let write_one = {
            let (gate, started) = (gate.clone(), started.clone());
            let (running, most) = (running.clone(), most.clone());
            move |batch: Vec<Pending>| {
                let (gate, started) = (gate.clone(), started.clone());
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    started.lock().unwrap().push(batch.len());
                    gate.acquire().await.unwrap().forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }
        };
        let cutter = tokio::spawn(batches(
            rx,
            std::time::Duration::from_millis(2),
            1000,
            write_one,
        ));
        tx.send(outcome(1)).await.unwrap();
        until_started(&started, 1).await;
        // The first write has not ended: the next batch is written beside it.
        tx.send(outcome(2)).await.unwrap();
        until_started(&started, 2).await;
        // Both are running: what comes now waits, as one batch, for one of them.
        for id in 3..8 {
            tx.send(outcome(id)).await.unwrap();
        }
        let (flushed_tx, mut flushed) = oneshot::channel();
        tx.send(Msg::Flush(flushed_tx)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(*started.lock().unwrap(), vec![1, 1]);
        assert!(
            flushed.try_recv().is_err(),
            "answered a flush before its outcomes were written"
        );
        // One write ends: the five go as one batch; the flush waits for all three.
        gate.add_permits(1);
        until_started(&started, 3).await;
        assert_eq!(*started.lock().unwrap(), vec![1, 1, 5]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            flushed.try_recv().is_err(),
            "answered a flush with writes running"
        );
        gate.add_permits(2);
        tokio::time::timeout(std::time::Duration::from_secs(5), flushed)
            .await
            .expect("the flush is answered once every write ended")
            .unwrap();
        assert_eq!(most.load(Ordering::SeqCst), WRITES_IN_FLIGHT);
        drop(tx);
        cutter.await.unwrap();
    }
}
