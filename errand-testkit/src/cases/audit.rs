//! The audit log: entries kept exactly, in order, read newest first with keyset paging.

use errand_core::{NewAudit, Store};

use crate::helpers::*;

/// Entries come back newest first, every field as written (hostile text included), ids
/// increasing; `before` pages through them.
pub async fn audit_entries_read_newest_first_and_page<S: Store>(store: S) {
    assert!(store.audit_log(0, None).await.unwrap().is_empty());
    let hostile = "\"><img src=x onerror=alert(1)> <script>alert('é')</script>\u{0}end";
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = NewAudit::new(format!("user{i}"), "job.retry", format!("job {i}"), hostile);
        ids.push(store.record_audit(&e, at(i)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let page = store.audit_log(3, None).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    let e = &page[0];
    assert_eq!(
        (e.at, e.actor.as_str(), e.action.as_str(), e.target.as_str()),
        (at(4), "user4", "job.retry", "job 4")
    );
    assert_eq!(
        e.detail,
        "\"><img src=x onerror=alert(1)> <script>alert('é')</script>\u{FFFD}end"
    );
    let rest = store.audit_log(3, Some(ids[2])).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );
}

/// A huge detail is kept up to its bound, not refused: the action happened and must be
/// on record.
pub async fn audit_keeps_a_huge_detail_up_to_its_bound<S: Store>(store: S) {
    let e = NewAudit::new("a", "jobs.cancel", "filter", "9".repeat(1_000_000));
    let id = store.record_audit(&e, at(0)).await.unwrap();
    let got = store.audit_log(1, None).await.unwrap();
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].detail.len(), errand_core::MAX_AUDIT_DETAIL);
}
