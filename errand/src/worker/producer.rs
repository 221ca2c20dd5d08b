//! One producer per queue: claims batches into the queue's buffer and starts an executor
//! task on each free slot; an executor runs buffered jobs one after another until the buffer
//! is empty. The buffer keeps some claimed jobs waiting beyond the running ones (like Que's;
//! how many is `pacing`'s call), so one claim feeds many completions: without it a queue of
//! short jobs spends its time waiting on claim round trips. Buffered jobs hold leases like
//! running ones; on shutdown they go back to `available` unstarted.
//!
//! It sleeps until a wake-up (insert or promotion in this process, or `NOTIFY`), a freed
//! slot or a low buffer while work is likely waiting, or the poll interval — polling is only
//! the fallback.

use std::sync::Arc;
use std::time::Duration;

use errand_core::ClaimRequest;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::pacing::QueueState;
use super::{executor, pacing, poller, ErrorBackoff, QueueConfig, Shared};

pub(crate) async fn run(
    shared: Arc<Shared>,
    queue: QueueConfig,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let inserted = shared.store.signals().get(&queue.name);
    let state = shared.queue_state(&queue.name);
    let cooldown = queue.fetch_cooldown;
    let mut backoff = ErrorBackoff::default();
    let mut last_claim: Option<Instant> = None;
    // Whether work is likely waiting: the last claim filled its request, or a wake-up or the
    // poll said to look. An empty claim clears it, so an idle queue is not claimed in a loop.
    let mut more_waiting = true;
    // When a claim last took jobs: under a rate limit, the producer claims at the rate's
    // pace while work came recently (the bucket holds little, so waiting for the poll
    // interval would lose the starts it refills meanwhile).
    let mut took_at: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            // Buffered jobs never started: shutdown releases their leases.
            return;
        }
        if state.is_paused() {
            // The queue watcher wakes us on resume (and executors as they finish).
            tokio::select! {
                _ = state.freed.notified() => {}
                _ = stop.changed() => return,
            }
            more_waiting = true; // jobs may have waited all through the pause
            continue;
        }
        start_buffered(&shared, &sem, &state);
        let running = queue.concurrency - sem.available_permits();
        let prefetch = pacing::prefetch_under_limit(
            pacing::prefetch_under_bytes(
                pacing::prefetch(queue.prefetch, queue.concurrency, state.avg_run()),
                queue.prefetch_bytes,
                state.avg_bytes(),
            ),
            queue.concurrency,
            state.limit(),
            state.is_metered(),
        );
        let low_water = prefetch / 2;
        state.set_low_water(low_water);
        let buffered = state.buffered();
        let room = (queue.concurrency + prefetch).saturating_sub(running + buffered);
        // Claim when slots are free, or to top the buffer up once it runs low; under a
        // limit, no more than it leaves beyond what this worker holds.
        let wanted = if sem.available_permits() > 0 || buffered <= low_water {
            pacing::wanted_under_limit(room, state.limit(), running + buffered)
        } else {
            0
        };
        if wanted > 0 && more_waiting {
            if let Some(t) = last_claim {
                let since = t.elapsed();
                if since < cooldown {
                    tokio::select! {
                        _ = tokio::time::sleep(cooldown - since) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            last_claim = Some(Instant::now());
            let limit = wanted as u32;
            let req = ClaimRequest {
                queue: queue.name.clone(),
                limit,
                worker_id: shared.worker_id.clone(),
                now: shared.now().await,
                lease: shared.config.lease,
                // What this worker runs or has buffered of the queue: under a limit its own
                // finished jobs, outcomes on their way, then hold no slots.
                held: u32::try_from(queue.concurrency - sem.available_permits() + state.buffered())
                    .ok(),
            };
            match shared.store.claim(&req).await {
                Ok(rows) => {
                    backoff = ErrorBackoff::default();
                    more_waiting = rows.len() == limit as usize;
                    if !rows.is_empty() {
                        took_at = Some(Instant::now());
                    }
                    for row in &rows {
                        shared.inflight.claimed(row.lease_ref());
                    }
                    state.record_sizes(&rows);
                    state.buffer_extend(rows);
                    start_buffered(&shared, &sem, &state);
                    if more_waiting && sem.available_permits() > 0 {
                        continue;
                    }
                }
                Err(e) => {
                    shared.check_lost(&e);
                    let wait = backoff.next();
                    tracing::warn!(queue = %queue.name, error = %e,
                        retry_in_ms = wait.as_millis() as u64, "could not claim jobs");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            }
        }
        let fallback = poller::fallback(queue.poll_interval);
        let wait = pacing::poll(fallback, state.rate_gap(), took_at);
        let paced = wait < fallback;
        tokio::select! {
            // New work: even if every slot is busy now, claim when the next one frees.
            _ = inserted.notified() => more_waiting = true,
            // Under a fleet-wide limit a job ending here frees a slot of the limit: claim
            // again once this worker can use it (a slot free, or the buffer run low), not
            // at every job's end, which would be a claim per job. (The completer wakes the
            // producer too, when outcomes are written: see `completer::write`.)
            _ = state.freed.notified(), if more_waiting || state.buffered() > 0 || state.is_limited() => {
                more_waiting |= state.is_limited()
                    && (sem.available_permits() > 0 || state.buffered() <= low_water);
            }
            // The poller wakes this producer when the queue has work (one query for all the
            // worker's queues); this is the fallback behind it, which claims only while the
            // poller fails — or, under a rate limit with work seen lately, at the rate's pace.
            _ = tokio::time::sleep(wait) => more_waiting = paced || !shared.poll_health.fresh(),
            _ = stop.changed() => return,
        }
    }
}

/// Starts an executor on each free slot while jobs are buffered (each executor skips a job
/// whose lease was lost while it waited, then runs the next ones).
fn start_buffered(shared: &Arc<Shared>, sem: &Arc<Semaphore>, state: &Arc<QueueState>) {
    loop {
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            return;
        };
        let Some(row) = state.next_buffered() else {
            return;
        };
        tokio::spawn(executor::execute(
            shared.clone(),
            state.clone(),
            row,
            permit,
        ));
    }
}

/// Queue defaults.
pub(crate) const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::ZERO;
