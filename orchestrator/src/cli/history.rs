//! Histories: `export ID`, `import FILE...`, `replay-check [FILE...] [--id ID...] [filters]`.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::args::{ExportArgs, ImportArgs, ReplayCheckArgs};
use super::backend::Backend;
use super::exit::{CliError, Exit};
use super::filters;
use super::output::{self, GREEN, RED, paint, safe};
use crate::export::{MAX_EXPORT_BYTES, RunExport};

/// `export ID [-o FILE]`: the export document on standard output, or in FILE.
pub(crate) async fn export(
    backend: &dyn Backend,
    args: &ExportArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let document = backend.export(&args.id).await?;
    let text = serde_json::to_string_pretty(&document)
        .map_err(|error| CliError::internal(format!("cannot write the export: {error}")))?;
    match &args.output {
        None => output::print(&format!("{text}\n")),
        Some(path) => {
            std::fs::write(path, format!("{text}\n")).map_err(|error| {
                CliError::new(
                    Exit::Usage,
                    "cannot_write",
                    format!("cannot write `{}`: {error}", path.display()),
                )
            })?;
            let events = document["events"].as_array().map_or(0, Vec::len);
            if json {
                output::print_json(&json!({
                    "workflow_id": args.id, "file": path.display().to_string(), "events": events,
                }));
            } else {
                output::print(&format!(
                    "{} exported {} to {} ({events} journal events)\n",
                    paint(GREEN, "✓"),
                    safe(&args.id),
                    safe(&path.display().to_string())
                ));
            }
        }
    }
    Ok(Exit::Ok)
}

/// Reads an export file (`-`: standard input), bounded, and checks it with the export parser.
fn read_export(path: &Path) -> Result<(RunExport, Value), CliError> {
    let name = path.display().to_string();
    let unreadable = |error: std::io::Error| {
        CliError::new(
            Exit::Usage,
            "cannot_read",
            format!("cannot read `{}`: {error}", safe(&name)),
        )
    };
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_EXPORT_BYTES).unwrap_or(u64::MAX) + 1;
    if name == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
    } else {
        std::fs::File::open(path)
            .map_err(unreadable)?
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
    }
    let export = RunExport::from_json(&bytes).map_err(|error| {
        CliError::new(
            Exit::Usage,
            "bad_export",
            format!("`{}`: {error}", safe(&name)),
        )
        .hint("give a file written by `orchestrator export` (or Engine::export_run)")
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|error| {
        CliError::new(
            Exit::Usage,
            "bad_export",
            format!("`{}`: {error}", safe(&name)),
        )
    })?;
    Ok((export, value))
}

/// `import FILE... [--id-prefix P]`: each history recreated (an unfinished run paused).
pub(crate) async fn import(
    backend: &dyn Backend,
    args: &ImportArgs,
    json: bool,
) -> Result<Exit, CliError> {
    // Every file is checked before anything is imported.
    let mut documents = Vec::with_capacity(args.files.len());
    for path in &args.files {
        documents.push(read_export(path)?);
    }
    let mut imported = Vec::new();
    for (export, value) in documents {
        let mut body = Map::new();
        body.insert("export".to_string(), value);
        if let Some(prefix) = &args.id_prefix {
            body.insert(
                "new_id".to_string(),
                Value::String(format!("{prefix}{}", export.run.workflow_id)),
            );
        }
        let answer = backend.import(body).await?;
        let id = answer["workflow_id"].as_str().unwrap_or("?").to_string();
        if !json {
            output::print(&format!(
                "{} imported {} ({}, {} journal events){}\n",
                paint(GREEN, "✓"),
                safe(&id),
                safe(&export.run.workflow_name),
                export.events.len(),
                if export.run.status.is_finished() {
                    ""
                } else {
                    " paused: resume it to drive it"
                }
            ));
        }
        imported.push(answer);
    }
    if json {
        output::print_json(&json!({ "imported": imported }));
    }
    Ok(Exit::Ok)
}

/// `replay-check`: exit 0 when every history replays, 1 when one does not.
pub(crate) async fn replay_check(
    backend: &dyn Backend,
    args: &ReplayCheckArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let given = [
        !args.files.is_empty(),
        !args.ids.is_empty(),
        !args.filters.is_empty(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(CliError::usage(
            "replay-check takes exported files, or --id, or filters: one kind at a time",
        ));
    }
    let mut body = Map::new();
    if !args.files.is_empty() {
        let mut exports = Vec::with_capacity(args.files.len());
        for path in &args.files {
            exports.push(read_export(path)?.1);
        }
        body.insert("exports".to_string(), Value::Array(exports));
    } else if !args.ids.is_empty() {
        body.insert(
            "ids".to_string(),
            Value::Array(args.ids.iter().cloned().map(Value::String).collect()),
        );
    } else {
        let mut fields = Map::new();
        for (key, value) in filters::pairs(&args.filters, crate::clock::now_ms())? {
            match fields.get_mut(&key) {
                Some(Value::Array(values)) => values.push(Value::String(value)),
                _ if key == "status" => {
                    fields.insert(key, Value::Array(vec![Value::String(value)]));
                }
                _ => {
                    fields.insert(key, Value::String(value));
                }
            }
        }
        body.insert("where".to_string(), Value::Object(fields));
    }
    let report = backend.replay_check(body).await?;
    let ok = report["ok"].as_bool().unwrap_or(false);
    if json {
        output::print_json(&report);
    } else {
        output::print(&render(&report));
    }
    Ok(if ok { Exit::Ok } else { Exit::Finding })
}

/// A replay report as text: a summary, then one line per run.
fn render(report: &Value) -> String {
    let runs = report["runs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = format!(
        "replayed {} histories in {} ms: {} replay, {} do not ({} nondeterministic)\n",
        runs.len(),
        report["elapsed_ms"].as_u64().unwrap_or(0),
        runs.len()
            .saturating_sub(report["failing"].as_u64().unwrap_or(0) as usize),
        report["failing"].as_u64().unwrap_or(0),
        report["nondeterministic"].as_u64().unwrap_or(0),
    );
    for run in runs {
        let id = safe(run["workflow_id"].as_str().unwrap_or("?"));
        let name = safe(run["workflow_name"].as_str().unwrap_or("?"));
        let outcome = &run["outcome"];
        let text = |key: &str| safe(outcome[key].as_str().unwrap_or(""));
        let line = match outcome["outcome"].as_str().unwrap_or("?") {
            "ok" => format!(
                "{} {id} ({name}): replays{}",
                paint(GREEN, "✓"),
                if outcome["finished"] == Value::Bool(true) {
                    ""
                } else {
                    " (unfinished: continues live)"
                }
            ),
            "non_determinism" => format!(
                "{} {id} ({name}): nondeterminism at step {}: the history recorded {}, the code now asks for {}",
                paint(RED, "✗"),
                outcome["step"].as_u64().unwrap_or(0),
                text("recorded"),
                text("new_call"),
            ),
            "unknown_workflow_type" => format!(
                "{} {id}: workflow type `{}` is not registered with this code",
                paint(RED, "✗"),
                text("name")
            ),
            other => format!(
                "{} {id} ({name}): {}: {}",
                paint(RED, "✗"),
                safe(other),
                text("message")
            ),
        };
        out.push_str(&line);
        out.push('\n');
        for patch in run["patches"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    patch `{}` at step {}: {}\n",
                safe(patch["change_id"].as_str().unwrap_or("?")),
                patch["step"].as_u64().unwrap_or(0),
                safe(patch["branch"].as_str().unwrap_or("?")),
            ));
        }
    }
    out
}
