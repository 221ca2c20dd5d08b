//! Leases: extension, rescue of expired ones, release on shutdown.

use errand_core::{JobState, LeaseRef, Store};

use crate::helpers::*;

/// Extending moves the expiry of held attempts and reports the ones no longer held.
pub async fn extend_leases_only_for_held_attempts<S: Store>(store: S) {
    insert_n(&store, "q", 2).await;
    let rows = claim(&store, "q", 2, at(1)).await;
    let stale = LeaseRef {
        id: rows[1].id,
        attempt: 7,
    };
    let held = store
        .extend_leases(&[rows[0].lease_ref(), stale], at(90))
        .await
        .unwrap();
    assert_eq!(held, vec![rows[0].id]);
    assert_eq!(get(&store, rows[0].id).await.lease_expires_at, Some(at(90)));
    assert_eq!(get(&store, rows[1].id).await.lease_expires_at, Some(at(31)));
}

/// A running job whose lease expired becomes retryable with an error naming the worker.
pub async fn rescue_makes_expired_jobs_retryable<S: Store>(store: S) {
    let id = insert_one(&store, job("a", "q")).await;
    claim(&store, "q", 1, at(1)).await;
    let report = store.rescue_expired(at(32), 100).await.unwrap();
    assert_eq!((report.retried, report.discarded), (1, 0));
    let row = get(&store, id).await;
    assert_eq!(row.state, JobState::Retryable);
    assert_eq!(row.run_at, at(32));
    assert_eq!(row.lease_expires_at, None);
    assert_eq!(row.errors.len(), 1);
    assert_eq!(row.errors[0].attempt, 1);
    assert!(
        row.errors[0].message.contains("lease expired") && row.errors[0].message.contains("w1"),
        "{}",
        row.errors[0].message
    );
}

/// A rescued job with no attempts left is discarded.
pub async fn rescue_discards_when_out_of_attempts<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.max_attempts = 1;
    let id = insert_one(&store, j).await;
    claim(&store, "q", 1, at(1)).await;
    let report = store.rescue_expired(at(40), 100).await.unwrap();
    assert_eq!((report.retried, report.discarded), (0, 1));
    let row = get(&store, id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.finalized_at, Some(at(40)));
}

/// Live leases (and jobs that are not running) are not touched.
pub async fn rescue_leaves_live_leases_alone<S: Store>(store: S) {
    insert_n(&store, "q", 2).await;
    let rows = claim(&store, "q", 1, at(1)).await;
    let report = store.rescue_expired(at(30), 100).await.unwrap();
    assert_eq!((report.retried, report.discarded), (0, 0));
    assert_eq!(get(&store, rows[0].id).await.state, JobState::Running);
    assert_eq!(store.count(&Default::default()).await.unwrap(), 2);
}

/// Release (graceful shutdown) makes jobs available again with the attempt given back.
pub async fn release_returns_jobs_without_charging<S: Store>(store: S) {
    insert_n(&store, "q", 2).await;
    let rows = claim(&store, "q", 2, at(1)).await;
    let leases: Vec<_> = rows.iter().map(|r| r.lease_ref()).collect();
    assert_eq!(store.release(&leases, at(2)).await.unwrap(), 2);
    for r in &rows {
        let row = get(&store, r.id).await;
        assert_eq!(row.state, JobState::Available);
        assert_eq!(row.attempt, 0);
        assert!(row.errors.is_empty());
        assert_eq!(row.lease_expires_at, None);
    }
    assert_eq!(claim(&store, "q", 5, at(3)).await.len(), 2);
}

/// Release of an attempt that no longer holds the job changes nothing.
pub async fn release_is_fenced<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let stale = LeaseRef {
        id: r.id,
        attempt: r.attempt + 1,
    };
    assert_eq!(store.release(&[stale], at(2)).await.unwrap(), 0);
    assert_eq!(get(&store, r.id).await.state, JobState::Running);
}
