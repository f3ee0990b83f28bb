//! The changing verbs: `signal`, `cancel`, `pause`, `resume`, `retry`, `fork`, `terminate`, and
//! the bulk form (`--where ...`) of the five that have one.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::args::{ForkArgs, SignalArgs, Target};
use super::backend::{Action, Backend};
use super::exit::{CliError, Exit};
use super::filters;
use super::output::{self, BOLD, DIM, GREEN, YELLOW, paint, safe};

/// A payload or input given as JSON on the command line.
fn json_argument(what: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|error| {
        CliError::usage(format!(
            "the {what} is not JSON ({error}); quote it for the shell, e.g. '{{\"approved\": true}}' or '\"text\"'"
        ))
    })
}

/// `signal ID NAME [PAYLOAD]`.
pub(crate) async fn signal(
    backend: &dyn Backend,
    args: &SignalArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let payload = match &args.payload {
        Some(text) => json_argument("payload", text)?,
        None => Value::Null,
    };
    let action = Action::Signal {
        name: args.name.clone(),
        payload,
    };
    one(backend, &args.id, &action, json).await
}

/// `fork ID --from-step N --new-id NEW [--input JSON]`.
pub(crate) async fn fork(
    backend: &dyn Backend,
    args: &ForkArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let input = match &args.input {
        Some(text) => Some(json_argument("input", text)?),
        None => None,
    };
    let action = Action::Fork {
        from_step: args.from_step,
        new_id: args.new_id.clone(),
        input,
    };
    one(backend, &args.id, &action, json).await
}

/// A verb on one run or, with `--where`, on every matching run.
pub(crate) async fn targeted(
    backend: &dyn Backend,
    target: &Target,
    action: Action,
    json: bool,
) -> Result<Exit, CliError> {
    target.check()?;
    match &target.id {
        Some(id) => one(backend, id, &action, json).await,
        None => bulk(backend, target, &action, json).await,
    }
}

/// One action on one run.
async fn one(
    backend: &dyn Backend,
    id: &str,
    action: &Action,
    json: bool,
) -> Result<Exit, CliError> {
    let answer = backend.act(id, action).await?;
    if json {
        output::print_json(&answer);
        return Ok(Exit::Ok);
    }
    let mut text = match action {
        Action::Fork {
            new_id, from_step, ..
        } => format!(
            "{} forked {} from step {from_step} as {}\n",
            paint(GREEN, "✓"),
            safe(id),
            paint(BOLD, &safe(new_id))
        ),
        other => format!(
            "{} {} {}{}\n",
            paint(GREEN, "✓"),
            past(other.verb()),
            safe(id),
            answer
                .get("actor")
                .and_then(Value::as_str)
                .map(|actor| paint(DIM, &format!(" (as {})", safe(actor))))
                .unwrap_or_default()
        ),
    };
    if let Some(note) = backend.after_action_note(action) {
        text.push_str(&paint(DIM, &format!("  {note}\n")));
    }
    output::print(&text);
    Ok(Exit::Ok)
}

fn past(verb: &str) -> &'static str {
    match verb {
        "signal" => "signalled",
        "cancel" => "cancellation requested for",
        "pause" => "paused",
        "resume" => "resumed",
        "retry" => "retried",
        "terminate" => "terminated",
        _ => "done:",
    }
}

/// The bulk form: `VERB --where k=v ... [--dry-run] [--max N] [--yes]`.
async fn bulk(
    backend: &dyn Backend,
    target: &Target,
    action: &Action,
    json: bool,
) -> Result<Exit, CliError> {
    let verb = action.verb();
    let mut fields = filters::conditions(&target.conditions)?;
    // Without --yes, a bulk action is only looked at: a dry run, then a refusal that says how to act.
    let dry_run = target.dry_run || !target.yes;
    fields.insert("dry_run".to_string(), Value::Bool(dry_run));
    if let Some(max) = target.max {
        if max == 0 {
            return Err(CliError::usage("--max is at least 1"));
        }
        fields.insert("limit".to_string(), Value::from(max));
    }
    if let Action::Cancel {
        reason: Some(reason),
    }
    | Action::Pause {
        reason: Some(reason),
    }
    | Action::Terminate {
        reason: Some(reason),
    } = action
    {
        fields.insert("reason".to_string(), Value::String(reason.clone()));
    }
    let bar = progress_bar(json, dry_run);
    let shown = bar.clone();
    let report = backend
        .bulk(
            verb,
            fields,
            Box::new(move |matched, done| {
                shown.set_length(matched.max(1));
                shown.set_position(done);
            }),
        )
        .await;
    bar.finish_and_clear();
    let report = report?;
    let number = |key: &str| report.get(key).and_then(Value::as_u64).unwrap_or(0);
    let refused = !target.dry_run && !target.yes;
    if json {
        output::print_json(&report);
    } else {
        let mut text = if dry_run {
            format!(
                "{} {} runs match: {verb} would apply to them\n",
                paint(YELLOW, "dry run:"),
                number("matched")
            )
        } else {
            format!(
                "{} {verb}: {} matched, {} applied, {} skipped (changed meanwhile), {} failed ({} ms)\n",
                paint(GREEN, "✓"),
                number("matched"),
                number("applied"),
                number("skipped"),
                number("failed"),
                number("elapsed_ms"),
            )
        };
        let ids: Vec<String> = report
            .get("first_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(safe)
            .collect();
        if !ids.is_empty() {
            let more = if number("matched") > ids.len() as u64 {
                ", …"
            } else {
                ""
            };
            text.push_str(&format!("  first: {}{more}\n", ids.join(", ")));
        }
        for problem in report
            .get("problems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            text.push_str(&format!(
                "  {} {}: {}\n",
                paint(output::RED, "✗"),
                safe(
                    problem
                        .get("workflow_id")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ),
                safe(
                    problem
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ),
            ));
        }
        output::print(&text);
    }
    if refused {
        return Err(CliError::new(
            Exit::Refused,
            "confirm",
            format!("nothing was changed: {verb} over many runs needs --yes"),
        )
        .hint("check the matching runs above, then run the same command with --yes (--max N bounds how many runs it acts on)"));
    }
    Ok(if number("failed") > 0 {
        Exit::Finding
    } else {
        Exit::Ok
    })
}

/// A progress bar on standard error for long bulk work (hidden when it is not a terminal, or with
/// `--json`).
fn progress_bar(json: bool, dry_run: bool) -> ProgressBar {
    if json || dry_run {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} runs ({elapsed})")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
