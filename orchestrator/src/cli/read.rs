//! The reading verbs: `list`, `show`, `watch`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::args::{ListArgs, ShowArgs, WatchArgs};
use super::backend::{Backend, Watched};
use super::exit::{CliError, Exit};
use super::filters;
use super::output::{self, DIM, paint, safe, state_style, table};

/// The states in which a run is over (a watch of it ends).
const FINISHED: &[&str] = &[
    "completed",
    "failed",
    "cancelled",
    "compensation_failed",
    "terminated",
];

/// `list`.
pub(crate) async fn list(
    backend: &dyn Backend,
    args: &ListArgs,
    json: bool,
) -> Result<Exit, CliError> {
    if args.limit == 0 || args.limit > crate::admin::runs::MAX_PAGE {
        return Err(CliError::usage("--limit is a number from 1 to 1000"));
    }
    let mut pairs = filters::pairs(&args.filters, crate::clock::now_ms())?;
    pairs.push(("limit".to_string(), args.limit.to_string()));
    let mut after = args.after.clone();
    let mut runs: Vec<Value> = Vec::new();
    let next = loop {
        let mut page_pairs = pairs.clone();
        if let Some(after) = &after {
            page_pairs.push(("after".to_string(), after.clone()));
        }
        let page = backend.list(&page_pairs).await?;
        runs.extend(
            page.get("runs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        let next = page.get("next").and_then(Value::as_str).map(str::to_string);
        match next {
            Some(next) if args.all => after = Some(next),
            next => break next,
        }
    };
    if json {
        output::print_json(&json!({ "runs": runs, "next": next }));
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        output::print(&format!("{}\n", paint(DIM, "no runs match")));
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = runs.iter().map(run_row).collect();
    let mut text = table(&["ID", "TYPE", "STATE", "UPDATED", "OUTCOME"], &rows);
    if let Some(next) = next {
        text.push_str(&paint(
            DIM,
            &format!("(more runs: add --after '{}', or --all)\n", safe(&next)),
        ));
    }
    output::print(&text);
    Ok(Exit::Ok)
}

/// A run's summary as a table row.
fn run_row(run: &Value) -> Vec<String> {
    let text = |key: &str| run.get(key).and_then(Value::as_str).unwrap_or("");
    let state = text("state");
    let mut state_cell = paint(state_style(state), state);
    if run.get("paused").is_some_and(|p| !p.is_null()) {
        state_cell.push_str(&paint(state_style("paused"), " (paused)"));
    }
    vec![
        safe(text("workflow_id")),
        safe(text("workflow_name")),
        state_cell,
        output::time(run.get("updated_at_ms").and_then(Value::as_i64)),
        safe(text("outcome")),
    ]
}

/// `show ID`.
pub(crate) async fn show(
    backend: &dyn Backend,
    args: &ShowArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let description = backend.describe(&args.id).await?;
    if json {
        output::print_json(&description);
    } else {
        output::print(&super::show::render(backend, &description, args.payloads).await?);
    }
    Ok(Exit::Ok)
}

/// `watch [ID]`.
pub(crate) async fn watch(
    backend: &dyn Backend,
    args: &WatchArgs,
    json: bool,
) -> Result<Exit, CliError> {
    let watched = match &args.id {
        Some(id) => {
            if !args.filters.is_empty() {
                return Err(CliError::usage(
                    "filters apply to the run list: give either an id or filters",
                ));
            }
            Watched::Run(id.clone())
        }
        None => Watched::List(filters::pairs(&args.filters, crate::clock::now_ms())?),
    };
    let mut seen = 0u64;
    let mut known: HashMap<String, String> = HashMap::new();
    let mut first = true;
    let mut sink = |name: &str, data: Value| -> Result<bool, CliError> {
        seen += 1;
        let finished = name == "run"
            && data
                .get("state")
                .and_then(Value::as_str)
                .is_some_and(|state| FINISHED.contains(&state));
        if json {
            output::print_json_line(&json!({ "event": name, "data": data }));
        } else {
            let text = match name {
                "run" => run_line(&data),
                "runs" => list_lines(&data, &mut known, first),
                "gone" => "the run is gone (deleted)\n".to_string(),
                "error" => format!(
                    "{} {}\n",
                    paint(output::RED, "error:"),
                    safe(
                        data.pointer("/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                    )
                ),
                other => format!("{}: {}\n", safe(other), safe(&data.to_string())),
            };
            output::print(&text);
        }
        first = false;
        Ok(!finished && args.count.is_none_or(|count| seen < count))
    };
    let interval = Duration::from_millis(args.interval);
    tokio::select! {
        result = backend.watch(&watched, interval, &mut sink) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(Exit::Ok)
}

/// One line per change of a watched run: time, state, last step, blocked-on line.
fn run_line(d: &Value) -> String {
    let state = d.get("state").and_then(Value::as_str).unwrap_or("?");
    let step = d
        .pointer("/timeline/steps")
        .and_then(Value::as_array)
        .and_then(|steps| steps.last())
        .map(|step| {
            format!(
                "step {} {} {}",
                step.get("step").and_then(Value::as_u64).unwrap_or(0),
                safe(
                    step.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(step.get("kind").and_then(Value::as_str).unwrap_or("?"))
                ),
                step.get("status").and_then(Value::as_str).unwrap_or("?"),
            )
        })
        .unwrap_or_else(|| "no steps yet".to_string());
    format!(
        "{}  {}  {}  {}\n",
        paint(DIM, &output::time(Some(crate::clock::now_ms()))),
        paint(state_style(state), state),
        step,
        safe(
            d.get("blocked_on_text")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
    )
}

/// What changed in a watched run list: new runs and state changes (everything, the first time).
fn list_lines(page: &Value, known: &mut HashMap<String, String>, first: bool) -> String {
    let mut out = String::new();
    for run in page
        .get("runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = run
            .get("workflow_id")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let state = run.get("state").and_then(Value::as_str).unwrap_or("?");
        let name = run
            .get("workflow_name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        match known.insert(id.to_string(), state.to_string()) {
            None => out.push_str(&format!(
                "{} {}  {}  {}\n",
                if first { " " } else { "+" },
                safe(id),
                safe(name),
                paint(state_style(state), state)
            )),
            Some(before) if before != state => out.push_str(&format!(
                "~ {}  {} → {}\n",
                safe(id),
                paint(state_style(&before), &before),
                paint(state_style(state), state)
            )),
            Some(_) => {}
        }
    }
    if first && out.is_empty() {
        out.push_str(&paint(DIM, "no runs match (yet)\n"));
    }
    out
}
