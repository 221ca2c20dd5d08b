//! Job counts by queue and state from bounded reads: each state's jobs are counted up to
//! [`crate::Config::count_limit`] (one query per state, in parallel), so a store holding
//! millions of completed jobs costs at most that many rows per state, never a scan of the
//! table. A state that reaches the limit is marked: its numbers are lower bounds ("≥").

use std::collections::{BTreeMap, BTreeSet};

use errand::JobState;

use crate::app::App;
use crate::pages::overview::bounded;

/// Counts of every queue seen, by state.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// queue → count per state, in `JobState::ALL` order.
    pub(crate) queues: BTreeMap<String, [u64; JobState::ALL.len()]>,
    /// States whose counts reached the limit (lower bounds).
    pub(crate) capped: BTreeSet<JobState>,
    /// States whose read failed or was too slow, with why.
    pub(crate) missing: Vec<(JobState, String)>,
}

impl Counts {
    pub(crate) async fn read(app: &App) -> Counts {
        let cap = app.config.count_limit;
        let reads = JobState::ALL.map(|s| async move {
            (
                s,
                bounded(app, app.store().state_counts_up_to(s, cap)).await,
            )
        });
        let mut out = Counts::default();
        for (i, (state, r)) in futures_join_all(reads).await.into_iter().enumerate() {
            match r {
                Ok(counts) => {
                    if counts.iter().map(|c| c.count).sum::<u64>() > cap {
                        out.capped.insert(state);
                    }
                    for c in counts {
                        out.queues.entry(c.queue).or_default()[i] = c.count;
                    }
                }
                Err(e) => out.missing.push((state, e)),
            }
        }
        out
    }

    /// `queue`'s count in `state` (0 when unseen).
    pub(crate) fn get(&self, queue: &str, state: JobState) -> u64 {
        let i = JobState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        self.queues.get(queue).map_or(0, |c| c[i])
    }

    /// A cell: the number, or `≥ n` when its state reached the limit.
    pub(crate) fn show(&self, state: JobState, n: u64) -> String {
        if self.capped.contains(&state) {
            format!("≥ {n}")
        } else {
            n.to_string()
        }
    }
}

/// Runs the reads together (they take one connection each).
async fn futures_join_all<F: std::future::Future>(fs: [F; JobState::ALL.len()]) -> Vec<F::Output> {
    let [a, b, c, d, e, f, g, h] = fs;
    let (a, b, c, d, e, f, g, h) = tokio::join!(a, b, c, d, e, f, g, h);
    vec![a, b, c, d, e, f, g, h]
}
