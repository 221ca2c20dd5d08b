//! Metered claims: which jobs a claim of a queue with a per-key limit or a rate limit takes.
//!
//! A plain claim takes the first jobs in claim order (priority, due time, id), at most the
//! free slots of a queue-wide limit. A metered one also
//! - takes no more than the queue's token bucket holds (see [`RateLimit`]), and
//! - under a per-key limit or a rate per key, walks the keys that have available jobs in
//!   turn, round robin from where the previous claim of the queue stopped (a cursor kept in
//!   the queue's record), taking from each key no more than its free slots and its own
//!   bucket's tokens. So a key with a long backlog gets its share and no more: every other
//!   key progresses. Jobs without a key take one turn per round, in claim order among the
//!   first [`UNKEYED_SCAN`] available jobs. A claim visits at most [`MAX_KEY_VISITS`] keys
//!   (the next one goes on from there).
//!
//! The store runs [`claim_metered`] while holding its queue's record (a row lock, SQLite's
//! write lock, a mutex), so two claims never count the same free slot or token. Postgres
//! runs the same walk in PL/pgSQL (migration 6), in one round trip.

use chrono::{DateTime, Utc};

use crate::{JobId, QueueLimits, QueueRecord, RateLimit, StoreError};

/// Longest partition key accepted (bytes).
pub const MAX_PARTITION_KEY_LEN: usize = 256;

/// How deep into a queue's claim order a metered claim looks for jobs without a key (the
/// rest are met as the jobs ahead of them are claimed).
pub const UNKEYED_SCAN: u32 = 1000;

/// Most keys one metered claim visits once it has found a job; one that has found none yet
/// goes on up to ten times as far (keys at their limit are at most the running jobs), so a
/// claim comes back empty only when nothing can start or 10,000 keys could not.
pub const MAX_KEY_VISITS: u32 = 1000;

/// Most full key buckets (as good as none) a metered claim deletes.
pub const KEY_BUCKETS_PRUNED: u32 = 100;

/// Checks a partition key: 1–[`MAX_PARTITION_KEY_LEN`] bytes, no control characters. The
/// reason is a sentence naming the problem.
pub fn check_partition_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("partition key is empty: leave it unset for a job without one".into());
    }
    crate::check_name("partition key", key, MAX_PARTITION_KEY_LEN)
}

/// The queues a store process last saw metered (a per-key limit or a rate): their claims
/// take the metered path at once. The one-statement claim takes nothing from a metered
/// queue, so a process that has not seen a limit yet cannot take past it: an empty claim
/// looks at the record and learns. Clones share the set.
#[derive(Debug, Clone, Default)]
pub struct MeteredSet(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl MeteredSet {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `queue` was last seen metered.
    pub fn contains(&self, queue: &str) -> bool {
        self.set().contains(queue)
    }

    /// Records whether `queue` is metered, as a record just read or written says.
    pub fn learn(&self, queue: &str, metered: bool) {
        let mut set = self.set();
        if metered {
            set.insert(queue.to_owned());
        } else {
            set.remove(queue);
        }
    }

    /// Records what each of `records` says.
    pub fn learn_all(&self, records: &[QueueRecord]) {
        for r in records {
            self.learn(&r.name, r.is_metered());
        }
    }
}

/// Which available jobs of the queue a [`MeteredQueue::take`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take<'a> {
    /// The first in claim order (no per-key limit).
    InOrder,
    /// The first of this key.
    Key(&'a str),
    /// The first without a key, among the first [`UNKEYED_SCAN`] in claim order.
    Unkeyed,
}

/// A store's view of one queue during a metered claim (see [`claim_metered`]).
#[allow(async_fn_in_trait)]
pub trait MeteredQueue {
    /// Running jobs of the queue as its queue-wide limit counts them (`None`: see
    /// [`ClaimRequest::held`](crate::ClaimRequest::held)), or those holding `key` (all).
    async fn running(&mut self, key: Option<&str>) -> Result<u64, StoreError>;
    /// The smallest key above `after` (in byte order) that an available job of the queue
    /// holds (`""`: the first).
    async fn next_key(&mut self, after: &str) -> Result<Option<String>, StoreError>;
    /// Up to `n` available jobs, in claim order, that no other claim is taking.
    async fn take(&mut self, from: Take<'_>, n: u32) -> Result<Vec<JobId>, StoreError>;
    /// `key`'s bucket under a rate per key: tokens and when refilled (`None`: full).
    async fn key_bucket(&mut self, key: &str) -> Result<Option<(f64, DateTime<Utc>)>, StoreError>;
    /// Stores `key`'s bucket.
    async fn set_key_bucket(
        &mut self,
        key: &str,
        tokens: f64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Deletes up to [`KEY_BUCKETS_PRUNED`] buckets refilled before `full_before` (full by
    /// now: as good as none). (Setting the queue's limits deletes them all.)
    async fn prune_key_buckets(&mut self, full_before: DateTime<Utc>) -> Result<(), StoreError>;
}

/// What a metered claim keeps in the queue's record between claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meter {
    /// Tokens in the rate limit's bucket at `refilled_at` (`None`: full).
    pub tokens: Option<f64>,
    /// When the bucket was last refilled.
    pub refilled_at: Option<DateTime<Utc>>,
    /// Where the per-key walk goes on: after this key; `None`: with the jobs without one.
    pub cursor: Option<String>,
}

/// Picks the jobs a claim of `record`'s queue wanting `want` takes at `now`, under its
/// limits; returns them (claim them all) and the meter to store.
pub async fn claim_metered<Q: MeteredQueue>(
    q: &mut Q,
    record: &QueueRecord,
    meter: Meter,
    want: u32,
    now: DateTime<Utc>,
) -> Result<(Vec<JobId>, Meter), StoreError> {
    if record.paused {
        return Ok((Vec::new(), meter));
    }
    let mut n = want;
    if let Some(max) = record.max_running {
        let running = q.running(None).await?;
        n = n.min(u64::from(max).saturating_sub(running) as u32);
    }
    let bucket = record
        .rate
        .map(|r: RateLimit| r.refill(meter.tokens, meter.refilled_at, now));
    if let Some((tokens, _)) = bucket {
        n = n.min(tokens.floor() as u32);
    }
    let limits = record.limits();
    let (ids, cursor) = match n {
        0 => (Vec::new(), meter.cursor),
        n if !limits.is_keyed() => (q.take(Take::InOrder, n).await?, meter.cursor),
        n => walk(q, &limits, meter.cursor, n, now).await?,
    };
    if let Some(r) = limits.rate_per_key {
        let fill = chrono::TimeDelta::from_std(r.fill_time()).unwrap_or(chrono::TimeDelta::MAX);
        if let Some(full_before) = now.checked_sub_signed(fill) {
            q.prune_key_buckets(full_before).await?;
        }
    }
    let (tokens, refilled_at) = match bucket {
        Some((tokens, at)) => (Some(tokens - ids.len() as f64), Some(at)),
        None => (meter.tokens, meter.refilled_at),
    };
    Ok((
        ids,
        Meter {
            tokens,
            refilled_at,
            cursor,
        },
    ))
}

/// The per-key walk: from `cursor`, visits each key with available jobs once at most,
/// taking up to its free slots and its bucket's tokens, until `n` jobs are taken, every key
/// was visited, or [`MAX_KEY_VISITS`] were (ten times that while none was taken).
async fn walk<Q: MeteredQueue>(
    q: &mut Q,
    limits: &QueueLimits,
    cursor: Option<String>,
    n: u32,
    now: DateTime<Utc>,
) -> Result<(Vec<JobId>, Option<String>), StoreError> {
    let start = cursor.clone();
    let mut pos = cursor;
    let mut wrapped = false;
    let mut visits = 0;
    let mut ids: Vec<JobId> = Vec::new();
    while (ids.len() as u32) < n
        && visits < MAX_KEY_VISITS * 10
        && (visits < MAX_KEY_VISITS || ids.is_empty())
    {
        let left = n - ids.len() as u32;
        let Some(after) = &pos else {
            // The jobs without a key: one turn per round.
            if wrapped && start.is_none() {
                break;
            }
            wrapped = true;
            ids.extend(q.take(Take::Unkeyed, left).await?);
            pos = Some(String::new());
            continue;
        };
        let Some(key) = q.next_key(after).await? else {
            if wrapped {
                break; // every key visited, and the jobs without one
            }
            pos = None;
            continue;
        };
        if wrapped && start.as_deref().is_some_and(|s| key.as_str() > s) {
            break; // back where this claim began
        }
        visits += 1;
        let mut room = u64::from(left);
        if let Some(per_key) = limits.max_per_key {
            room = room.min(u64::from(per_key).saturating_sub(q.running(Some(&key)).await?));
        }
        let mut bucket = None;
        if let (Some(rate), true) = (limits.rate_per_key, room > 0) {
            let stored = q.key_bucket(&key).await?;
            let (tokens, at) = rate.refill(stored.map(|b| b.0), stored.map(|b| b.1), now);
            room = room.min(tokens.floor() as u64);
            bucket = Some((tokens, at));
        }
        if room > 0 {
            let took = q.take(Take::Key(&key), room as u32).await?;
            if let (Some((tokens, at)), false) = (bucket, took.is_empty()) {
                q.set_key_bucket(&key, tokens - took.len() as f64, at)
                    .await?;
            }
            ids.extend(took);
        }
        pos = Some(key);
    }
    Ok((ids, pos))
}
