//! Flow control across processes (issue 14): pause, a fleet-wide limit, per-key limits and
//! rate limits, with several stores on one database sharing nothing in memory, as separate
//! processes would, each with a worker. A ledger of start and end times shows what ran when.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sqlite, wait_for};
use errand::store::Store;
use errand::{
    Client, Job, JobContext, JobError, JobOptions, JobState, ListFilter, Outcome, QueueLimits,
    QueueOptions, RateLimit, Worker,
};
use serde::{Deserialize, Serialize};

/// Expands `$name(stores: [S; $n])` into a test on `$n` Postgres stores of one schema and
/// one on `$n` stores of one SQLite file, each store with a pool (and on Postgres a
/// listener) of its own, sharing nothing in memory: as `$n` processes would.
macro_rules! on_processes {
    ($name:ident, $n:literal) => {
        mod $name {
            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::pg_processes::<$n>().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (stores, _dir) = super::sqlite_processes::<$n>().await;
                super::$name(stores).await;
            }
        }
    };
}

#[cfg(feature = "postgres")]
async fn pg_processes<const N: usize>() -> [errand::PgStore; N] {
    let first = errand_postgres::testing::scratch_store().await;
    let mut all = vec![first.clone()];
    for i in 1..N {
        all.push(common::other_process(&first, &format!("errand-fleet-{i}")).await);
    }
    all.try_into().unwrap_or_else(|_| panic!("{N} stores"))
}

async fn sqlite_processes<const N: usize>() -> ([errand::SqliteStore; N], tempfile::TempDir) {
    let (first, dir) = sqlite().await;
    let path = dir.path().join("errand.db");
    let mut all = vec![first];
    for _ in 1..N {
        all.push(
            errand::SqliteStore::open(path.to_str().unwrap())
                .await
                .unwrap(),
        );
    }
    (all.try_into().unwrap_or_else(|_| panic!("{N} stores")), dir)
}

/// (key, attempt, started, ended) of every run.
type Ledger = Arc<Mutex<Vec<(String, i32, Instant, Instant)>>>;

/// A job that records its run in the ledger, labelled by its customer (when it has one: its
/// partition key) or else by its queue; the queue comes from its arguments.
#[derive(Serialize, Deserialize)]
struct Work {
    queue: String,
    customer: Option<String>,
    ms: u64,
}

impl Job for Work {
    const KIND: &'static str = "work";
    type State = Ledger;

    async fn run(self, cx: JobContext<Ledger>) -> Result<Outcome, JobError> {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        let label = self.customer.unwrap_or(self.queue);
        cx.state()
            .lock()
            .unwrap()
            .push((label, cx.attempt(), started, Instant::now()));
        Ok(Outcome::Complete)
    }

    /// Queue and partition come from the arguments: one partition per customer.
    fn options(&self) -> JobOptions {
        let options = JobOptions::new().queue(&self.queue);
        match &self.customer {
            Some(c) => options.partition_key(format!("customer:{c}")),
            None => options,
        }
    }
}

/// A job of customer `customer` on the queue `sync`.
fn sync(customer: impl Into<String>, ms: u64) -> Work {
    Work {
        queue: "sync".into(),
        customer: Some(customer.into()),
        ms,
    }
}

/// A job without a customer on `queue`.
fn work(queue: &str, ms: u64) -> Work {
    Work {
        queue: queue.into(),
        customer: None,
        ms,
    }
}

fn worker<S: Store>(
    store: S,
    ledger: &Ledger,
    queues: &[&str],
    slots: usize,
) -> errand::WorkerHandle {
    let mut b = Worker::builder(store, ledger.clone())
        .register::<Work>()
        .poll_interval(Duration::from_millis(200));
    for q in queues {
        b = b.queue(*q, QueueOptions::new(slots));
    }
    b.build().unwrap().start()
}

/// 4 processes, one running job per customer: customer `big` has 1,000 jobs queued ahead
/// of 20 customers with 50 each. Every small customer finishes all its jobs while `big`
/// still has most of its backlog (it gets its turn, not the queue), and no customer ever
/// has two jobs running at once.
async fn one_per_key_across_four_processes<S: Store + Clone>(stores: [S; 4]) {
    let client = Client::new(stores[0].clone());
    client
        .set_queue_limits("sync", QueueLimits::default().max_per_key(1))
        .await
        .unwrap();
    let job = |customer: &str| sync(customer, 5);
    client
        .enqueue_many((0..1000).map(|_| job("big")))
        .await
        .unwrap();
    client
        .enqueue_many((0..50).flat_map(|_| (0..20).map(|c| job(&format!("c{c:02}")))))
        .await
        .unwrap();
    let ledger = Ledger::default();
    let started = Instant::now();
    let handles: Vec<_> = stores
        .iter()
        .map(|s| worker(s.clone(), &ledger, &["sync"], 8))
        .collect();
    let small_done = || {
        let l = ledger.lock().unwrap();
        l.iter().filter(|r| r.0 != "big").count()
    };
    wait_for(
        "the 20 small customers' 1,000 jobs",
        Duration::from_secs(120),
        || async { small_done() == 1000 },
    )
    .await;
    let elapsed = started.elapsed();
    for h in handles {
        h.shutdown().await;
    }
    let ledger = ledger.lock().unwrap().clone();
    let mut per_key: HashMap<&str, Vec<(Instant, Instant)>> = HashMap::new();
    for (key, _, s, e) in &ledger {
        per_key.entry(key).or_default().push((*s, *e));
    }
    for (key, runs) in &mut per_key {
        runs.sort();
        for w in runs.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "customer {key}: a job started before the previous one ended"
            );
        }
    }
    assert_eq!(per_key.len(), 21, "every customer ran");
    for c in 0..20 {
        assert_eq!(per_key[format!("c{c:02}").as_str()].len(), 50);
    }
    let big = per_key["big"].len();
    let waiting = stores[0]
        .count(&ListFilter::new().queue("sync").state(JobState::Available))
        .await
        .unwrap();
    // Round robin gives `big` about one turn in 21 (a little more as the small customers
    // run out): far from the 1,000 it would have taken in claim order.
    assert!(
        (1..=250).contains(&big),
        "big ran {big} while the others ran 1,000"
    );
    assert!(waiting >= 700, "{waiting} of big's jobs still wait");
    eprintln!(
        "1 per key, 4 processes: 20 customers × 50 done in {:.1} s while big ran {big} \
         of 1,000; no customer ever ran two at once",
        elapsed.as_secs_f64()
    );
}

on_processes!(one_per_key_across_four_processes, 4);

/// 3 processes under a rate limit of 20 starts a second, 200 jobs ready: the starts come at
/// 20 a second (within 10 %) over the run, and every job ran on its first attempt.
async fn twenty_a_second_across_three_processes<S: Store + Clone>(stores: [S; 3]) {
    let client = Client::new(stores[0].clone());
    let rate = RateLimit::new(20, Duration::from_secs(1));
    client
        .set_queue_limits("sync", QueueLimits::default().rate(rate))
        .await
        .unwrap();
    client
        .enqueue_many((0..200).map(|i| sync(format!("c{i}"), 0)))
        .await
        .unwrap();
    let ledger = Ledger::default();
    let handles: Vec<_> = stores
        .iter()
        .map(|s| worker(s.clone(), &ledger, &["sync"], 4))
        .collect();
    let done = ListFilter::new().queue("sync").state(JobState::Completed);
    wait_for(
        "200 jobs at 20 a second",
        Duration::from_secs(40),
        || async { stores[0].count(&done).await.unwrap() == 200 },
    )
    .await;
    for h in handles {
        h.shutdown().await;
    }
    let ledger = ledger.lock().unwrap().clone();
    assert_eq!(ledger.len(), 200, "each job ran once");
    assert!(
        ledger.iter().all(|r| r.1 == 1),
        "no attempt was charged for waiting"
    );
    let mut starts: Vec<Instant> = ledger.iter().map(|r| r.2).collect();
    starts.sort();
    let span = (starts[199] - starts[0]).as_secs_f64();
    // 200 starts: the first two from a full bucket (burst 2), the other 198 at the rate.
    let observed = 199.0 / span;
    assert!(
        (18.0..=22.0).contains(&observed),
        "observed {observed:.2} starts/s against a limit of 20"
    );
    // Never more than the bucket allows in any one second.
    for (i, s) in starts.iter().enumerate() {
        let in_second = starts[i..]
            .iter()
            .take_while(|t| **t - *s < Duration::from_secs(1))
            .count();
        assert!(in_second <= 23, "{in_second} starts within a second");
    }
    eprintln!("rate 20/s, 3 processes: 200 starts over {span:.2} s = {observed:.2}/s");
}

on_processes!(twenty_a_second_across_three_processes, 3);

/// Starts of `queue` in the ledger.
fn starts_of(ledger: &Ledger, queue: &str) -> Vec<Instant> {
    let mut s: Vec<_> = ledger
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == queue)
        .map(|r| r.2)
        .collect();
    s.sort();
    s
}

/// 3 processes working queues `a` and `b`; `a` is paused while both run: from 1 s after the
/// pause no job of `a` starts (its jobs still waiting stay waiting), `b` goes on meanwhile;
/// resumed, `a` drains.
async fn pause_one_of_two_queues_across_three_processes<S: Store + Clone>(stores: [S; 3]) {
    let client = Client::new(stores[0].clone());
    let job = |q: &str| work(q, 20);
    client
        .enqueue_many((0..300).map(|_| job("a")))
        .await
        .unwrap();
    client
        .enqueue_many((0..300).map(|_| job("b")))
        .await
        .unwrap();
    let ledger = Ledger::default();
    let handles: Vec<_> = stores
        .iter()
        .map(|s| worker(s.clone(), &ledger, &["a", "b"], 2))
        .collect();
    wait_for("both queues running", Duration::from_secs(20), || async {
        starts_of(&ledger, "a").len() >= 20 && starts_of(&ledger, "b").len() >= 20
    })
    .await;
    let paused_at = Instant::now();
    client.pause_queue("a").await.unwrap();
    let b_before = starts_of(&ledger, "b").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let a = starts_of(&ledger, "a");
    let late: Vec<_> = a
        .iter()
        .filter(|t| **t > paused_at + Duration::from_secs(1))
        .collect();
    assert!(
        late.is_empty(),
        "{} jobs of the paused queue started after 1 s",
        late.len()
    );
    // Jobs a worker had buffered before it heard of the pause may start just after it.
    let after: Vec<Duration> = a
        .iter()
        .filter(|t| **t > paused_at)
        .map(|t| *t - paused_at)
        .collect();
    let b_during = starts_of(&ledger, "b").len() - b_before;
    assert!(
        b_during >= 20,
        "the other queue went on: {b_during} starts during the pause"
    );
    let waiting = stores[0]
        .count(&ListFilter::new().queue("a").state(JobState::Available))
        .await
        .unwrap();
    assert!(waiting > 0, "a's jobs wait");
    client.resume_queue("a").await.unwrap();
    let done = ListFilter::new().queue("a").state(JobState::Completed);
    wait_for(
        "the resumed queue to drain",
        Duration::from_secs(60),
        || async { stores[0].count(&done).await.unwrap() == 300 },
    )
    .await;
    for h in handles {
        h.shutdown().await;
    }
    eprintln!(
        "pause, 3 processes: {} starts of the paused queue after the pause, the last {:?} \
         after it; {b_during} starts of the other queue during 2.5 s of pause; {waiting} \
         waited; resumed, all 300 ran",
        after.len(),
        after.last().copied().unwrap_or_default()
    );
}

on_processes!(pause_one_of_two_queues_across_three_processes, 3);

/// The most runs of the ledger overlapping at any instant.
fn most_at_once(ledger: &[(String, i32, Instant, Instant)]) -> usize {
    let mut events: Vec<(Instant, i32)> =
        ledger.iter().flat_map(|r| [(r.2, 1), (r.3, -1)]).collect();
    // At one instant, ends before starts: a slot handed on is not two at once.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// 4 processes with 3 slots each under a fleet-wide limit of 3: at no instant did more than
/// 3 run (from the ledger of start and end times), and the run took about what 3 slots take.
async fn a_limit_of_three_across_four_processes<S: Store + Clone>(stores: [S; 4]) {
    let client = Client::new(stores[0].clone());
    client
        .set_queue_limits("limited", QueueLimits::default().max_running(3))
        .await
        .unwrap();
    let (jobs, ms) = (60, 100);
    client
        .enqueue_many((0..jobs).map(|_| work("limited", ms)))
        .await
        .unwrap();
    let ledger = Ledger::default();
    let handles: Vec<_> = stores
        .iter()
        .map(|s| worker(s.clone(), &ledger, &["limited"], 3))
        .collect();
    let done = ListFilter::new()
        .queue("limited")
        .state(JobState::Completed);
    wait_for(
        "60 jobs under a limit of 3",
        Duration::from_secs(60),
        || async { stores[0].count(&done).await.unwrap() == jobs as u64 },
    )
    .await;
    for h in handles {
        h.shutdown().await;
    }
    let ledger = ledger.lock().unwrap().clone();
    assert_eq!(ledger.len(), jobs);
    assert_eq!(
        most_at_once(&ledger),
        3,
        "the limit was reached and never passed"
    );
    let first = ledger.iter().map(|r| r.2).min().unwrap();
    let last = ledger.iter().map(|r| r.3).max().unwrap();
    let span = (last - first).as_secs_f64();
    let busy: f64 = ledger.iter().map(|r| (r.3 - r.2).as_secs_f64()).sum();
    // What 3 slots could have done in the span, used.
    let use_of_3 = busy / (3.0 * span);
    assert!(
        use_of_3 >= 0.75,
        "3 slots used at {use_of_3:.2} over {span:.2} s"
    );
    eprintln!(
        "limit 3, 4 processes × 3 slots: at most 3 at once; {jobs} × {ms} ms in {span:.2} s \
         (3 slots ideal {:.2} s): the 3 slots busy {:.0} % of the time",
        jobs as f64 * ms as f64 / 3000.0,
        use_of_3 * 100.0
    );
}

on_processes!(a_limit_of_three_across_four_processes, 4);

/// One worker alone keeps the rate too (its claims come on the grid of its last take, so a
/// bucket of one token loses nothing): 10 a second, 31 jobs of 50 ms, within 10 %.
async fn one_worker_keeps_a_rate_of_ten<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let rate = RateLimit::new(10, Duration::from_secs(1));
    client
        .set_queue_limits("sync", QueueLimits::default().rate(rate))
        .await
        .unwrap();
    client
        .enqueue_many((0..31).map(|i| sync(format!("c{i}"), 50)))
        .await
        .unwrap();
    let ledger = Ledger::default();
    let handle = worker(store.clone(), &ledger, &["sync"], 4);
    let done = ListFilter::new().queue("sync").state(JobState::Completed);
    wait_for(
        "31 jobs at 10 a second",
        Duration::from_secs(20),
        || async { store.count(&done).await.unwrap() == 31 },
    )
    .await;
    handle.shutdown().await;
    let mut starts: Vec<Instant> = ledger.lock().unwrap().iter().map(|r| r.2).collect();
    starts.sort();
    let observed = 30.0 / (starts[30] - starts[0]).as_secs_f64();
    assert!(
        (9.0..=11.0).contains(&observed),
        "one worker started {observed:.2} a second under a limit of 10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_keeps_a_rate_of_ten_on_memory() {
    one_worker_keeps_a_rate_of_ten(errand::MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_keeps_a_rate_of_ten_on_sqlite() {
    let (store, _dir) = sqlite().await;
    one_worker_keeps_a_rate_of_ten(store).await;
}
