//! The memory store's workflows: steps, edges, and settling dependents as their parents'
//! states change — the same rules the SQL stores' triggers keep (errand-core `workflow.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use errand_core::{
    cancelled_by_message, check_workflow, plan_workflow, DepOutput, ErrorRecord, ExistingStep,
    JobId, JobState, NewWorkflow, QueueSignals, StepEdge, StoreError, WorkflowRecord, WorkflowStep,
    WorkflowSummary,
};

use super::Inner;

/// A workflow step's place in its workflow.
#[derive(Debug, Clone)]
pub(super) struct StepLink {
    workflow: String,
    step: String,
    /// Parents, in the order the step named them.
    parents: Vec<JobId>,
    waiting_on: i32,
    cancelled_by: Option<JobId>,
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    ignore_failure: bool,
    settled: bool,
}

#[derive(Debug, Clone)]
struct MemWorkflow {
    name: String,
    created_at: DateTime<Utc>,
    seq: u64,
    steps: BTreeMap<String, JobId>,
}

/// Every workflow of the store.
#[derive(Debug, Default)]
pub(super) struct Workflows {
    by_id: HashMap<String, MemWorkflow>,
    next_seq: u64,
    links: HashMap<JobId, StepLink>,
    /// parent → child → edge.
    edges: HashMap<JobId, BTreeMap<JobId, Edge>>,
    /// State changes of jobs with dependents still to settle.
    queue: VecDeque<(JobId, JobState, JobState)>,
    settling: bool,
}

/// Wake-ups owed once the lock is released.
#[derive(Debug, Default)]
pub(super) struct Wake {
    queues: Vec<String>,
    scheduled: bool,
    ended: bool,
}

impl Wake {
    pub(super) fn fire(self, signals: &QueueSignals) {
        for q in &self.queues {
            signals.notify(q);
        }
        if self.scheduled {
            signals.notify_scheduled();
        }
        if self.ended {
            signals.notify_ended();
        }
    }

    fn state(&mut self, queue: &str, state: JobState) {
        match state {
            JobState::Available if !self.queues.iter().any(|q| q == queue) => {
                self.queues.push(queue.to_owned())
            }
            JobState::Scheduled => self.scheduled = true,
            s if s.is_final() => self.ended = true,
            _ => {}
        }
    }
}

fn failed(s: JobState) -> bool {
    matches!(s, JobState::Discarded | JobState::Cancelled)
}

impl Inner {
    /// Called by `set_state` for every state change: settles the dependents of a job that
    /// has some, following each change they make in turn (a worklist, not recursion, so a
    /// chain of thousands of steps cancels without a deep stack).
    pub(super) fn state_changed(&mut self, id: JobId, old: JobState, new: JobState) {
        if old == new || !self.wf.edges.contains_key(&id) {
            return;
        }
        self.wf.queue.push_back((id, old, new));
        if self.wf.settling {
            return;
        }
        self.wf.settling = true;
        while let Some((id, old, new)) = self.wf.queue.pop_front() {
            if !old.is_final() && new.is_final() {
                self.settle_children(id, new);
            } else if failed(old) && !new.is_final() {
                self.revive_children(id);
            }
        }
        self.wf.settling = false;
    }

    fn settle_children(&mut self, parent: JobId, state: JobState) {
        let Some(row) = self.jobs.get(&parent) else {
            return;
        };
        let at = row.finalized_at.unwrap_or(row.run_at);
        let parent_step = self
            .wf
            .links
            .get(&parent)
            .map(|l| l.step.clone())
            .unwrap_or_default();
        let children: Vec<(JobId, Edge)> = self
            .wf
            .edges
            .get(&parent)
            .map(|m| m.iter().map(|(c, e)| (*c, *e)).collect())
            .unwrap_or_default();
        for (child, edge) in children {
            if edge.settled {
                continue;
            }
            if state == JobState::Completed || edge.ignore_failure {
                if let Some(e) = self
                    .wf
                    .edges
                    .get_mut(&parent)
                    .and_then(|m| m.get_mut(&child))
                {
                    e.settled = true;
                }
                let Some(link) = self.wf.links.get_mut(&child) else {
                    continue;
                };
                link.waiting_on -= 1;
                self.release_if_ready(child, at);
            } else if self.jobs.get(&child).map(|c| c.state) == Some(JobState::Pending) {
                if let Some(link) = self.wf.links.get_mut(&child) {
                    link.cancelled_by = Some(parent);
                }
                let message = cancelled_by_message(parent, &parent_step, state);
                let queue = self.jobs[&child].queue.clone();
                self.update(child, JobState::Cancelled, |r| {
                    r.finalized_at = Some(at);
                    r.errors.push(ErrorRecord::new(r.attempt, at, message));
                });
                self.wake.state(&queue, JobState::Cancelled);
            }
        }
    }

    fn revive_children(&mut self, parent: JobId) {
        let children: Vec<JobId> = self
            .wf
            .edges
            .get(&parent)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for child in children {
            let cancelled_by_parent = self
                .wf
                .links
                .get(&child)
                .is_some_and(|l| l.cancelled_by == Some(parent));
            if !cancelled_by_parent
                || self.jobs.get(&child).map(|c| c.state) != Some(JobState::Cancelled)
            {
                continue;
            }
            let other = self.failed_parent(child, parent);
            if let Some(link) = self.wf.links.get_mut(&child) {
                link.cancelled_by = other;
            }
            if other.is_none() {
                self.update(child, JobState::Pending, |r| r.finalized_at = None);
            }
        }
    }

    /// Another parent of `child` (not `except`) that failed on an edge without
    /// `ignore_failure`.
    fn failed_parent(&self, child: JobId, except: JobId) -> Option<JobId> {
        let link = self.wf.links.get(&child)?;
        link.parents.iter().copied().find(|p| {
            *p != except
                && self.jobs.get(p).is_some_and(|r| failed(r.state))
                && self
                    .wf
                    .edges
                    .get(p)
                    .and_then(|m| m.get(&child))
                    .is_some_and(|e| !e.ignore_failure && !e.settled)
        })
    }

    /// Whether job `id` is a step still waiting on dependencies (a hand retry sends it
    /// back to `pending`).
    pub(super) fn waits(&self, id: JobId) -> bool {
        self.wf.links.get(&id).is_some_and(|l| l.waiting_on > 0)
    }

    /// Releases `child` if it is pending with nothing left to wait for: available from
    /// `at` on (or scheduled, due later), its queue woken.
    fn release_if_ready(&mut self, child: JobId, at: DateTime<Utc>) {
        let waits = self.wf.links.get(&child).is_some_and(|l| l.waiting_on > 0);
        let Some(c) = self.jobs.get(&child) else {
            return;
        };
        if waits || c.state != JobState::Pending {
            return;
        }
        let to = if c.run_at > at {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        let queue = c.queue.clone();
        // Released, it queues from now (as on the SQL stores).
        self.update(child, to, |r| {
            if to == JobState::Available {
                r.run_at = r.run_at.max(at);
            }
        });
        self.wake.state(&queue, to);
    }

    /// Removes step `id` (deleted, or pruned once final, at `at`) from its workflow: its
    /// edges go, each unsettled one out of it no longer counted by its dependent (one its
    /// end cancelled runs without it if retried by hand), and a dependent left waiting for
    /// nothing is released (one retried by hand while a failed dependency held it would
    /// otherwise wait for a job that no longer exists), as the SQL stores do.
    pub(super) fn forget_step(&mut self, id: JobId, at: DateTime<Utc>) {
        if let Some(children) = self.wf.edges.remove(&id) {
            for (child, edge) in children {
                if !edge.settled {
                    if let Some(link) = self.wf.links.get_mut(&child) {
                        link.waiting_on -= 1;
                        link.parents.retain(|p| *p != id);
                    }
                    self.release_if_ready(child, at);
                }
            }
        }
        if let Some(link) = self.wf.links.remove(&id) {
            for p in &link.parents {
                if let Some(m) = self.wf.edges.get_mut(p) {
                    m.remove(&id);
                }
            }
            let emptied = self.wf.by_id.get_mut(&link.workflow).is_some_and(|w| {
                w.steps.remove(&link.step);
                w.steps.is_empty()
            });
            if emptied {
                self.wf.by_id.remove(&link.workflow);
            }
        }
    }

    pub(super) fn insert_workflow(
        &mut self,
        wf: &NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        let external = check_workflow(wf)?;
        if !external.is_empty() && !self.wf.by_id.contains_key(&wf.id) {
            return Err(errand_core::WorkflowError::NoWorkflow(wf.id.clone()).into());
        }
        let existing: Vec<ExistingStep> = match self.wf.by_id.get(&wf.id) {
            Some(w) => w
                .steps
                .iter()
                .filter(|(name, _)| {
                    external.contains(name) || wf.steps.iter().any(|s| &s.step == *name)
                })
                .filter_map(|(name, id)| {
                    self.jobs.get(id).map(|r| ExistingStep {
                        step: name.clone(),
                        id: *id,
                        state: r.state,
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let ids: Vec<JobId> = (1..=wf.steps.len() as JobId)
            .map(|i| self.next_id + i)
            .collect();
        let plan = plan_workflow(wf, &ids, &existing, now)?;
        self.next_id += wf.steps.len() as JobId;
        // Settling waits until every row is in: a step born cancelled must not touch the
        // rows of its children before they exist (the plan already settled what it could).
        self.wf.settling = true;
        let seq = self.wf.next_seq;
        self.wf.next_seq += 1;
        let w = self
            .wf
            .by_id
            .entry(wf.id.clone())
            .or_insert_with(|| MemWorkflow {
                name: wf.name.clone(),
                created_at: now,
                seq,
                steps: BTreeMap::new(),
            });
        for p in &plan.steps {
            w.steps.insert(wf.steps[p.index].step.clone(), p.id);
        }
        for e in &plan.edges {
            self.wf.edges.entry(e.parent).or_default().insert(
                e.child,
                Edge {
                    ignore_failure: e.ignore_failure,
                    settled: e.settled,
                },
            );
        }
        for p in &plan.steps {
            let s = &wf.steps[p.index];
            let parents = plan
                .edges
                .iter()
                .filter(|e| e.child == p.id)
                .map(|e| e.parent)
                .collect();
            self.wf.links.insert(
                p.id,
                StepLink {
                    workflow: wf.id.clone(),
                    step: s.step.clone(),
                    parents,
                    waiting_on: p.waiting_on,
                    cancelled_by: p.cancelled_by,
                },
            );
            let mut row = s.job.clone().into_row(p.id, now);
            row.state = JobState::Scheduled;
            if let Some(e) = &p.error {
                row.errors.push(ErrorRecord::new(0, now, e.clone()));
                row.finalized_at = Some(now);
            }
            let key = super::avail_key(&row);
            let queue = row.queue.clone();
            self.jobs.insert(p.id, row);
            self.set_state(p.id, key, p.state);
            self.wake.state(&queue, p.state);
        }
        self.wf.queue.clear();
        self.wf.settling = false;
        for h in &plan.holds {
            let parents = plan.edges.iter().filter(|e| e.child == h.id);
            if let Some(link) = self.wf.links.get_mut(&h.id) {
                link.parents.extend(parents.map(|e| e.parent));
                link.waiting_on += h.more;
            }
            if let Some((parent, message)) = &h.cancel {
                if let Some(link) = self.wf.links.get_mut(&h.id) {
                    link.cancelled_by = Some(*parent);
                }
                let queue = self.jobs[&h.id].queue.clone();
                // Cancelled as any failure cancels: its own dependents follow it.
                self.update(h.id, JobState::Cancelled, |r| {
                    r.finalized_at = Some(now);
                    r.errors
                        .push(ErrorRecord::new(r.attempt, now, message.clone()));
                });
                self.wake.state(&queue, JobState::Cancelled);
            }
        }
        Ok(ids)
    }

    pub(super) fn workflow(&self, id: &str) -> Option<WorkflowRecord> {
        let w = self.wf.by_id.get(id)?;
        let mut steps: Vec<WorkflowStep> = w
            .steps
            .iter()
            .filter_map(|(name, jid)| {
                let job = self.jobs.get(jid)?.clone();
                let link = self.wf.links.get(jid)?;
                let deps = link
                    .parents
                    .iter()
                    .filter_map(|p| {
                        let e = self.wf.edges.get(p)?.get(jid)?;
                        Some(StepEdge {
                            parent: *p,
                            step: self.wf.links.get(p)?.step.clone(),
                            ignore_failure: e.ignore_failure,
                            settled: e.settled,
                        })
                    })
                    .collect();
                Some(WorkflowStep {
                    step: name.clone(),
                    job,
                    deps,
                    waiting_on: link.waiting_on,
                    cancelled_by: link.cancelled_by,
                })
            })
            .collect();
        steps.sort_by_key(|s| s.job.id);
        Some(WorkflowRecord {
            id: id.to_owned(),
            name: w.name.clone(),
            created_at: w.created_at,
            steps,
        })
    }

    pub(super) fn workflows(&self, limit: u32, before: Option<&str>) -> Vec<WorkflowSummary> {
        let below = before
            .and_then(|b| self.wf.by_id.get(b))
            .map_or(u64::MAX, |w| w.seq);
        let mut all: Vec<(&String, &MemWorkflow)> = self
            .wf
            .by_id
            .iter()
            .filter(|(_, w)| w.seq < below)
            .collect();
        all.sort_by_key(|(_, w)| std::cmp::Reverse(w.seq));
        let limit = if limit == 0 { 50 } else { limit as usize };
        all.into_iter()
            .take(limit)
            .map(|(id, w)| {
                let mut counts: BTreeMap<JobState, u64> = BTreeMap::new();
                for jid in w.steps.values() {
                    if let Some(r) = self.jobs.get(jid) {
                        *counts.entry(r.state).or_default() += 1;
                    }
                }
                WorkflowSummary {
                    id: id.clone(),
                    name: w.name.clone(),
                    created_at: w.created_at,
                    counts: counts.into_iter().collect(),
                }
            })
            .collect()
    }

    pub(super) fn cancel_workflow(&mut self, id: &str, now: DateTime<Utc>) -> u64 {
        let Some(w) = self.wf.by_id.get(id) else {
            return 0;
        };
        let ids: Vec<JobId> = w.steps.values().copied().collect();
        // Every step ends here, by the operator's hand: none is cancelled "by" another
        // (so a retry of one revives nothing), as on the SQL stores.
        self.wf.settling = true;
        let mut n = 0;
        for jid in ids {
            if self.jobs.get(&jid).is_some_and(|r| !r.state.is_final()) {
                self.update(jid, JobState::Cancelled, |r| {
                    r.finalized_at = Some(now);
                    r.lease_expires_at = None;
                });
                self.wake.ended = true;
                n += 1;
            }
        }
        self.wf.queue.clear();
        self.wf.settling = false;
        n
    }

    pub(super) fn job_step(&self, id: JobId) -> Option<(String, String)> {
        self.wf
            .links
            .get(&id)
            .map(|l| (l.workflow.clone(), l.step.clone()))
    }

    pub(super) fn dependency_outputs(&self, id: JobId) -> Vec<DepOutput> {
        let Some(link) = self.wf.links.get(&id) else {
            return Vec::new();
        };
        link.parents
            .iter()
            .filter_map(|p| {
                let r = self.jobs.get(p)?;
                Some(DepOutput {
                    step: self.wf.links.get(p)?.step.clone(),
                    id: *p,
                    kind: r.kind.clone(),
                    state: r.state,
                    result: r.result.clone(),
                })
            })
            .collect()
    }
}
