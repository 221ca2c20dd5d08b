//! The errand store conformance suite.
//!
//! Every store runs every case: a store is correct when it passes all of them. The cases are
//! `pub async fn`s grouped by area in [`cases`]; [`store_conformance!`] expands them to one
//! named `#[tokio::test]` per case for a store, given an async factory that returns a fresh,
//! isolated store:
//!
//! ```text
//! async fn store() -> MyStore { MyStore::new_isolated().await }
//! errand_testkit::store_conformance!(store);
//! ```
//!
//! Cases pass explicit timestamps to the store, so they never sleep to move time forward.
#![warn(missing_docs)]

pub mod cases;
pub mod helpers;

/// Expands every conformance case into a `#[tokio::test]` named `<area>::<case>`, each run on
/// a fresh store from `$factory` (an `async fn() -> impl Store + Clone` in scope).
#[macro_export]
macro_rules! store_conformance {
    ($factory:ident) => {
        $crate::store_conformance!(@areas $factory;
            insert: [
                insert_returns_ids_in_order,
                insert_future_run_at_is_scheduled,
                insert_keeps_args_and_options,
                insert_batch_keeps_each_jobs_options,
                insert_large_batch_keeps_each_job,
                insert_unique_key_returns_existing_job,
                insert_unique_key_is_free_once_final,
                insert_unique_key_in_one_batch,
                insert_empty_batch_is_ok,
                insert_wakes_the_queue,
                ids_are_never_reused_after_the_newest_jobs_are_deleted,
            ],
            claim: [
                claim_sets_running_attempt_and_lease,
                claim_returns_every_field_exactly,
                claim_orders_by_priority_run_at_id,
                claim_respects_limit,
                claim_only_takes_its_queue,
                claim_skips_jobs_that_are_not_available,
                claim_on_empty_queue_returns_nothing,
                large_claims_take_exactly_what_they_may,
            ],
            outcome: [
                complete_is_final,
                retry_later_is_retryable_with_error,
                retry_now_outcome_is_available,
                finish_wakes_the_queue_and_the_scheduler,
                snooze_reschedules_without_using_an_attempt,
                cancel_outcome_is_final,
                discard_keeps_error_and_payload,
                outcome_of_a_stale_attempt_is_ignored,
                outcome_batch_reports_applied_ids,
                large_completion_batch_is_exact,
                error_history_accumulates_in_order,
            ],
            unique: [
                a_finished_job_holds_its_key_in_the_chosen_final_states,
                a_period_lets_the_key_go_after_it_passes,
                racing_inserts_after_a_period_insert_once,
            ],
            result: [
                a_completion_stores_its_result,
                progress_is_fenced_and_kept,
                retry_now_clears_result_and_progress,
                ends_wake_whoever_waits,
            ],
            lease: [
                extend_leases_only_for_held_attempts,
                rescue_makes_expired_jobs_retryable,
                rescue_discards_when_out_of_attempts,
                rescue_leaves_live_leases_alone,
                release_returns_jobs_without_charging,
                release_is_fenced,
            ],
            schedule: [
                promote_moves_due_scheduled_and_retryable,
                promote_reports_queues_and_wakes_them,
                promote_leaves_future_jobs,
                promote_respects_limit,
                promote_reports_when_the_next_job_is_due,
            ],
            cancel_retry: [
                cancel_available_job,
                cancel_running_job_fences_its_outcome,
                cancel_final_job_is_already_final,
                cancel_missing_job_is_not_found,
                retry_discarded_job_grants_an_attempt,
                retry_running_job_leaves_it_alone,
                retry_missing_job_is_none,
                delete_removes_a_job_but_not_a_running_one,
            ],
            list: [
                list_filters_by_state_queue_and_kind,
                list_pages_newest_first,
                list_pages_oldest_first,
                list_and_count_filter_by_tag,
                count_matches_filters,
                stats_count_by_queue_and_state,
                stats_for_chosen_states,
                queries_across_many_states_are_exact,
                counts_up_to_a_cap_are_exact_below_it,
                state_counts_up_to_a_cap,
            ],
            queue: [
                a_paused_queue_claims_nothing_until_resumed,
                pause_and_resume_wake_who_must_act,
                a_queue_limit_caps_running_jobs,
                oldest_available_is_the_earliest_due_waiting_job,
                queues_with_available_names_those_with_work,
            ],
            metered: [
                a_per_key_limit_caps_each_key,
                keys_take_turns_whatever_their_backlog,
                a_rate_limit_meters_starts,
                a_rate_per_key_meters_each_key,
                limits_combine_and_survive_pause,
                bad_limits_are_refused,
                partition_keys_are_data,
                racing_claimers_never_exceed_a_per_key_limit,
                a_limit_counts_what_the_claiming_worker_holds,
                a_claim_walks_past_a_thousand_keys_at_their_limit,
            ],
            prune: [
                prune_deletes_only_old_final_jobs,
                prune_respects_limit,
                prune_takes_one_state_at_a_time,
            ],
            leader: [
                a_free_lease_is_taken_and_kept_by_its_holder,
                an_ended_lease_goes_to_the_next_asker,
                resign_frees_the_lease_for_its_holder_only,
                racing_askers_elect_one,
            ],
            audit: [
                audit_entries_read_newest_first_and_page,
                audit_keeps_a_huge_detail_up_to_its_bound,
            ],
            presence: [
                a_worker_record_is_kept_replaced_and_removed,
                silent_workers_are_forgotten,
            ],
            tally: [
                finished_jobs_are_tallied_once_per_minute,
                a_tally_reaches_back_only_its_window,
                racing_tallies_count_each_job_once,
            ],
            workflow: [
                a_step_waits_for_its_dependencies,
                parents_ending_in_one_batch_release_once,
                a_released_step_keeps_its_run_time_and_reads_outputs,
                a_failed_dependency_cancels_its_dependents,
                retrying_a_failed_dependency_revives_its_dependents,
                a_step_with_two_failed_dependencies_waits_for_both_retries,
                a_hand_retry_never_skips_dependencies,
                cancelling_a_workflow_cancels_every_unfinished_step,
                a_running_step_fans_out_and_in,
                bad_workflows_write_nothing,
                a_released_step_wakes_its_queue,
                racing_parents_release_their_step_once,
                pruning_steps_removes_their_edges_and_emptied_workflows,
                new_steps_hold_back_a_pending_step,
                a_held_step_is_cancelled_by_a_new_step_born_cancelled,
                a_completed_dependency_retried_and_failed_holds_nothing_back,
                deleting_a_step_ends_it_for_its_dependents,
                a_step_waiting_on_a_deleted_dependency_is_released,
                a_step_waiting_on_a_pruned_dependency_is_released,
            ],
            concurrency: [
                racing_claimers_claim_each_job_once,
                racing_unique_inserts_insert_once,
                racing_outcomes_and_rescue_leave_one_result,
                racing_claimers_never_exceed_a_queue_limit,
            ],
        );
    };
    (@areas $factory:ident; $($area:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $area {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::cases::$area::$case(super::$factory().await).await;
                    }
                )*
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// Every case written in `cases/` is in [`store_conformance!`]'s list (the list is kept
    /// by hand: a case missing from it would never run on any store).
    #[test]
    fn every_case_is_in_the_macro() {
        let macro_text = include_str!("lib.rs");
        let list = &macro_text[..macro_text.find("#[cfg(test)]").expect("this module")];
        let files = [
            include_str!("cases/audit.rs"),
            include_str!("cases/cancel_retry.rs"),
            include_str!("cases/claim.rs"),
            include_str!("cases/concurrency.rs"),
            include_str!("cases/insert.rs"),
            include_str!("cases/leader.rs"),
            include_str!("cases/lease.rs"),
            include_str!("cases/list.rs"),
            include_str!("cases/metered.rs"),
            include_str!("cases/outcome.rs"),
            include_str!("cases/presence.rs"),
            include_str!("cases/prune.rs"),
            include_str!("cases/queue.rs"),
            include_str!("cases/result.rs"),
            include_str!("cases/unique.rs"),
            include_str!("cases/schedule.rs"),
            include_str!("cases/tally.rs"),
            include_str!("cases/workflow.rs"),
        ];
        let mut cases = 0;
        for file in files {
            for line in file.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else {
                    continue;
                };
                let name = rest.split(['<', '(']).next().unwrap();
                cases += 1;
                assert!(
                    list.contains(&format!("{name},")) || list.contains(&format!("{name}\n")),
                    "conformance case {name} is not listed in store_conformance!"
                );
            }
        }
        assert!(cases > 50, "found only {cases} cases");
    }
}
