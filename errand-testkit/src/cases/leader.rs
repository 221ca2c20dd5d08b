//! Leadership leases: one holder at a time, renewed only by it, free once ended or resigned.

use std::time::Duration;

use errand_core::{Store, MAINTENANCE_LEADER as M};

use crate::helpers::*;

const LEASE: Duration = Duration::from_secs(10);

/// A free lease goes to the first asker and stays with it: another is refused while it
/// lasts, its holder renews it (keeping when it was elected, moving when it ends).
pub async fn a_free_lease_is_taken_and_kept_by_its_holder<S: Store>(store: S) {
    assert_eq!(store.leader(M).await.unwrap(), None, "no leader before any");
    assert!(store.lead(M, "a", at(0), LEASE).await.unwrap());
    assert!(
        !store.lead(M, "b", at(1), LEASE).await.unwrap(),
        "held by a"
    );
    assert!(store.lead(M, "a", at(5), LEASE).await.unwrap(), "renewed");
    assert!(
        !store.lead(M, "b", at(12), LEASE).await.unwrap(),
        "renewed to 15 s"
    );
    let l = store.leader(M).await.unwrap().expect("a leads");
    assert_eq!(
        (
            l.name.as_str(),
            l.holder.as_str(),
            l.elected_at,
            l.expires_at
        ),
        (M, "a", at(0), at(15))
    );
    // Another lease name is another lease.
    assert!(store.lead("other", "b", at(12), LEASE).await.unwrap());
    assert_eq!(store.leader(M).await.unwrap().unwrap().holder, "a");
}

/// When its holder stops renewing, the lease ends and the next asker takes it; the old
/// holder, back late, is refused.
pub async fn an_ended_lease_goes_to_the_next_asker<S: Store>(store: S) {
    assert!(store.lead(M, "a", at(0), LEASE).await.unwrap());
    assert!(
        !store.lead(M, "b", at(9), LEASE).await.unwrap(),
        "not ended yet"
    );
    assert!(
        store.lead(M, "b", at(10), LEASE).await.unwrap(),
        "ended at 10 s"
    );
    let l = store.leader(M).await.unwrap().expect("b leads");
    assert_eq!(
        (l.holder.as_str(), l.elected_at, l.expires_at),
        ("b", at(10), at(20))
    );
    assert!(
        !store.lead(M, "a", at(11), LEASE).await.unwrap(),
        "a lost it"
    );
}

/// Resigning frees the lease at once, but only for its holder.
pub async fn resign_frees_the_lease_for_its_holder_only<S: Store>(store: S) {
    assert!(store.lead(M, "a", at(0), LEASE).await.unwrap());
    store.resign(M, "b").await.unwrap();
    assert_eq!(store.leader(M).await.unwrap().unwrap().holder, "a");
    assert!(!store.lead(M, "b", at(1), LEASE).await.unwrap());
    store.resign(M, "a").await.unwrap();
    assert_eq!(store.leader(M).await.unwrap(), None);
    assert!(store.lead(M, "b", at(1), LEASE).await.unwrap());
    // Resigning a lease one does not hold, or that does not exist, is no error.
    store.resign(M, "a").await.unwrap();
    store.resign("none", "a").await.unwrap();
    assert_eq!(store.leader(M).await.unwrap().unwrap().holder, "b");
}

/// Eight workers asking for a free lease at the same instant: one wins.
pub async fn racing_askers_elect_one<S: Store + Clone>(store: S) {
    for round in 0..5 {
        let now = at(100 * round);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let me = format!("w{round}-{i}");
                    store.lead(M, &me, now, LEASE).await.unwrap().then_some(me)
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            won.extend(t.await.unwrap());
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        assert_eq!(store.leader(M).await.unwrap().unwrap().holder, won[0]);
    }
}
