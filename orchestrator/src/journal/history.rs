//! A run's recorded events, indexed for replay.

use std::collections::HashMap;

use super::{Event, EventBody};
use crate::error::ParkReason;

/// The recorded events of one run, indexed by step, with the completions in the order they were
/// delivered. Built once when a run is loaded; pure data.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Completions in journal order.
    completions: Vec<Event>,
    /// The completion of each step.
    completion_by_step: HashMap<u32, usize>,
    /// Non-completion records, by step, in journal order.
    records: HashMap<u32, Vec<EventBody>>,
    /// Annotations (attempt starts, operator actions), in journal order: not matched by replay (the
    /// highest attempt start of a step is looked up, for the retry budget).
    annotations: Vec<Event>,
    /// For each step, the index in `annotations` of its highest-numbered attempt start.
    last_start: HashMap<u32, usize>,
    len: usize,
}

impl History {
    /// Indexes `events` (in journal order). Fails if a step has two completions.
    pub fn new(events: Vec<Event>) -> Result<Self, ParkReason> {
        let mut history = History {
            len: events.len(),
            ..History::default()
        };
        for event in events {
            if event.body.is_annotation() {
                if let EventBody::ActivityAttemptStarted { attempt, .. } = &event.body {
                    let index = history.annotations.len();
                    let higher = match history.last_start.get(&event.step) {
                        Some(previous) => match history.annotations.get(*previous) {
                            Some(Event {
                                body: EventBody::ActivityAttemptStarted { attempt: seen, .. },
                                ..
                            }) => attempt > seen,
                            _ => true,
                        },
                        None => true,
                    };
                    if higher {
                        history.last_start.insert(event.step, index);
                    }
                }
                history.annotations.push(event);
            } else if event.body.is_completion() {
                if history.completion_by_step.contains_key(&event.step) {
                    return Err(ParkReason::CorruptJournal {
                        message: format!("step {} has two completions", event.step),
                    });
                }
                history
                    .completion_by_step
                    .insert(event.step, history.completions.len());
                history.completions.push(event);
            } else {
                history
                    .records
                    .entry(event.step)
                    .or_default()
                    .push(event.body);
            }
        }
        Ok(history)
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the journal is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The completions, in delivery order.
    pub fn completions(&self) -> &[Event] {
        &self.completions
    }

    /// The completion recorded for `step`, if any.
    pub fn completion(&self, step: u32) -> Option<&EventBody> {
        self.completion_by_step
            .get(&step)
            .and_then(|index| self.completions.get(*index))
            .map(|event| &event.body)
    }

    /// The non-completion records of `step`, in journal order.
    pub fn records(&self, step: u32) -> &[EventBody] {
        self.records.get(&step).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The annotations (attempt starts, operator actions), in journal order.
    pub fn annotations(&self) -> &[Event] {
        &self.annotations
    }

    /// The highest-numbered attempt start journaled for `step` (an `ActivityAttemptStarted` event).
    pub fn last_attempt_start(&self, step: u32) -> Option<&EventBody> {
        self.last_start
            .get(&step)
            .and_then(|index| self.annotations.get(*index))
            .map(|event| &event.body)
    }

    /// The highest step number that appears in the journal.
    pub fn last_step(&self) -> u32 {
        let completed = self.completion_by_step.keys().copied().max().unwrap_or(0);
        let recorded = self.records.keys().copied().max().unwrap_or(0);
        completed.max(recorded)
    }
}
