//! [`RunDescription`]: everything known about one run, read from the store alone.

use serde::{Deserialize, Serialize};

use super::blocked_on::{BlockedOn, open_steps};
use super::catalog::{Catalog, PayloadType};
use super::render::{Rendered, rfc3339};
use super::timeline::{
    ErrorView, OperatorActionView, RunEvent, RunEventKind, StepKind, TimedEvent, Timeline,
    TimelineInput, UndecodableEvent, build,
};
use crate::RunStatus;
use crate::clock::now_ms;
use crate::codec::Codec;
use crate::error::Error;
use crate::journal::{EventBody, decode_event};
use crate::store::{
    ArchivedRun, LeaseHolder, RunQuery, RunRecord, RunState, SignalRecord, Store, StoredEvent,
};

/// The most children listed (and looked up) in a description.
pub const MAX_CHILDREN: usize = 100;

/// Everything known about one run, finished or not, built from the store alone (see
/// [`Engine::describe`](crate::Engine::describe)). Serializes to JSON with stable snake_case names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunDescription {
    /// The workflow id.
    pub workflow_id: String,
    /// The workflow type.
    pub workflow_name: String,
    /// The lifecycle state.
    pub state: RunState,
    /// A one-line summary of how the run ended or why it is parked; `None` while running.
    pub outcome: Option<String>,
    /// Which run of the workflow id this is (0 for the first; continue-as-new increments it).
    pub run_no: i64,
    /// The earlier runs of this workflow id that are still kept, oldest first.
    pub archived_runs: Vec<ArchivedRunSummary>,
    /// The parent run, for child workflows.
    pub parent_id: Option<String>,
    /// The child runs this run started, in step order (at most [`MAX_CHILDREN`]).
    pub children: Vec<ChildSummary>,
    /// When the run was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When its row last changed.
    pub updated_at_ms: i64,
    /// When it finished, if it has.
    pub finished_at_ms: Option<i64>,
    /// The execution deadline, if it has a timeout.
    pub deadline_ms: Option<i64>,
    /// The node holding the run's lease (PostgreSQL); `None` on SQLite or when no node holds it.
    pub lease: Option<LeaseHolder>,
    /// Whether an operator paused it, by whom and why (from its audit events).
    pub paused: Option<PauseInfo>,
    /// A cancellation reason, once cancellation was requested.
    pub cancel_requested: Option<String>,
    /// Why it is not progressing right now.
    pub blocked_on: BlockedOn,
    /// The human line of `blocked_on`.
    pub blocked_on_text: String,
    /// The input.
    pub input: Rendered,
    /// The output, once completed.
    pub output: Option<Rendered>,
    /// The error (failed, cancelled, compensation failed) or park reason.
    pub error: Option<ErrorView>,
    /// Signals in the inbox not yet consumed, oldest first.
    pub pending_signals: Vec<PendingSignal>,
    /// The latest value published under each key, in key order.
    pub published_state: Vec<PublishedValue>,
    /// The operator actions (audit), in journal order.
    pub operator_actions: Vec<RunEvent>,
    /// How many events the journal holds.
    pub history_len: usize,
    /// The step-by-step timeline.
    pub timeline: Timeline,
}

/// An operator's pause in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PauseInfo {
    /// Who paused the run.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

/// A child run as listed in its parent's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChildSummary {
    /// The child's workflow id.
    pub workflow_id: String,
    /// Its workflow type.
    pub workflow_name: String,
    /// The parent's step that started it (`None` when not known from this run's journal).
    pub step: Option<u32>,
    /// Its state (`None` if its row is gone).
    pub state: Option<RunState>,
}

/// An earlier run of a workflow id (it continued as new).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArchivedRunSummary {
    /// Which run it was.
    pub run_no: i64,
    /// Its input.
    pub input: Rendered,
    /// How many events its journal held.
    pub event_count: i64,
    /// When it started.
    pub created_at_ms: i64,
    /// When it continued as new.
    pub ended_at_ms: i64,
}

/// A signal waiting in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingSignal {
    /// Its inbox id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Rendered,
}

/// A published value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishedValue {
    /// The key.
    pub key: String,
    /// The latest value.
    pub value: Rendered,
    /// The step that published it.
    pub step: u32,
}

/// What `describe` reads: the store, the codec, the catalog and what this engine can drive.
pub(crate) struct Sources<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) codec: Codec,
    pub(crate) catalog: &'a Catalog,
    /// Whether this engine can drive a workflow type.
    pub(crate) registered: &'a (dyn Fn(&str) -> bool + Sync),
    /// This engine's node id (with leases).
    pub(crate) node: &'a str,
}

pub(crate) async fn describe(
    sources: &Sources<'_>,
    workflow_id: &str,
) -> Result<RunDescription, Error> {
    let store = sources.store;
    let run = store
        .run(workflow_id)
        .await?
        .ok_or_else(|| Error::NotFound {
            workflow_id: workflow_id.to_string(),
        })?;
    let rows = store.history(workflow_id).await?;
    let pending = store.pending_signals(workflow_id).await?;
    let archived = store.archived_runs(workflow_id).await?;
    let lease = match store.leases() {
        Some(leases) => leases.lease_holder(workflow_id).await?,
        None => None,
    };
    let children = store
        .list_runs(&RunQuery::new().parent_id(workflow_id).limit(MAX_CHILDREN))
        .await?
        .runs;
    let mut description = assemble(sources, run, &rows, &pending, &archived, lease);
    // The child rows (by parent) complete the journal's view: their state, and children started
    // by earlier runs of a workflow id that continued as new.
    for row in children {
        let listed = &mut description.children;
        if let Some(child) = listed
            .iter_mut()
            .find(|child| child.workflow_id == row.workflow_id)
        {
            child.state = Some(row.state);
        } else if listed.len() < MAX_CHILDREN {
            listed.push(ChildSummary {
                workflow_id: row.workflow_id,
                workflow_name: row.workflow_name,
                step: None,
                state: Some(row.state),
            });
        }
    }
    for child in description
        .children
        .iter_mut()
        .filter(|c| c.state.is_none())
    {
        child.state = store.run(&child.workflow_id).await?.map(|row| row.state);
    }
    Ok(description)
}

fn assemble(
    sources: &Sources<'_>,
    run: RunRecord,
    rows: &[StoredEvent],
    pending: &[SignalRecord],
    archived: &[ArchivedRun],
    lease: Option<LeaseHolder>,
) -> RunDescription {
    let codec = sources.codec;
    let catalog = sources.catalog;
    let now = now_ms();
    let (events, undecodable) = decode_rows(&codec, rows);
    let input = TimelineInput {
        codec: &codec,
        catalog,
        workflow_name: &run.workflow_name,
        running: run.state == RunState::Running,
        now_ms: now,
    };
    let timeline = build(&input, &events, undecodable);
    let signature = catalog.workflow(&run.workflow_name);

    let operator_actions: Vec<RunEvent> = timeline
        .run_events
        .iter()
        .filter(|event| matches!(event.what, RunEventKind::Operator { .. }))
        .cloned()
        .collect();
    // The run row's pause (kept by the store) is the truth; the audit events say the same for
    // stores that do not keep it.
    let paused = match &run.paused {
        Some(pause) => Some(PauseInfo {
            by: pause.by.clone(),
            reason: pause.reason.clone(),
            at_ms: pause.at_ms,
        }),
        None if run.state.is_finished() => None,
        None => pause_in_effect(&operator_actions),
    };
    let children = timeline
        .steps
        .iter()
        .filter(|entry| entry.kind == StepKind::Child)
        .take(MAX_CHILDREN)
        .map(|entry| ChildSummary {
            workflow_id: entry.child_id.clone().unwrap_or_default(),
            workflow_name: entry.name.clone().unwrap_or_default(),
            step: Some(entry.step),
            state: None,
        })
        .collect();
    let mut published: std::collections::BTreeMap<String, PublishedValue> = Default::default();
    for event in &events {
        if let EventBody::StatePublished { key, value } = &event.body {
            let ty = catalog.state(&run.workflow_name, key);
            published.insert(
                key.clone(),
                PublishedValue {
                    key: key.clone(),
                    value: Rendered::payload(&codec, ty, value),
                    step: event.step,
                },
            );
        }
    }
    let (outcome, error) = outcome_of(&run, &codec);
    let blocked_on = blocked_on(
        sources,
        &run,
        &timeline,
        paused.as_ref(),
        pending,
        &lease,
        now,
    );
    RunDescription {
        input: Rendered::payload(&codec, signature.map(|s| s.input), &run.input),
        output: run
            .output
            .as_deref()
            .map(|bytes| Rendered::payload(&codec, signature.map(|s| s.output), bytes)),
        archived_runs: archived
            .iter()
            .map(|old| ArchivedRunSummary {
                run_no: old.run_no,
                input: Rendered::payload(
                    &codec,
                    catalog.workflow(&old.workflow_name).map(|s| s.input),
                    &old.input,
                ),
                event_count: old.event_count,
                created_at_ms: old.created_at_ms,
                ended_at_ms: old.ended_at_ms,
            })
            .collect(),
        pending_signals: pending
            .iter()
            .map(|signal| PendingSignal {
                id: signal.id,
                name: signal.name.clone(),
                payload: Rendered::payload(
                    &codec,
                    catalog.signal(&run.workflow_name, &signal.name),
                    &signal.payload,
                ),
            })
            .collect(),
        published_state: published.into_values().collect(),
        finished_at_ms: run.state.is_finished().then_some(run.updated_at_ms),
        blocked_on_text: blocked_on.to_string(),
        blocked_on,
        outcome,
        error,
        children,
        paused,
        operator_actions,
        lease,
        history_len: rows.len(),
        timeline,
        cancel_requested: run.cancel_reason.clone(),
        workflow_id: run.workflow_id,
        workflow_name: run.workflow_name,
        state: run.state,
        run_no: run.run_no,
        parent_id: run.parent_id,
        created_at_ms: run.created_at_ms,
        updated_at_ms: run.updated_at_ms,
        deadline_ms: run.deadline_ms,
    }
}

/// Decodes each row on its own: a row that does not decode is reported, not fatal.
fn decode_rows(codec: &Codec, rows: &[StoredEvent]) -> (Vec<TimedEvent>, Vec<UndecodableEvent>) {
    let mut events = Vec::with_capacity(rows.len());
    let mut undecodable = Vec::new();
    for row in rows {
        match decode_event(codec, row) {
            Ok(body) => events.push(TimedEvent {
                seq: row.seq,
                step: row.step,
                recorded_at_ms: row.recorded_at_ms,
                body,
            }),
            Err(reason) => undecodable.push(UndecodableEvent {
                seq: row.seq,
                step: row.step,
                message: reason.to_string(),
            }),
        }
    }
    (events, undecodable)
}

/// The last pause not followed by a resume.
pub(super) fn pause_in_effect(actions: &[RunEvent]) -> Option<PauseInfo> {
    let mut paused = None;
    for event in actions {
        if let RunEventKind::Operator { actor, action } = &event.what {
            match action {
                OperatorActionView::Paused { reason } => {
                    paused = Some(PauseInfo {
                        by: actor.clone(),
                        reason: reason.clone(),
                        at_ms: event.at_ms,
                    });
                }
                OperatorActionView::Resumed
                | OperatorActionView::Retried { .. }
                | OperatorActionView::Terminated { .. } => paused = None,
                _ => {}
            }
        }
    }
    paused
}

fn outcome_of(run: &RunRecord, codec: &Codec) -> (Option<String>, Option<ErrorView>) {
    let Some(bytes) = run.error.as_deref() else {
        return (
            (run.state == RunState::Completed).then(|| "completed".to_string()),
            None,
        );
    };
    // The engine's own decoding of the `error` column (whatever journal format wrote it).
    let view = match RunStatus::from_record(run, *codec) {
        Ok(RunStatus::Parked(reason)) => Ok(ErrorView::of(&reason)),
        Ok(
            RunStatus::Failed(error)
            | RunStatus::Cancelled(error)
            | RunStatus::CompensationFailed(error),
        ) => Ok(ErrorView::of(&error)),
        Ok(RunStatus::Terminated(termination)) => Ok(ErrorView {
            message: format!(
                "terminated by {}: {}",
                termination.actor, termination.reason
            ),
            detail: Rendered::value(&termination),
        }),
        Ok(_) => return (None, None),
        Err(error) => Err(error),
    };
    match view {
        Ok(view) => (Some(view.message.clone()), Some(view)),
        Err(error) => {
            let view = ErrorView {
                message: format!("undecodable error: {error}"),
                detail: Rendered::opaque(bytes, error.to_string()),
            };
            (Some(view.message.clone()), Some(view))
        }
    }
}

fn blocked_on(
    sources: &Sources<'_>,
    run: &RunRecord,
    timeline: &Timeline,
    paused: Option<&PauseInfo>,
    pending: &[SignalRecord],
    lease: &Option<LeaseHolder>,
    now: i64,
) -> BlockedOn {
    match run.state {
        RunState::Running => {}
        RunState::Parked => {
            let message = match RunStatus::from_record(run, sources.codec) {
                Ok(RunStatus::Parked(reason)) => reason.to_string(),
                _ => "reason undecodable".to_string(),
            };
            return BlockedOn::Parked { message };
        }
        state => return BlockedOn::Finished { state },
    }
    if let Some(pause) = paused {
        return BlockedOn::Paused {
            by: pause.by.clone(),
            reason: pause.reason.clone(),
        };
    }
    if sources.store.leases().is_some() {
        match lease {
            None => return BlockedOn::Unclaimed,
            Some(holder) => match holder.expires_at_ms {
                Some(expiry) if expiry < now => {
                    return BlockedOn::LeaseExpired {
                        node: holder.node.clone(),
                        expired_at_ms: expiry,
                    };
                }
                Some(expiry)
                    if holder.node != sources.node
                        && open_steps(timeline, |name| max_attempts(sources.catalog, name))
                            .is_none() =>
                {
                    // Progressing elsewhere with no journaled wait: say where.
                    return BlockedOn::LeaseHeld {
                        node: holder.node.clone(),
                        until_ms: expiry,
                    };
                }
                _ => {}
            },
        }
    } else if !(sources.registered)(&run.workflow_name) {
        return BlockedOn::UnknownWorkflowType {
            name: run.workflow_name.clone(),
        };
    }
    if let Some(reason) = &run.cancel_reason {
        return BlockedOn::CancelRequested {
            reason: reason.clone(),
        };
    }
    open_steps(timeline, |name| max_attempts(sources.catalog, name)).unwrap_or(
        BlockedOn::Unjournaled {
            pending_signals: pending.len(),
        },
    )
}

fn max_attempts(catalog: &Catalog, name: &str) -> Option<u32> {
    catalog.activity(name).map(|entry| entry.max_attempts)
}

impl std::fmt::Display for RunDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} ({}, run {}): {:?}",
            self.workflow_id, self.workflow_name, self.run_no, self.state
        )?;
        writeln!(f, "  created    {}", rfc3339(self.created_at_ms))?;
        if let Some(finished) = self.finished_at_ms {
            writeln!(f, "  finished   {}", rfc3339(finished))?;
        }
        writeln!(f, "  blocked on {}", self.blocked_on)?;
        writeln!(f, "  input      {}", self.input)?;
        if let Some(output) = &self.output {
            writeln!(f, "  output     {output}")?;
        }
        if let Some(error) = &self.error {
            writeln!(f, "  error      {}", error.message)?;
        }
        for entry in &self.timeline.steps {
            write!(
                f,
                "  step {:>3} {:?} {} {:?}",
                entry.step,
                entry.kind,
                entry.name.as_deref().unwrap_or("-"),
                entry.status
            )?;
            if let Some(start) = entry.started_at_ms {
                write!(f, " {}", rfc3339(start))?;
            }
            if entry.attempts.len() > 1 {
                write!(f, " ({} attempts)", entry.attempts.len())?;
            }
            if entry.compensation {
                f.write_str(" [compensation]")?;
            }
            writeln!(f)?;
        }
        for event in &self.timeline.run_events {
            writeln!(f, "  {} {}", rfc3339(event.at_ms), event.what)?;
        }
        Ok(())
    }
}

/// A payload type the catalog lacks, for the JSON → payload direction.
pub(crate) fn require(
    ty: Option<PayloadType>,
    what: impl FnOnce() -> String,
) -> Result<PayloadType, Error> {
    ty.ok_or_else(|| Error::UnknownPayloadType { what: what() })
}
