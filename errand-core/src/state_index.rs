//! How the SQL stores index job states, shared so both write the same predicates.
//!
//! There is no index over every state: each group below has its own partial index, so a
//! state change touches only the small indexes of the states it leaves and enters (a job
//! that runs once touches four index entries, not eight). A query over several groups asks
//! each group separately, with a predicate the database can match to that group's index.

use crate::JobState;

/// The groups of states that share one partial index in the SQL schemas.
///
/// | group | index | serves |
/// |---|---|---|
/// | pending | `(queue, id)` | counts and lists of waiting workflow steps |
/// | available | `(queue, priority, run_at, id)` | claims, counts per queue |
/// | running | `(lease_expires_at)` | the rescuer, counts |
/// | scheduled, retryable | `(run_at, state, queue)` | the scheduler, counts per queue |
/// | discarded, cancelled | `(queue, id)` | lists of failed jobs |
/// | completed | none (pruned by `finalized_at`) | lists walk ids backwards |
pub const STATE_INDEX_GROUPS: [&[JobState]; 6] = [
    &[JobState::Pending],
    &[JobState::Available],
    &[JobState::Running],
    &[JobState::Scheduled, JobState::Retryable],
    &[JobState::Discarded, JobState::Cancelled],
    &[JobState::Completed],
];

/// SQL predicates over `state`, one per index group that `states` touches, each written so
/// the database can use that group's partial index (the group's exact index predicate,
/// narrowed when only some of its states are asked for). Empty when `states` is empty,
/// which means "any state": no predicate.
///
/// Several states are written as a chain of `=` tests, never `IN (…)`: SQLite evaluates
/// an index's predicate for every row a statement changes, and an `IN` list there costs
/// several times the chain (see [`state_any`]).
///
/// State names come from [`JobState::as_str`], so the literals are safe to inline.
pub fn state_predicates(states: &[JobState]) -> Vec<String> {
    let mut out = Vec::new();
    for group in STATE_INDEX_GROUPS {
        let asked: Vec<JobState> = group
            .iter()
            .copied()
            .filter(|s| states.contains(s))
            .collect();
        if asked.is_empty() {
            continue;
        }
        let mut pred = state_any(group);
        if asked.len() < group.len() {
            pred.push_str(" AND ");
            pred.push_str(&state_any(&asked));
        }
        out.push(pred);
    }
    out
}

/// `state = 'a'`, or `(state = 'a' OR state = 'b' …)` for several states: the form of every
/// state predicate in the SQL schemas and the queries that must match them.
///
/// SQLite matches a partial index to a query by the text of its predicate, and evaluates the
/// predicates (and `CHECK` constraints) of every index over `state` for each row an update
/// changes; there a chain of `=` costs far less than `state IN ('a', 'b')`. Postgres proves
/// either form from the other, so both stores write this one.
pub fn state_any(states: &[JobState]) -> String {
    match states {
        [one] => format!("state = '{one}'"),
        _ => {
            let tests: Vec<String> = states.iter().map(|s| format!("state = '{s}'")).collect();
            format!("({})", tests.join(" OR "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_in_exactly_one_group() {
        for s in JobState::ALL {
            let n = STATE_INDEX_GROUPS.iter().filter(|g| g.contains(&s)).count();
            assert_eq!(n, 1, "{s}");
        }
    }

    #[test]
    fn predicates_follow_the_index_groups() {
        assert!(state_predicates(&[]).is_empty());
        assert_eq!(
            state_predicates(&[JobState::Available]),
            vec!["state = 'available'"]
        );
        assert_eq!(
            state_predicates(&[JobState::Retryable, JobState::Running]),
            vec![
                "state = 'running'",
                "(state = 'scheduled' OR state = 'retryable') AND state = 'retryable'"
            ]
        );
        let non_final: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        assert_eq!(
            state_predicates(&non_final),
            vec![
                "state = 'pending'",
                "state = 'available'",
                "state = 'running'",
                "(state = 'scheduled' OR state = 'retryable')"
            ]
        );
    }

    #[test]
    fn several_states_are_a_chain_of_equalities() {
        assert_eq!(state_any(&[JobState::Running]), "state = 'running'");
        assert_eq!(
            state_any(&[
                JobState::Completed,
                JobState::Discarded,
                JobState::Cancelled
            ]),
            "(state = 'completed' OR state = 'discarded' OR state = 'cancelled')"
        );
    }
}
