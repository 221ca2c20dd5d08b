//! One leader for maintenance across worker processes: three `errand chaos-worker`
//! processes on one database elect one; SIGKILL it and another takes over within two
//! leases; stop the next one gracefully and it resigns, so a third takes over at once.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use errand::store::Store;
use errand::Leader;

const LEASE_MS: u64 = 1_000;
const M: &str = errand::MAINTENANCE_LEADER;

/// The pid in a default worker id (`host:pid:random`).
fn pid_of(holder: &str) -> u32 {
    holder
        .rsplit(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in worker id {holder}"))
}

/// Waits (bounded) for a live leader other than `not`, among `workers`.
async fn leader_other_than(store: &dyn Store, not: Option<&str>, workers: &[Worker]) -> Leader {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = store.now(Utc::now()).await;
        let seen = store.leader(M).await.unwrap();
        if let Some(l) = &seen {
            let live = workers.iter().any(|w| w.id() == pid_of(&l.holder));
            if l.expires_at > now && Some(l.holder.as_str()) != not && live {
                return l.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within 20 s; at {now} the lease was {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn one_leader_fails_over(db: Db) {
    // The workers' ledger table, created once here: three processes creating it at once race
    // on Postgres' catalog and all but one exit.
    db.ledger().await;
    let store = db.store();
    let lease = LEASE_MS.to_string();
    let args = ["--leader-lease-ms", &lease, "--poll-ms", "200"];
    let mut workers: Vec<Worker> = (0..3).map(|_| db.worker(&args)).collect();

    let first = leader_other_than(&*store, None, &workers).await;
    // SIGKILL the leader: it cannot resign; its lease must end first.
    let i = workers
        .iter()
        .position(|w| w.id() == pid_of(&first.holder))
        .unwrap();
    let killed_at = store.now(Utc::now()).await;
    let mut killed = workers.remove(i);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let second = leader_other_than(&*store, Some(&first.holder), &workers).await;
    let failover = (second.elected_at - killed_at).to_std().unwrap_or_default();
    assert!(
        failover <= Duration::from_millis(2 * LEASE_MS),
        "failover took {failover:?}: more than two leases of {LEASE_MS} ms"
    );
    assert!(
        second.elected_at >= first.expires_at,
        "taken before the killed leader's lease ended: {first:?} {second:?}"
    );

    // SIGTERM the new leader: it resigns on the way out, the last one takes over at its
    // next try (every third of a lease), not after a lease.
    let second_pid = pid_of(&second.holder);
    let j = workers.iter().position(|w| w.id() == second_pid).unwrap();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &second_pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut stopped = workers.remove(j);
    let status = stopped.wait().unwrap();
    assert!(status.success(), "graceful exit: {status}");
    let exited_at = store.now(Utc::now()).await;
    let third = leader_other_than(&*store, Some(&second.holder), &workers).await;
    let handover = (third.elected_at - exited_at).to_std().unwrap_or_default();
    assert!(
        handover < Duration::from_millis(LEASE_MS),
        "after a resignation the next leader took {handover:?}: the lease was not given up"
    );
    eprintln!(
        "lease {LEASE_MS} ms: SIGKILLed leader replaced {:.0} ms after the kill ({:.0} ms after \
         its lease ended); a leader stopped by SIGTERM replaced {:.0} ms after it exited",
        failover.as_secs_f64() * 1e3,
        (second.elected_at - first.expires_at).num_milliseconds(),
        handover.as_secs_f64() * 1e3,
    );
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_fails_over_on_sqlite() {
    one_leader_fails_over(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_fails_over_on_postgres() {
    one_leader_fails_over(Db::postgres().await).await;
}
