//! A worker on tokio's paused clock (`WorkerBuilder::tokio_clock`): retries with minutes of
//! backoff and a job delayed by a day run in virtual time, so the test takes milliseconds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use errand::store::Store;
use errand::{
    Backoff, Client, Job, JobContext, JobError, JobId, JobOptions, JobRow, JobState, MemoryStore,
    Outcome, Worker,
};
use serde::{Deserialize, Serialize};

/// Fails its first two attempts; ten minutes of backoff after each.
#[derive(Serialize, Deserialize)]
struct Flaky;

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type State = Arc<AtomicU32>;
    async fn run(self, cx: JobContext<Arc<AtomicU32>>) -> Result<Outcome, JobError> {
        cx.state().fetch_add(1, Ordering::SeqCst);
        if cx.attempt() <= 2 {
            return Err(JobError::msg("not yet"));
        }
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().backoff(Backoff::constant(Duration::from_secs(600)))
    }
}

/// Waits in virtual time (each sleep is skipped by the paused clock) for `id` to reach
/// `state`, for at most `limit` of virtual time, looking a thousand times.
async fn wait_virtual(store: &MemoryStore, id: JobId, state: JobState, limit: Duration) -> JobRow {
    let began = tokio::time::Instant::now();
    loop {
        let row = store.get(id).await.unwrap().unwrap();
        if row.state == state {
            return row;
        }
        assert!(
            began.elapsed() < limit,
            "job {id} still {:?} after {limit:?} of virtual time",
            row.state
        );
        tokio::time::sleep(limit / 1000).await;
    }
}

#[tokio::test(start_paused = true)]
async fn backoffs_and_delays_pass_in_virtual_time() {
    let store = MemoryStore::new();
    let client = Client::new(store.clone()).tokio_clock();
    let flaky = client.enqueue(Flaky).await.unwrap().id;
    let tomorrow = client
        .enqueue_with(Flaky, JobOptions::new().delay(Duration::from_secs(86_400)))
        .await
        .unwrap()
        .id;
    let runs = Arc::new(AtomicU32::new(0));
    let real = std::time::Instant::now();
    let worker = Worker::builder(store.clone(), runs.clone())
        .register::<Flaky>()
        .queue("default", 2)
        .tokio_clock()
        // Fewer idle passes to step through in a virtual day (each is real work).
        .poll_interval(Duration::from_secs(60))
        .schedule_interval(Duration::from_secs(60))
        .build()
        .unwrap()
        .start();
    let row = wait_virtual(
        &store,
        flaky,
        JobState::Completed,
        Duration::from_secs(3600),
    )
    .await;
    // Each retry waited its ten minutes of (virtual) backoff.
    assert_eq!((row.attempt, row.errors.len()), (3, 2));
    let gap = row.errors[1].at - row.errors[0].at;
    assert!(gap >= chrono::TimeDelta::seconds(600), "{gap}");
    assert!(gap <= chrono::TimeDelta::seconds(660), "{gap}");
    // Not due before its day has passed.
    assert_eq!(
        store.get(tomorrow).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    let later = wait_virtual(
        &store,
        tomorrow,
        JobState::Completed,
        Duration::from_secs(2 * 86_400),
    )
    .await;
    assert!(later.created_at + chrono::TimeDelta::seconds(86_400) <= later.run_at);
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 6);
    // Not a speed target: what took a virtual day took (far) less than one of real time.
    println!("a virtual day in {:?} of real time", real.elapsed());
}

/// Records the tick each run was scheduled for.
#[derive(Serialize, Deserialize)]
struct Hourly;

impl Job for Hourly {
    const KIND: &'static str = "hourly";
    type State = Arc<std::sync::Mutex<Vec<chrono::DateTime<chrono::Utc>>>>;
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        cx.state().lock().unwrap().push(cx.scheduled_at());
        Ok(Outcome::Complete)
    }
}

/// An hourly cron entry carried by two workers, over four virtual hours: each tick runs
/// once, on the hour, none skipped (in real time this would take hours).
#[tokio::test(start_paused = true)]
async fn hourly_cron_ticks_run_once_each_in_virtual_time() {
    let store = MemoryStore::new();
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = |id: &str| {
        Worker::builder(store.clone(), ran.clone())
            .register::<Hourly>()
            .queue("default", 1)
            .cron("hourly", "0 * * * *", Hourly)
            .worker_id(id)
            .tokio_clock()
            .poll_interval(Duration::from_secs(60))
            .schedule_interval(Duration::from_secs(60))
            .build()
            .unwrap()
            .start()
    };
    let (a, b) = (start("a"), start("b"));
    tokio::time::sleep(Duration::from_secs(4 * 3600 + 120)).await;
    a.shutdown().await;
    b.shutdown().await;
    let mut ticks = ran.lock().unwrap().clone();
    ticks.sort();
    assert!(ticks.len() >= 4, "{ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::TimeDelta::hours(1), "{ticks:?}");
    }
    use chrono::Timelike;
    assert!(
        ticks.iter().all(|t| t.minute() == 0 && t.second() == 0),
        "{ticks:?}"
    );
}

/// Sleeps (in tokio's time) for its minutes.
#[derive(Serialize, Deserialize)]
struct Long {
    minutes: u64,
}

impl Job for Long {
    const KIND: &'static str = "long";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
        tokio::time::sleep(Duration::from_secs(self.minutes * 60)).await;
        Ok(Outcome::Complete)
    }
}

/// The heartbeat holds a job's 30 s lease for ten minutes (twenty leases) while a rescuer
/// looks every second: never rescued, one attempt. (The same test on SQLite and Postgres,
/// in `worker.rs`, can afford only about three leases of real time.)
#[tokio::test(start_paused = true)]
async fn the_heartbeat_holds_a_long_job_for_many_leases() {
    let store = MemoryStore::new();
    let id = Client::new(store.clone())
        .tokio_clock()
        .enqueue(Long { minutes: 10 })
        .await
        .unwrap()
        .id;
    let worker = Worker::builder(store.clone(), ())
        .register::<Long>()
        .queue("default", 1)
        .tokio_clock()
        .lease(Duration::from_secs(30))
        .rescue_interval(Duration::from_secs(1))
        .build()
        .unwrap()
        .start();
    let row = wait_virtual(&store, id, JobState::Completed, Duration::from_secs(1200)).await;
    worker.shutdown().await;
    assert_eq!(row.attempt, 1, "never rescued while its worker was alive");
    assert!(row.errors.is_empty(), "{:?}", row.errors);
    let ran = row.finalized_at.unwrap() - row.attempted_at.unwrap();
    assert!(ran >= chrono::TimeDelta::minutes(10), "{ran}");
}

/// Completes, or gives up at once.
#[derive(Serialize, Deserialize)]
struct Ends {
    fail: bool,
}

impl Job for Ends {
    const KIND: &'static str = "ends";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
        Ok(if self.fail {
            Outcome::discard("gave up")
        } else {
            Outcome::Complete
        })
    }
}

/// Each final state keeps its own retention: with the defaults, completed jobs go after a
/// day and discarded ones only after a week (virtual time).
#[tokio::test(start_paused = true)]
async fn each_final_state_is_pruned_after_its_own_retention() {
    let store = MemoryStore::new();
    let client = Client::new(store.clone()).tokio_clock();
    let done = client.enqueue(Ends { fail: false }).await.unwrap().id;
    let failed = client.enqueue(Ends { fail: true }).await.unwrap().id;
    let worker = Worker::builder(store.clone(), ())
        .register::<Ends>()
        .queue("default", 2)
        .tokio_clock()
        .retention(errand::Retention::default())
        .poll_interval(Duration::from_secs(60))
        .schedule_interval(Duration::from_secs(60))
        .build()
        .unwrap()
        .start();
    wait_virtual(&store, done, JobState::Completed, Duration::from_secs(60)).await;
    wait_virtual(&store, failed, JobState::Discarded, Duration::from_secs(60)).await;
    let gone = |id| {
        let store = store.clone();
        async move { store.get(id).await.unwrap().is_none() }
    };
    let began = tokio::time::Instant::now();
    while !gone(done).await {
        assert!(
            began.elapsed() < Duration::from_secs(2 * 86_400),
            "completed job kept"
        );
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    // A day and a bit after: the completed job went, the discarded one stays for its week.
    assert!(began.elapsed() >= Duration::from_secs(86_400 - 600));
    assert!(
        !gone(failed).await,
        "discarded job pruned with the completed ones"
    );
    while !gone(failed).await {
        assert!(
            began.elapsed() < Duration::from_secs(8 * 86_400),
            "discarded job kept"
        );
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    assert!(began.elapsed() >= Duration::from_secs(7 * 86_400 - 3600));
    worker.shutdown().await;
}
