//! Micro-benchmarks of the hot paths that need no database: payload encode/decode, registry
//! dispatch, backoff. `cargo bench -p errand`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use errand::bench_support::Dispatcher;
use errand::{Backoff, Job, JobContext, JobError, JobRow, JobState, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    subject: String,
    user_id: u64,
    tags: Vec<String>,
}

impl Job for SendEmail {
    const KIND: &'static str = "send_email";
    type State = ();
    async fn run(self, _cx: JobContext<()>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

fn sample() -> SendEmail {
    SendEmail {
        to: "ada@example.com".into(),
        subject: "Welcome to errand".into(),
        user_id: 42,
        tags: vec!["onboarding".into(), "mail".into()],
    }
}

fn row(args: String) -> JobRow {
    let t = chrono::Utc::now();
    let mut row = JobRow::new(1, "send_email", "default", args);
    row.state = JobState::Running;
    (row.attempt, row.max_attempts) = (1, 20);
    (row.run_at, row.created_at) = (t, t);
    (row.attempted_at, row.lease_expires_at) = (Some(t), Some(t));
    row.attempted_by = Some("bench".into());
    row
}

fn payload(c: &mut Criterion) {
    let job = sample();
    let text = serde_json::to_string(&job).unwrap();
    c.bench_function("payload encode", |b| {
        b.iter(|| serde_json::to_string(black_box(&job)).unwrap())
    });
    c.bench_function("payload decode", |b| {
        b.iter(|| serde_json::from_str::<SendEmail>(black_box(&text)).unwrap())
    });
}

fn dispatch(c: &mut Criterion) {
    let mut d = Dispatcher::default();
    d.register::<SendEmail>(());
    let row = Arc::new(row(serde_json::to_string(&sample()).unwrap()));
    c.bench_function("registry dispatch (lookup, decode, build future)", |b| {
        b.iter(|| assert!(d.start(black_box(row.clone()))))
    });
}

fn backoff(c: &mut Criterion) {
    let b_exp = Backoff::default();
    let b_lin = Backoff::linear(
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    c.bench_function("backoff exponential+jitter", |b| {
        b.iter(|| b_exp.delay(black_box(7), black_box(0.37)))
    });
    c.bench_function("backoff linear", |b| {
        b.iter(|| b_lin.delay(black_box(7), black_box(0.37)))
    });
}

criterion_group!(benches, payload, dispatch, backoff);
criterion_main!(benches);
