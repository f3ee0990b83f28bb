//! Operator verbs over many runs: [`Engine::bulk`] applies one [`BulkAction`] to every run a
//! [`RunQuery`] matches, page by page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::Engine;
use crate::error::Error;
use crate::store::RunQuery;

/// How many runs are listed per page.
const PAGE: usize = 500;
/// How many runs of a page are acted on at once (the SQLite store commits them as a group).
const DEFAULT_CONCURRENCY: usize = 64;
/// How many matched ids a report lists.
const FIRST_IDS: usize = 20;
/// How many per-run refusals and failures a report keeps (the counts are exact).
const KEPT_PROBLEMS: usize = 100;

/// What [`Engine::bulk`] does to each matched run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkAction {
    /// [`Engine::pause`] with this reason.
    Pause {
        /// Why.
        reason: String,
    },
    /// [`Engine::resume`].
    Resume,
    /// [`Engine::terminate`] with this reason.
    Terminate {
        /// Why.
        reason: String,
    },
    /// [`Engine::cancel`] with this reason (compensations run).
    Cancel {
        /// Why.
        reason: String,
    },
    /// [`Engine::retry`]: a failed, parked or compensation-failed run is driven again now.
    Retry,
}

impl BulkAction {
    /// The verb's name (`"pause"`, `"resume"`, `"terminate"`, `"cancel"`, `"retry"`).
    pub fn verb(&self) -> &'static str {
        match self {
            BulkAction::Pause { .. } => "pause",
            BulkAction::Resume => "resume",
            BulkAction::Terminate { .. } => "terminate",
            BulkAction::Cancel { .. } => "cancel",
            BulkAction::Retry => "retry",
        }
    }
}

/// Where a bulk action stands, reported to [`BulkOptions::progress`] after each page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkProgress {
    /// Runs matched so far.
    pub matched: u64,
    /// Runs the action was applied to so far.
    pub applied: u64,
    /// Runs it did not apply to (they changed state meanwhile: finished, not paused...).
    pub skipped: u64,
    /// Runs it failed on (the store failed).
    pub failed: u64,
}

/// A progress callback (see [`BulkOptions::progress`]).
type ProgressFn = Arc<dyn Fn(BulkProgress) + Send + Sync>;

/// How [`Engine::bulk`] runs.
///
/// ```
/// use orchestrator::BulkOptions;
///
/// let options = BulkOptions::new("alice").dry_run(true).limit(1_000);
/// assert!(options.is_dry_run());
/// ```
#[derive(Clone)]
pub struct BulkOptions {
    actor: String,
    dry_run: bool,
    limit: Option<u64>,
    concurrency: usize,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BulkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkOptions")
            .field("actor", &self.actor)
            .field("dry_run", &self.dry_run)
            .field("limit", &self.limit)
            .field("concurrency", &self.concurrency)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl BulkOptions {
    /// Acts as `actor` (recorded in each run's audit event).
    pub fn new(actor: impl Into<String>) -> Self {
        BulkOptions {
            actor: actor.into(),
            dry_run: false,
            limit: None,
            concurrency: DEFAULT_CONCURRENCY,
            progress: None,
        }
    }

    /// Only count the matching runs and list the first ids; change nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Act on at most `limit` matching runs (the first ones in workflow id order).
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// How many runs are acted on at once (default 64, at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Called with the running totals after each page of runs.
    pub fn progress(mut self, progress: impl Fn(BulkProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}

/// One run a bulk action did not apply to, or failed on.
#[derive(Debug)]
#[non_exhaustive]
pub struct BulkProblem {
    /// The run.
    pub workflow_id: String,
    /// Why: [`Error::NotApplicable`], [`Error::RunFinished`], [`Error::NotFound`] for a skipped run
    /// (it changed meanwhile), anything else for a failure.
    pub error: Error,
}

/// What [`Engine::bulk`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BulkReport {
    /// Runs the query matched (up to the limit).
    pub matched: u64,
    /// Runs the action was applied to (0 for a dry run). A pause of a run paused already counts as
    /// applied (it is a no-op).
    pub applied: u64,
    /// Runs it did not apply to: they changed state between the listing and the action.
    pub skipped: u64,
    /// Runs it failed on.
    pub failed: u64,
    /// The first matched ids (up to 20), in workflow id order.
    pub first_ids: Vec<String>,
    /// The first skipped and failed runs with their errors (up to 100; the counts are exact).
    pub problems: Vec<BulkProblem>,
    /// Whether nothing was changed (a dry run).
    pub dry_run: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl BulkReport {
    fn progress(&self) -> BulkProgress {
        BulkProgress {
            matched: self.matched,
            applied: self.applied,
            skipped: self.skipped,
            failed: self.failed,
        }
    }

    fn record(&mut self, workflow_id: String, outcome: Result<(), Error>) {
        let skipped = match &outcome {
            Ok(()) => {
                self.applied += 1;
                return;
            }
            Err(
                Error::NotApplicable { .. } | Error::RunFinished { .. } | Error::NotFound { .. },
            ) => true,
            Err(_) => false,
        };
        if skipped {
            self.skipped += 1;
        } else {
            self.failed += 1;
        }
        if let Err(error) = outcome
            && self.problems.len() < KEPT_PROBLEMS
        {
            self.problems.push(BulkProblem { workflow_id, error });
        }
    }
}

impl Engine {
    /// Applies `action` to every run `query` matches (its filters and its `after` cursor; its page
    /// size is not used), in workflow id order, page by page: what [`Engine::pause`],
    /// [`Engine::resume`], [`Engine::terminate`], [`Engine::cancel`] or [`Engine::retry`] does for
    /// one run, with the
    /// same audit events (by [`BulkOptions::new`]'s actor). A run that changed state between the
    /// listing and the action (it finished, it was resumed already) is counted as skipped with its
    /// error, not fatal; a run that starts matching the query meanwhile may be left out. With
    /// [`BulkOptions::dry_run`] nothing changes: the report has the count and the first ids.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when listing the runs fails (the report of what was done before is lost
    /// then: the verbs are idempotent, so running the bulk action again finishes the job).
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    /// use orchestrator::store::RunQuery;
    /// use orchestrator::{BulkAction, BulkOptions};
    ///
    /// #[workflow]
    /// async fn report(ctx: WorkflowContext, day: u32) -> Result<u32, WorkflowError> {
    ///     ctx.sleep(Duration::from_millis(200)).await?;
    ///     Ok(day)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(report).start().await?;
    /// for day in 1..=3 {
    ///     engine.start(report, format!("report-{day}"), day).await?;
    /// }
    /// let reports = RunQuery::new().id_prefix("report-");
    /// let pause = BulkAction::Pause { reason: "backfill".into() };
    /// let dry = engine.bulk(&reports, pause.clone(), BulkOptions::new("ops").dry_run(true)).await?;
    /// assert_eq!((dry.matched, dry.applied), (3, 0));
    /// let done = engine.bulk(&reports, pause, BulkOptions::new("ops")).await?;
    /// assert_eq!(done.applied, 3);
    /// engine.bulk(&reports, BulkAction::Resume, BulkOptions::new("ops")).await?;
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bulk(
        &self,
        query: &RunQuery,
        action: BulkAction,
        options: BulkOptions,
    ) -> Result<BulkReport, Error> {
        let started = Instant::now();
        let mut report = BulkReport {
            dry_run: options.dry_run,
            ..BulkReport::default()
        };
        let mut page_query = query.clone().limit(PAGE);
        let limit = options.limit.unwrap_or(u64::MAX);
        loop {
            let page = self.list_runs(&page_query).await?;
            let room = usize::try_from(limit.saturating_sub(report.matched)).unwrap_or(usize::MAX);
            let ids: Vec<String> = page
                .runs
                .into_iter()
                .take(room)
                .map(|run| run.workflow_id)
                .collect();
            report.matched += ids.len() as u64;
            for id in ids
                .iter()
                .take(FIRST_IDS.saturating_sub(report.first_ids.len()))
            {
                report.first_ids.push(id.clone());
            }
            if !options.dry_run {
                let outcomes: Vec<(String, Result<(), Error>)> = futures::stream::iter(ids)
                    .map(|id| {
                        let action = &action;
                        let actor = options.actor.as_str();
                        async move {
                            let outcome = self.apply(&id, action, actor).await;
                            (id, outcome)
                        }
                    })
                    .buffer_unordered(options.concurrency)
                    .collect()
                    .await;
                for (id, outcome) in outcomes {
                    report.record(id, outcome);
                }
            }
            if let Some(progress) = &options.progress {
                progress(report.progress());
            }
            match page.next {
                Some(next) if report.matched < limit => page_query = page_query.after(next),
                _ => break,
            }
        }
        report.elapsed = started.elapsed();
        tracing::info!(
            verb = action.verb(),
            actor = %options.actor,
            matched = report.matched,
            applied = report.applied,
            skipped = report.skipped,
            failed = report.failed,
            dry_run = report.dry_run,
            "bulk action done"
        );
        Ok(report)
    }

    async fn apply(&self, id: &str, action: &BulkAction, actor: &str) -> Result<(), Error> {
        match action {
            BulkAction::Pause { reason } => self.pause(id, actor, reason).await,
            BulkAction::Resume => self.resume(id, actor).await,
            BulkAction::Terminate { reason } => self.terminate(id, actor, reason).await,
            BulkAction::Cancel { reason } => self.cancel(id, reason).await,
            BulkAction::Retry => self.retry(id, actor).await,
        }
    }
}
