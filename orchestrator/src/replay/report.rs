//! What the replay checker reports: per run, whether its history still replays on the current code.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::export::RunExport;
use crate::store::{RunQuery, Store};

/// The histories [`Engine::replay_check`](crate::Engine::replay_check) replays.
#[non_exhaustive]
pub enum ReplaySource {
    /// The runs of the engine's own store that match the query (every page).
    EngineStore(RunQuery),
    /// The runs of another store (e.g. a copy of production's journal) that match the query.
    Store(Arc<dyn Store>, RunQuery),
    /// Exported histories (see [`export`](crate::export)), e.g. fixtures kept in the repository.
    Exports(Vec<RunExport>),
}

impl std::fmt::Debug for ReplaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplaySource::EngineStore(query) => f.debug_tuple("EngineStore").field(query).finish(),
            ReplaySource::Store(_, query) => f.debug_tuple("Store").field(query).finish(),
            ReplaySource::Exports(exports) => {
                write!(f, "Exports({} histories)", exports.len())
            }
        }
    }
}

/// Which branch a `ctx.patched(change_id)` call took on replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PatchBranch {
    /// The history holds the change's marker: the run was recorded with the change (new branch).
    Recorded,
    /// The history was recorded without the change: the run keeps the old branch.
    Old,
    /// The call comes after the end of the history: the run will take the new branch when it
    /// continues live.
    Live,
}

/// One `ctx.patched(..)` call made while replaying a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PatchUse {
    /// The change's id.
    pub change_id: String,
    /// The step the marker is (or would be) at.
    pub step: u32,
    /// The branch taken.
    pub branch: PatchBranch,
}

/// How the replay of one run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// The whole history replays on the current code.
    Ok {
        /// Whether the code returned within the history (`false`: it waits for steps the history has
        /// no outcome for yet — an unfinished run that would continue live).
        finished: bool,
    },
    /// The code and the history disagree: the run would be parked.
    NonDeterminism {
        /// The step where they disagree.
        step: u32,
        /// What the history recorded there.
        recorded: String,
        /// What the current code asks for there.
        new_call: String,
    },
    /// The history or a payload in it cannot be read by the current code (a changed type, a
    /// corrupt row).
    Undecodable {
        /// Why.
        message: String,
    },
    /// The run's workflow type is not registered with the checking engine.
    UnknownWorkflowType {
        /// The recorded workflow type.
        name: String,
    },
    /// The workflow code panicked on replay.
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// Replay failed for another reason the run would be parked for.
    Failed {
        /// Why.
        message: String,
    },
}

impl ReplayOutcome {
    /// Whether the history replays on the current code.
    pub fn is_ok(&self) -> bool {
        matches!(self, ReplayOutcome::Ok { .. })
    }
}

/// The replay of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunReplay {
    /// The run's workflow id.
    pub workflow_id: String,
    /// Its workflow type.
    pub workflow_name: String,
    /// How many journal events were replayed.
    pub events: usize,
    /// How the replay ended.
    pub outcome: ReplayOutcome,
    /// The `patched` calls the current code made on replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchUse>,
}

/// What [`Engine::replay_check`](crate::Engine::replay_check) found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Every run checked, in the order they were read.
    pub runs: Vec<RunReplay>,
    /// How long the check took.
    #[serde(with = "millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Whether every run replays.
    pub fn is_ok(&self) -> bool {
        self.runs.iter().all(|run| run.outcome.is_ok())
    }

    /// The runs that do not replay.
    pub fn failures(&self) -> impl Iterator<Item = &RunReplay> {
        self.runs.iter().filter(|run| !run.outcome.is_ok())
    }

    /// The runs that would hit nondeterminism.
    pub fn nondeterministic(&self) -> impl Iterator<Item = &RunReplay> {
        self.runs
            .iter()
            .filter(|run| matches!(run.outcome, ReplayOutcome::NonDeterminism { .. }))
    }

    /// The runs on which `ctx.patched(change_id)` took the new branch (recorded with the change, or
    /// reaching it live).
    pub fn taking_patch<'a>(&'a self, change_id: &'a str) -> impl Iterator<Item = &'a RunReplay> {
        self.runs.iter().filter(move |run| {
            run.patches
                .iter()
                .any(|patch| patch.change_id == change_id && patch.branch != PatchBranch::Old)
        })
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed = self.failures().count();
        writeln!(
            f,
            "replayed {} runs in {:.3} s: {} ok, {failed} failing",
            self.runs.len(),
            self.elapsed.as_secs_f64(),
            self.runs.len() - failed
        )?;
        for run in self.failures() {
            let id = crate::limits::IdDisplay(&run.workflow_id);
            match &run.outcome {
                ReplayOutcome::NonDeterminism {
                    step,
                    recorded,
                    new_call,
                } => writeln!(
                    f,
                    "  {id} ({}): nondeterminism at step {step}: recorded {recorded}, the code now asks for {new_call}",
                    run.workflow_name
                )?,
                ReplayOutcome::Undecodable { message } => {
                    writeln!(f, "  {id} ({}): undecodable: {message}", run.workflow_name)?
                }
                ReplayOutcome::UnknownWorkflowType { name } => {
                    writeln!(f, "  {id}: workflow type `{name}` is not registered")?
                }
                ReplayOutcome::Panicked { message } => {
                    writeln!(f, "  {id} ({}): panicked: {message}", run.workflow_name)?
                }
                ReplayOutcome::Failed { message } => {
                    writeln!(f, "  {id} ({}): {message}", run.workflow_name)?
                }
                ReplayOutcome::Ok { .. } => {}
            }
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
