//! Workflows: jobs that wait for other jobs, built and enqueued together.
//!
//! A [`Workflow`] is a set of named steps, each a job and the steps it waits for. Enqueued
//! all or none ([`Client::enqueue_workflow`], or [`Client::enqueue_workflow_tx`] inside the
//! application's transaction), its steps run as their dependencies complete: a step whose
//! dependencies have not all completed is [`JobState::Pending`], and recording the last
//! one's completion makes it available, exactly once, in the same statement. A dependency
//! that is discarded or cancelled cancels the steps that wait for it (unless they depend on
//! it with [`Dep::ignore_failure`]); retrying it by hand revives them.
//!
//! A step reads what its dependencies returned, typed by their job type
//! ([`JobContext::output_of`]), and may add steps to its own workflow while it runs
//! ([`JobContext::add_steps`]): fan out over what it found, and fan in with a step that
//! depends on all of them. [`Workflow::on_complete`] and [`Workflow::on_success`] make a
//! batch with callbacks.

use std::collections::BTreeMap;

use chrono::Utc;
use errand_core::{
    DepOutput, JobId, JobState, NewStep, NewWorkflow, StepDep, Store, StoreError, WorkflowError,
    WorkflowRecord, WorkflowSummary,
};

use crate::client::{serialize, Serialized};
use crate::{Client, EnqueueError, Job, JobContext, JobOptions, Produces, TxStore};

/// A dependency of a step: the step it waits for, by name.
///
/// `"fetch"` converts into `Dep::on("fetch")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    step: String,
    ignore_failure: bool,
}

impl Dep {
    /// Waits for step `step` to complete; when it is discarded or cancelled instead, this
    /// step is cancelled too.
    pub fn on(step: impl Into<String>) -> Self {
        Dep {
            step: step.into(),
            ignore_failure: false,
        }
    }

    /// Waits for the step to end, whatever the end: this step runs even when that one is
    /// discarded or cancelled (read its state from [`JobContext::dependencies`]).
    pub fn ignore_failure(mut self) -> Self {
        self.ignore_failure = true;
        self
    }
}

impl From<&str> for Dep {
    fn from(step: &str) -> Self {
        Dep::on(step)
    }
}

impl From<String> for Dep {
    fn from(step: String) -> Self {
        Dep::on(step)
    }
}

impl From<&String> for Dep {
    fn from(step: &String) -> Self {
        Dep::on(step.clone())
    }
}

type StepItem = Result<(Serialized, JobOptions), EnqueueError>;

/// Steps to enqueue together, each waiting for the steps it names.
///
/// ```
/// # use errand::{Workflow, Dep, Job, JobContext, JobError, Outcome};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Fetch { url: String }
/// # impl Job for Fetch { const KIND: &'static str = "fetch"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) } }
/// # #[derive(Serialize, Deserialize)] struct Summarize;
/// # impl Job for Summarize { const KIND: &'static str = "summarize"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) } }
/// let wf = Workflow::new("report")
///     .add("fetch-a", Fetch { url: "https://a.example".into() })
///     .add("fetch-b", Fetch { url: "https://b.example".into() })
///     .add_after("summarize", Summarize, [Dep::on("fetch-a"), Dep::on("fetch-b").ignore_failure()]);
/// assert_eq!(wf.len(), 3);
/// ```
#[derive(Debug)]
pub struct Workflow {
    id: Option<String>,
    name: String,
    steps: Vec<(String, &'static str, StepItem, Vec<StepDep>)>,
    holds: Vec<StepDep>,
}

impl Workflow {
    /// A new, empty workflow called `name` (shown by `errand workflows`); its id is made
    /// from the name when it is enqueued.
    pub fn new(name: impl Into<String>) -> Self {
        Workflow {
            id: None,
            name: name.into(),
            steps: Vec::new(),
            holds: Vec::new(),
        }
    }

    /// Steps to add to an existing workflow (see [`JobContext::add_steps`], which fills the
    /// id in for a running step). They may depend on its steps by name.
    pub fn extend(id: impl Into<String>) -> Self {
        let id = id.into();
        Workflow {
            name: id.clone(),
            id: Some(id),
            steps: Vec::new(),
            holds: Vec::new(),
        }
    }

    /// Sets the id (unique among workflows) instead of one made from the name.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds step `step`, waiting for nothing.
    pub fn add<J: Job>(self, step: impl Into<String>, job: J) -> Self {
        self.add_with(step, job, JobOptions::new(), Vec::<Dep>::new())
    }

    /// Adds step `step`, waiting for `deps`.
    pub fn add_after<J: Job, D: Into<Dep>>(
        self,
        step: impl Into<String>,
        job: J,
        deps: impl IntoIterator<Item = D>,
    ) -> Self {
        self.add_with(step, job, JobOptions::new(), deps)
    }

    /// Adds step `step` with overrides (queue, priority, delay, attempts…), waiting for
    /// `deps`. A delay starts counting when the workflow is enqueued: a step released
    /// before its run time waits for it (`scheduled`).
    pub fn add_with<J: Job, D: Into<Dep>>(
        mut self,
        step: impl Into<String>,
        job: J,
        opts: JobOptions,
        deps: impl IntoIterator<Item = D>,
    ) -> Self {
        let deps = deps
            .into_iter()
            .map(|d| {
                let d = d.into();
                StepDep {
                    step: d.step,
                    ignore_failure: d.ignore_failure,
                }
            })
            .collect();
        self.steps.push((
            step.into(),
            J::KIND,
            serialize(job, usize::MAX).map(|s| (s, opts)),
            deps,
        ));
        self
    }

    /// Makes `step`, an existing step of the workflow that is still pending, wait for
    /// every step of this extension as well: a fan-in declared up front over a fan-out a
    /// running step discovers, or members added to a batch at run time before its
    /// callback. With [`Dep::ignore_failure`] it runs even when they fail — what an
    /// [`on_complete`](Self::on_complete) callback needs; without it, a new step that
    /// fails cancels it (as a dependency does).
    ///
    /// The insert is refused ([`WorkflowError::NotPending`]) when `step` has been released
    /// or has ended — add the steps before the last of its dependencies completes (from
    /// one of them, as it runs) — and ([`WorkflowError::HoldAfterWaiting`]) when a new step
    /// depends on an existing step that has not started, which could be downstream of
    /// `step`.
    ///
    /// ```
    /// # use errand::{Workflow, Dep, Job, JobContext, JobError, Outcome};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Fetch { url: String }
    /// # impl Job for Fetch { const KIND: &'static str = "fetch"; type State = ();
    /// #   async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) } }
    /// // In the step "discover", which "summarize" was declared to wait for:
    /// let pages = vec![Fetch { url: "https://a.example".into() }];
    /// let more = Workflow::extend("")
    ///     .add_each("fetch", pages, ["discover"])
    ///     .before("summarize");
    /// // cx.add_steps(more).await?;
    /// # assert_eq!(more.len(), 1);
    /// ```
    pub fn before(mut self, step: impl Into<Dep>) -> Self {
        let d = step.into();
        self.holds.push(StepDep {
            step: d.step,
            ignore_failure: d.ignore_failure,
        });
        self
    }

    /// Adds step `step` waiting for the step added last (a sequence: `add(…).then(…)
    /// .then(…)`); the first step added waits for nothing.
    pub fn then<J: Job>(self, step: impl Into<String>, job: J) -> Self {
        let last: Vec<Dep> = self
            .steps
            .last()
            .map(|s| Dep::on(&s.0))
            .into_iter()
            .collect();
        self.add_with(step, job, JobOptions::new(), last)
    }

    /// Adds one step per job, named `{prefix}-0`, `{prefix}-1`, …, each waiting for `deps`:
    /// a fan-out, or the members of a batch.
    pub fn add_each<J: Job, D: Into<Dep> + Clone>(
        mut self,
        prefix: &str,
        jobs: impl IntoIterator<Item = J>,
        deps: impl IntoIterator<Item = D>,
    ) -> Self {
        let deps: Vec<Dep> = deps.into_iter().map(Into::into).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            self = self.add_after(format!("{prefix}-{i}"), job, deps.iter().cloned());
        }
        self
    }

    /// Adds a callback step that runs once when every step added before it has ended,
    /// whatever the ends (a batch's `on_complete`): it waits for each with
    /// [`Dep::ignore_failure`], and reads the counts with [`JobContext::batch_counts`].
    pub fn on_complete<J: Job>(self, step: impl Into<String>, job: J) -> Self {
        let deps: Vec<Dep> = self
            .steps
            .iter()
            .map(|s| Dep::on(&s.0).ignore_failure())
            .collect();
        self.add_with(step, job, JobOptions::new(), deps)
    }

    /// Adds a callback step that runs once when every step added before it has completed
    /// (a batch's `on_success`); if any is discarded or cancelled, it is cancelled.
    pub fn on_success<J: Job>(self, step: impl Into<String>, job: J) -> Self {
        let deps: Vec<Dep> = self.steps.iter().map(|s| Dep::on(&s.0)).collect();
        self.add_with(step, job, JobOptions::new(), deps)
    }

    /// How many steps it has.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps as the store takes them, checked (names, cycles, payloads) before any
    /// write.
    pub(crate) fn resolve(
        self,
        max_payload: usize,
        now: chrono::DateTime<Utc>,
    ) -> Result<NewWorkflow, EnqueueError> {
        let id = match self.id {
            Some(id) => id,
            None => new_id(&self.name),
        };
        let mut steps = Vec::with_capacity(self.steps.len());
        for (step, kind, item, deps) in self.steps {
            let (job, opts) = item?;
            let job = job.resolve(opts, now)?;
            if job.args.len() > max_payload {
                return Err(EnqueueError::PayloadTooLarge {
                    kind,
                    size: job.args.len(),
                    limit: max_payload,
                });
            }
            if job.unique_key.is_some() {
                return Err(WorkflowError::Unique { step }.into());
            }
            steps.push(NewStep { step, job, deps });
        }
        let wf = NewWorkflow {
            id,
            name: self.name,
            steps,
            holds: self.holds,
        };
        errand_core::check_workflow(&wf)?;
        Ok(wf)
    }
}

/// An id made from `name`: the name (cut to 200 bytes), the time and a random part.
fn new_id(name: &str) -> String {
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem: String = name[..cut].chars().filter(|c| !c.is_control()).collect();
    let stem = if stem.is_empty() { "workflow" } else { &stem };
    format!(
        "{stem}-{:x}-{:08x}",
        Utc::now().timestamp_millis(),
        rand::random::<u32>()
    )
}

/// A workflow as enqueued: its id and each step's job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedWorkflow {
    /// The workflow's id (for [`Client::workflow`], `errand workflows show`).
    pub id: String,
    /// Step name → job id.
    pub steps: BTreeMap<String, JobId>,
}

impl EnqueuedWorkflow {
    /// The job id of step `step`.
    pub fn job(&self, step: &str) -> Option<JobId> {
        self.steps.get(step).copied()
    }
}

/// Why a step could not read a dependency's output ([`JobContext::output_of`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The running job is not a workflow step.
    #[error("job {0} is not a workflow step, so it has no dependencies to read")]
    NotAStep(JobId),
    /// The step named is not one of this step's dependencies.
    #[error("step '{step}' is not a dependency of this step (its dependencies: {known}): name a step it depends on")]
    NotADependency {
        /// The name asked for.
        step: String,
        /// The names it depends on.
        known: String,
    },
    /// The dependency is of another job type.
    #[error("dependency '{step}' is a job of kind {found}, not {expected}: ask for the output of the job type that step runs")]
    Kind {
        /// The dependency.
        step: String,
        /// The kind asked for.
        expected: &'static str,
        /// Its kind.
        found: String,
    },
    /// The dependency did not complete (this step depends on it with `ignore_failure`).
    #[error("dependency '{step}' ended {state} and has no output")]
    NotCompleted {
        /// The dependency.
        step: String,
        /// Its state.
        state: JobState,
    },
    /// The dependency completed without an output.
    #[error("dependency '{step}' completed without an output: it should return Outcome::output")]
    Missing {
        /// The dependency.
        step: String,
    },
    /// The output does not read as the type asked for.
    #[error("the output of dependency '{step}' does not read as {expected}: {message}")]
    Decode {
        /// The dependency.
        step: String,
        /// The type asked for.
        expected: &'static str,
        /// What serde said.
        message: String,
    },
    /// The job runs without a store (under `errand::testing`).
    #[error("this job runs without a store (errand::testing): workflow outputs need a worker")]
    NoStore,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a batch's members ended, for an `on_complete` callback ([`JobContext::batch_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Members that completed.
    pub completed: u64,
    /// Members discarded.
    pub discarded: u64,
    /// Members cancelled.
    pub cancelled: u64,
    /// Members not final (none, for a callback released by their ends).
    pub other: u64,
}

impl BatchCounts {
    /// How many members it counted.
    pub fn total(&self) -> u64 {
        self.completed + self.discarded + self.cancelled + self.other
    }

    /// Whether every member completed.
    pub fn all_succeeded(&self) -> bool {
        self.discarded == 0 && self.cancelled == 0 && self.other == 0
    }
}

impl<S> JobContext<S> {
    fn store(&self) -> Result<std::sync::Arc<dyn Store>, OutputError> {
        self.shared_store().ok_or(OutputError::NoStore)
    }

    /// The workflow and step name of this job, when it is a workflow step.
    pub async fn step(&self) -> Result<Option<(String, String)>, OutputError> {
        Ok(self.store()?.job_step(self.job_id()).await?)
    }

    /// This step's dependencies: name, job id, kind, state and raw output of each.
    pub async fn dependencies(&self) -> Result<Vec<DepOutput>, OutputError> {
        Ok(self.store()?.dependency_outputs(self.job_id()).await?)
    }

    /// The output of dependency `step`, which runs job type `J`, typed. Fails with a
    /// clear error when `step` is not a dependency of this step, runs another job type,
    /// did not complete, or returned something that does not read as `J::Output`.
    pub async fn output_of<J: Produces>(&self, step: &str) -> Result<J::Output, OutputError> {
        let deps = self.dependencies().await?;
        let Some(d) = deps.iter().find(|d| d.step == step) else {
            if deps.is_empty() && self.step().await?.is_none() {
                return Err(OutputError::NotAStep(self.job_id()));
            }
            let known: Vec<&str> = deps.iter().map(|d| d.step.as_str()).collect();
            return Err(OutputError::NotADependency {
                step: step.to_owned(),
                known: known.join(", "),
            });
        };
        decode::<J>(d)
    }

    /// The outputs of every dependency that runs job type `J` and completed, by step
    /// name (a fan-in over a fan-out). Dependencies of other types, and those of type `J`
    /// that did not complete (on `ignore_failure` edges), are left out.
    pub async fn outputs_of<J: Produces>(&self) -> Result<Vec<(String, J::Output)>, OutputError> {
        let deps = self.dependencies().await?;
        deps.iter()
            .filter(|d| d.kind == J::KIND && d.state == JobState::Completed)
            .map(|d| Ok((d.step.clone(), decode::<J>(d)?)))
            .collect()
    }

    /// How this step's dependencies ended: for a batch's `on_complete` callback.
    pub async fn batch_counts(&self) -> Result<BatchCounts, OutputError> {
        let mut c = BatchCounts::default();
        for d in self.dependencies().await? {
            match d.state {
                JobState::Completed => c.completed += 1,
                JobState::Discarded => c.discarded += 1,
                JobState::Cancelled => c.cancelled += 1,
                _ => c.other += 1,
            }
        }
        Ok(c)
    }

    /// Adds steps to this step's own workflow, all or none: a fan-out over what this step
    /// found, and a step that waits for all of them. The steps may depend on any step of
    /// the workflow by name, this one included (they then wait for it to complete). Build
    /// them with [`Workflow::extend`]`("")` (the id is this workflow's).
    pub async fn add_steps(&self, steps: Workflow) -> Result<EnqueuedWorkflow, EnqueueError> {
        let store = self.shared_store().ok_or(WorkflowError::NoStore)?;
        let Some((id, _)) = store.job_step(self.job_id()).await? else {
            return Err(WorkflowError::NotAStep(self.job_id()).into());
        };
        let now = store.now(Utc::now()).await;
        let mut wf = steps.id(id).resolve(usize::MAX, now)?;
        wf.name.clear();
        insert(&*store, wf, now).await
    }
}

fn decode<J: Produces>(d: &DepOutput) -> Result<J::Output, OutputError> {
    if d.kind != J::KIND {
        return Err(OutputError::Kind {
            step: d.step.clone(),
            expected: J::KIND,
            found: d.kind.clone(),
        });
    }
    if d.state != JobState::Completed {
        return Err(OutputError::NotCompleted {
            step: d.step.clone(),
            state: d.state,
        });
    }
    let Some(raw) = &d.result else {
        return Err(OutputError::Missing {
            step: d.step.clone(),
        });
    };
    serde_json::from_str(raw).map_err(|e| OutputError::Decode {
        step: d.step.clone(),
        expected: std::any::type_name::<J::Output>(),
        message: e.to_string(),
    })
}

async fn insert(
    store: &dyn Store,
    wf: NewWorkflow,
    now: chrono::DateTime<Utc>,
) -> Result<EnqueuedWorkflow, EnqueueError> {
    let names: Vec<String> = wf.steps.iter().map(|s| s.step.clone()).collect();
    let id = wf.id.clone();
    let ids = store.insert_workflow(&wf, now).await.map_err(from_store)?;
    Ok(EnqueuedWorkflow {
        id,
        steps: names.into_iter().zip(ids).collect(),
    })
}

/// A store's refusal of a workflow is the caller's mistake, as the client's own checks are.
pub(crate) fn from_store(e: StoreError) -> EnqueueError {
    match e {
        StoreError::Workflow(w) => EnqueueError::Workflow(w),
        e => EnqueueError::Store(e),
    }
}

impl<S: Store> Client<S> {
    /// Enqueues a workflow, all or none: each step runs once the steps it depends on have
    /// completed. Checks every step (names, cycles, payloads) before writing any.
    pub async fn enqueue_workflow(&self, wf: Workflow) -> Result<EnqueuedWorkflow, EnqueueError> {
        let now = self.now().await;
        let wf = wf.resolve(self.payload_limit(), now)?;
        insert(self.store(), wf, now).await
    }

    /// A workflow and each of its steps (state, dependencies, job), or `None`.
    pub async fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.store().workflow(id).await
    }

    /// Workflows newest first with their counts per state: up to `limit` (0: 50), older
    /// than the workflow `before` when given.
    pub async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<WorkflowSummary>, StoreError> {
        self.store().workflows(limit, before).await
    }

    /// Waits until every step of workflow `id` has ended, at most `timeout`, and returns
    /// the workflow as it then is ([`WorkflowRecord::is_finished`] says whether it ended);
    /// `None` when no such workflow exists. Woken at once by ends in this process, it looks
    /// again every 50 ms at first, then less often up to every 500 ms, for ends elsewhere.
    pub async fn wait_workflow(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        let store = self.store();
        let mut ended = store.signals().ended();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut poll = std::time::Duration::from_millis(50);
        loop {
            let Some(rec) = store.workflow(id).await? else {
                return Ok(None);
            };
            let now = tokio::time::Instant::now();
            if rec.is_finished() || now >= deadline {
                return Ok(Some(rec));
            }
            let nap = tokio::time::sleep(poll.min(deadline - now));
            tokio::pin!(nap);
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        nap.await;
                    }
                }
                () = &mut nap => poll = (poll * 2).min(std::time::Duration::from_millis(500)),
            }
        }
    }

    /// Cancels every step of workflow `id` that has not ended (running ones are told to
    /// stop, as [`Client::cancel`] does). Returns how many.
    pub async fn cancel_workflow(&self, id: &str) -> Result<u64, StoreError> {
        let now = self.now().await;
        self.store().cancel_workflow(id, now).await
    }
}

impl<S: TxStore> Client<S> {
    /// [`enqueue_workflow`](Self::enqueue_workflow) in the caller's transaction on the
    /// store's database (pass `&mut *tx`): rolled back, no step exists; committed, the steps
    /// run as their dependencies complete.
    pub async fn enqueue_workflow_tx(
        &self,
        conn: &mut S::Connection,
        wf: Workflow,
    ) -> Result<EnqueuedWorkflow, EnqueueError> {
        let now = self.store().tx_now(conn).await;
        let wf = wf.resolve(self.payload_limit(), now)?;
        let names: Vec<String> = wf.steps.iter().map(|s| s.step.clone()).collect();
        let ids = self
            .store()
            .tx_insert_workflow(conn, &wf, now)
            .await
            .map_err(from_store)?;
        Ok(EnqueuedWorkflow {
            id: wf.id,
            steps: names.into_iter().zip(ids).collect(),
        })
    }
}
