//! `show ID`: a run's description as text: its header, the blocked-on line, the timeline of steps
//! and attempts, run events, children as a tree, and (with `--payloads`) the payloads as JSON.
//!
//! Rendered from the description's JSON (the admin API's and `Engine::describe`'s), so a newer
//! server's extra fields or kinds show up generically rather than failing.

use std::fmt::Write as _;

use serde_json::Value;

use super::backend::Backend;
use super::exit::CliError;
use super::output::{self, BOLD, DIM, RED, YELLOW, paint, safe, state_style, table};

/// How deep the children tree is followed.
const TREE_DEPTH: usize = 3;
/// The most runs the children tree shows.
const TREE_NODES: usize = 50;

/// The text of `show`.
pub(crate) async fn render(
    backend: &dyn Backend,
    description: &Value,
    payloads: bool,
) -> Result<String, CliError> {
    let mut out = String::new();
    header(&mut out, description, payloads);
    steps(&mut out, description, payloads);
    run_events(&mut out, description);
    signals(&mut out, description, payloads);
    children(&mut out, backend, description).await?;
    Ok(out)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn ms(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

/// A rendered payload (`{"json": v}` or `{"opaque": {...}}`) on one line.
fn payload(value: &Value) -> String {
    if let Some(json) = value.get("json") {
        return safe(&json.to_string());
    }
    if let Some(opaque) = value.get("opaque") {
        let size = opaque.get("size").and_then(Value::as_u64).unwrap_or(0);
        let note = text(opaque, "note").unwrap_or("");
        return format!("<{size} bytes, not shown: {}>", safe(note));
    }
    safe(&value.to_string())
}

fn header(out: &mut String, d: &Value, payloads: bool) {
    let state = text(d, "state").unwrap_or("?");
    let _ = writeln!(
        out,
        "{} {}  {}  {}",
        paint(BOLD, "run"),
        paint(BOLD, &safe(text(d, "workflow_id").unwrap_or("?"))),
        safe(text(d, "workflow_name").unwrap_or("?")),
        paint(state_style(state), state),
    );
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "  {:<12} {value}", format!("{name}:"));
    };
    if let Some(outcome) = text(d, "outcome") {
        field("outcome", paint(state_style(state), &safe(outcome)));
    }
    field(
        "blocked on",
        safe(text(d, "blocked_on_text").unwrap_or("-")),
    );
    field("created", output::time(ms(d, "created_at_ms")));
    field("updated", output::time(ms(d, "updated_at_ms")));
    if let Some(finished) = ms(d, "finished_at_ms") {
        let took = ms(d, "created_at_ms").map(|created| output::duration(finished - created));
        field(
            "finished",
            format!(
                "{}{}",
                output::time(Some(finished)),
                took.map(|t| format!(" (after {t})")).unwrap_or_default()
            ),
        );
    }
    if let Some(deadline) = ms(d, "deadline_ms") {
        field("deadline", output::time(Some(deadline)));
    }
    if let Some(parent) = text(d, "parent_id") {
        field("parent", safe(parent));
    }
    let run_no = d.get("run_no").and_then(Value::as_i64).unwrap_or(0);
    if run_no > 0 {
        let archived = d
            .get("archived_runs")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        field(
            "run no",
            format!("{run_no} (continued as new; {archived} earlier runs kept)"),
        );
    }
    if let Some(paused) = d.get("paused").filter(|p| !p.is_null()) {
        field(
            "paused",
            paint(
                YELLOW,
                &format!(
                    "by {}: {} (at {})",
                    safe(text(paused, "by").unwrap_or("?")),
                    safe(text(paused, "reason").unwrap_or("")),
                    output::time(ms(paused, "at_ms"))
                ),
            ),
        );
    }
    if let Some(reason) = text(d, "cancel_requested") {
        field("cancel", format!("requested: {}", safe(reason)));
    }
    if let Some(lease) = d.get("lease").filter(|l| !l.is_null()) {
        field(
            "lease",
            format!(
                "node {} (epoch {}, until {})",
                safe(text(lease, "node").unwrap_or("?")),
                lease.get("epoch").and_then(Value::as_i64).unwrap_or(0),
                output::time(ms(lease, "expires_at_ms"))
            ),
        );
    }
    if let Some(error) = d.get("error").filter(|e| !e.is_null()) {
        field(
            "error",
            paint(RED, &safe(text(error, "message").unwrap_or("?"))),
        );
        if payloads && let Some(detail) = error.get("detail") {
            field("error data", payload(detail));
        }
    }
    field(
        "history",
        format!(
            "{} journal events",
            d.get("history_len").and_then(Value::as_u64).unwrap_or(0)
        ),
    );
    if payloads {
        if let Some(input) = d.get("input") {
            field("input", payload(input));
        }
        if let Some(output) = d.get("output").filter(|o| !o.is_null()) {
            field("output", payload(output));
        }
        for value in d
            .get("published_state")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            field(
                "state",
                format!(
                    "{} = {} (step {})",
                    safe(text(value, "key").unwrap_or("?")),
                    value.get("value").map(payload).unwrap_or_default(),
                    value.get("step").and_then(Value::as_u64).unwrap_or(0)
                ),
            );
        }
    }
}

fn steps(out: &mut String, d: &Value, payloads: bool) {
    let timeline = d.get("timeline").unwrap_or(&Value::Null);
    let steps = timeline
        .get("steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push('\n');
    if steps.is_empty() {
        let _ = writeln!(out, "{}", paint(DIM, "no steps yet"));
    } else {
        let mut rows = Vec::new();
        for step in steps {
            let status = text(step, "status").unwrap_or("?");
            let attempts = step
                .get("attempts")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let took = match (ms(step, "started_at_ms"), ms(step, "ended_at_ms")) {
                (Some(start), Some(end)) => output::duration(end - start),
                _ => "-".to_string(),
            };
            let kind = text(step, "kind").unwrap_or("?");
            let compensation = step.get("compensation") == Some(&Value::Bool(true));
            rows.push(vec![
                step.get("step")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .to_string(),
                if compensation {
                    format!("{kind} (undo)")
                } else {
                    kind.to_string()
                },
                safe(text(step, "name").unwrap_or("")),
                paint(state_style(status), status),
                if attempts.is_empty() {
                    String::new()
                } else {
                    attempts.len().to_string()
                },
                took,
                step_detail(step, payloads),
            ]);
            // One line per attempt when there were several or one failed.
            let failed_one = attempts
                .iter()
                .any(|a| text(a, "outcome").is_some_and(|o| o != "succeeded"));
            if attempts.len() > 1 || failed_one {
                for attempt in attempts {
                    rows.push(attempt_row(attempt));
                }
            }
        }
        out.push_str(&table(
            &[
                "STEP", "KIND", "NAME", "STATUS", "ATTEMPTS", "TOOK", "DETAIL",
            ],
            &rows,
        ));
    }
    if timeline.get("truncated") == Some(&Value::Bool(true)) {
        let _ = writeln!(
            out,
            "{}",
            paint(
                YELLOW,
                "(more steps exist: the timeline lists the first 5,000)"
            )
        );
    }
    for row in timeline
        .get("undecodable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "{} seq {} (step {}): {}",
            paint(RED, "undecodable journal row"),
            row.get("seq").and_then(Value::as_i64).unwrap_or(0),
            row.get("step").and_then(Value::as_u64).unwrap_or(0),
            safe(text(row, "message").unwrap_or(""))
        );
    }
}

/// What a step's row says beyond its status: its error, wait, child or value.
fn step_detail(step: &Value, payloads: bool) -> String {
    if let Some(error) = step.get("error").and_then(|e| text(e, "message")) {
        return paint(RED, &safe(error));
    }
    let mut parts = Vec::new();
    if let Some(fire) = ms(step, "fire_at_ms") {
        parts.push(format!("until {}", output::time(Some(fire))));
    }
    if let Some(deadline) = ms(step, "deadline_ms") {
        parts.push(format!("deadline {}", output::time(Some(deadline))));
    }
    if let Some(child) = text(step, "child_id") {
        parts.push(format!("child {}", safe(child)));
    }
    if let Some(winner) = step.get("select_winner").and_then(Value::as_u64) {
        parts.push(format!("branch {winner} won"));
    }
    if payloads && let Some(value) = step.get("output") {
        parts.push(format!("= {}", payload(value)));
    }
    parts.join(", ")
}

fn attempt_row(attempt: &Value) -> Vec<String> {
    let outcome = text(attempt, "outcome").unwrap_or("?");
    let took = match (ms(attempt, "started_at_ms"), ms(attempt, "ended_at_ms")) {
        (Some(start), Some(end)) => output::duration(end - start),
        _ => "-".to_string(),
    };
    let mut detail = attempt
        .get("error")
        .and_then(|e| text(e, "message"))
        .map(|message| paint(RED, &safe(message)))
        .unwrap_or_default();
    if let Some(retry) = ms(attempt, "retry_at_ms") {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!("next attempt at {}", output::time(Some(retry))));
    }
    if attempt.get("cut_short_by_crash") == Some(&Value::Bool(true)) {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str("cut short: the process running it stopped");
    }
    vec![
        String::new(),
        paint(
            DIM,
            &format!(
                "attempt {}",
                attempt.get("attempt").and_then(Value::as_u64).unwrap_or(0)
            ),
        ),
        String::new(),
        paint(state_style(outcome), outcome),
        String::new(),
        took,
        detail,
    ]
}

fn run_events(out: &mut String, d: &Value) {
    let events = d
        .get("timeline")
        .and_then(|t| t.get("run_events"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if events.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", paint(BOLD, "events"));
    for event in events {
        let what = event.get("what").unwrap_or(&Value::Null);
        let line = match text(what, "event") {
            Some("operator") => {
                let action = what.get("action").unwrap_or(&Value::Null);
                format!(
                    "{} by {}{}",
                    text(action, "action").unwrap_or("?"),
                    safe(text(what, "actor").unwrap_or("?")),
                    details(action, &["action"])
                )
            }
            Some(kind) => format!("{kind}{}", details(what, &["event"])),
            None => safe(&what.to_string()),
        };
        let _ = writeln!(
            out,
            "  {}  {}",
            paint(DIM, &output::time(ms(event, "at_ms"))),
            line
        );
    }
}

/// An object's other fields as `: key value, ...`.
fn details(value: &Value, skip: &[&str]) -> String {
    let Some(object) = value.as_object() else {
        return String::new();
    };
    let parts: Vec<String> = object
        .iter()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key} {}", safe(text)),
            other => format!("{key} {}", safe(&other.to_string())),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

fn signals(out: &mut String, d: &Value, payloads: bool) {
    let pending = d
        .get("pending_signals")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if pending.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", paint(BOLD, "pending signals"));
    for signal in pending {
        let _ = writeln!(
            out,
            "  {}{}",
            safe(text(signal, "name").unwrap_or("?")),
            if payloads {
                format!(
                    " = {}",
                    signal.get("payload").map(payload).unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
    }
}

/// The children, as a tree (each child described in turn, a few levels deep).
async fn children(out: &mut String, backend: &dyn Backend, d: &Value) -> Result<(), CliError> {
    let direct = d
        .get("children")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if direct.is_empty() {
        return Ok(());
    }
    let _ = writeln!(out, "\n{}", paint(BOLD, "children"));
    // Depth-first, iteratively: (child summary, depth, prefix of its line).
    let mut stack: Vec<(Value, usize, String, bool)> = Vec::new();
    let count = direct.len();
    for (index, child) in direct.into_iter().enumerate().rev() {
        stack.push((child, 1, String::new(), index + 1 == count));
    }
    let mut shown = 0;
    while let Some((child, depth, prefix, last)) = stack.pop() {
        if shown == TREE_NODES {
            let _ = writeln!(out, "  {}", paint(DIM, "… (more children not shown)"));
            break;
        }
        shown += 1;
        let id = text(&child, "workflow_id").unwrap_or("?").to_string();
        let state = text(&child, "state").unwrap_or("gone");
        let step = child
            .get("step")
            .and_then(Value::as_u64)
            .map(|s| format!(" (step {s})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {prefix}{} {}  {}  {}{step}",
            if last { "└─" } else { "├─" },
            safe(&id),
            safe(text(&child, "workflow_name").unwrap_or("?")),
            paint(state_style(state), state),
        );
        if depth >= TREE_DEPTH {
            continue;
        }
        let grandchildren = match backend.describe(&id).await {
            Ok(description) => description
                .get("children")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
        let count = grandchildren.len();
        for (index, grandchild) in grandchildren.into_iter().enumerate().rev() {
            stack.push((grandchild, depth + 1, prefix.clone(), index + 1 == count));
        }
    }
    Ok(())
}
