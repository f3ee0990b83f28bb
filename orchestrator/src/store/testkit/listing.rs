//! Listing runs: filters, cursor pagination and the page size limit.

use std::sync::Arc;

use futures::future::try_join_all;

use super::support::Ck;
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{RunPage, RunQuery, RunState, StatusChange, Store};

/// Runs one query and returns the page.
async fn list(ck: &Ck, what: &str, query: &RunQuery) -> Result<RunPage, ConformanceFailure> {
    ck.ok(format!("list_runs({what})"), ck.store.list_runs(query))
        .await
}

/// Follows `next` from `query` until the last page; checks every page's size; returns the ids in the
/// order received.
async fn walk(
    ck: &Ck,
    what: &str,
    query: RunQuery,
    total: usize,
) -> Result<Vec<String>, ConformanceFailure> {
    let limit = query.limit;
    let most_pages = total / limit.max(1) + 2;
    let mut ids = Vec::new();
    let mut query = query;
    for page_no in 0..=most_pages {
        let page = list(ck, what, &query).await?;
        ck.ensure(
            page.runs.len() <= limit,
            format!("size of page {page_no} of {what}"),
            format!("at most {limit} runs"),
            page.runs.len(),
        )?;
        ids.extend(page.runs.iter().map(|run| run.workflow_id.clone()));
        match page.next {
            None => return Ok(ids),
            Some(next) => {
                ck.ensure(
                    !page.runs.is_empty(),
                    format!("page {page_no} of {what}"),
                    "a page with a `next` cursor holds runs",
                    "an empty page with a `next` cursor",
                )?;
                query.after = Some(next);
            }
        }
    }
    Err(ck.violation(
        format!("pagination of {what}"),
        format!("the last page (next: None) within {most_pages} pages of {limit} for {total} runs"),
        "more pages",
    ))
}

/// Sorted the way `list_runs` must order runs: by workflow id, compared as bytes.
fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// **Contract:** `list_runs` returns the runs matching every filter of the query — workflow name,
/// any of the states, workflow id prefix (taken literally: `_` and `%` are not wildcards; the empty
/// prefix matches all) — ordered by workflow id compared as bytes (Rust's `str` order; SQL
/// `COLLATE "C"`), as full records equal to what `run` returns. No match is an empty page with no
/// `next`.
pub async fn list_runs_filters(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("list_runs_filters", store);
    let runs: [(&str, &str, Option<StatusChange>); 11] = [
        ("alpha/1", "alpha", None),
        (
            "alpha/2",
            "alpha",
            Some(StatusChange::Complete {
                output: b"out".to_vec(),
            }),
        ),
        (
            "alpha/3",
            "alpha",
            Some(StatusChange::Fail {
                error: b"err".to_vec(),
            }),
        ),
        ("beta/1", "beta", None),
        (
            "beta/2",
            "beta",
            Some(StatusChange::Park {
                reason: b"op".to_vec(),
            }),
        ),
        (
            "beta/3",
            "beta",
            Some(StatusChange::Cancel {
                error: b"c".to_vec(),
            }),
        ),
        (
            "gamma/1",
            "alpha",
            Some(StatusChange::CompensationFail {
                error: b"r".to_vec(),
            }),
        ),
        ("p_x", "beta", None),
        ("p%y", "beta", None),
        ("pQx", "beta", None),
        ("Zulu", "beta", None),
    ];
    for (id, name, status) in &runs {
        ck.create(id, name).await?;
        if let Some(status) = status {
            ck.set_status(id, status.clone()).await?;
        }
    }
    let all: Vec<String> = sorted(runs.iter().map(|(id, _, _)| (*id).to_string()).collect());
    let cases: Vec<(&str, RunQuery, Vec<&str>)> = vec![
        (
            "no filter",
            RunQuery::new(),
            all.iter().map(String::as_str).collect(),
        ),
        (
            "workflow_name alpha",
            RunQuery::new().workflow_name("alpha"),
            vec!["alpha/1", "alpha/2", "alpha/3", "gamma/1"],
        ),
        (
            "state Running",
            RunQuery::new().state(RunState::Running),
            vec!["Zulu", "alpha/1", "beta/1", "p%y", "pQx", "p_x"],
        ),
        (
            "states Parked or Cancelled",
            RunQuery::new()
                .state(RunState::Parked)
                .state(RunState::Cancelled),
            vec!["beta/2", "beta/3"],
        ),
        (
            "state CompensationFailed",
            RunQuery::new().state(RunState::CompensationFailed),
            vec!["gamma/1"],
        ),
        (
            "workflow_name beta and state Running",
            RunQuery::new()
                .workflow_name("beta")
                .state(RunState::Running),
            vec!["Zulu", "beta/1", "p%y", "pQx", "p_x"],
        ),
        (
            "id_prefix alpha/",
            RunQuery::new().id_prefix("alpha/"),
            vec!["alpha/1", "alpha/2", "alpha/3"],
        ),
        (
            "id_prefix p_ (literal)",
            RunQuery::new().id_prefix("p_"),
            vec!["p_x"],
        ),
        (
            "id_prefix p% (literal)",
            RunQuery::new().id_prefix("p%"),
            vec!["p%y"],
        ),
        (
            "the empty id_prefix",
            RunQuery::new().id_prefix(""),
            all.iter().map(String::as_str).collect(),
        ),
        (
            "workflow_name alpha, states Completed or Failed, id_prefix alpha/",
            RunQuery::new()
                .workflow_name("alpha")
                .state(RunState::Completed)
                .state(RunState::Failed)
                .id_prefix("alpha/"),
            vec!["alpha/2", "alpha/3"],
        ),
        (
            "workflow_name nope",
            RunQuery::new().workflow_name("nope"),
            Vec::new(),
        ),
        (
            "state Completed, id_prefix beta",
            RunQuery::new().state(RunState::Completed).id_prefix("beta"),
            Vec::new(),
        ),
    ];
    for (what, query, expected) in cases {
        let page = list(&ck, what, &query).await?;
        let found: Vec<&str> = page
            .runs
            .iter()
            .map(|run| run.workflow_id.as_str())
            .collect();
        ck.eq(
            format!("workflow ids listed for {what} (ordered by id as bytes)"),
            &expected,
            &found,
        )?;
        ck.eq(
            format!("`next` of the only page for {what}"),
            &None,
            &page.next,
        )?;
        for run in &page.runs {
            let stored = ck.record(&run.workflow_id).await?;
            ck.eq(
                format!("the record of `{}` listed for {what}", run.workflow_id),
                &stored,
                run,
            )?;
        }
    }
    Ok(CheckOutcome::Passed)
}

/// **Contract:** following `RunPage::next` (as `RunQuery::after`) from the first page visits every
/// matching run exactly once, in workflow id order, whatever the page size and filters: no page holds
/// more than the limit, a page with a `next` is not empty, and the walk ends with `next: None`. A
/// cursor need not be an existing id: the page starts after it; after the last id the page is empty.
pub async fn list_runs_pagination(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("list_runs_pagination", store);
    let count = 57usize;
    // Created in an order unlike the id order, so a store cannot get away with insertion order.
    let mut ids = Vec::new();
    for i in 0..count {
        let n = (i * 22) % count;
        let id = format!("page/{n:03}");
        ck.create(&id, "paged").await?;
        if n.is_multiple_of(3) {
            ck.set_status(
                &id,
                StatusChange::Complete {
                    output: b"out".to_vec(),
                },
            )
            .await?;
        }
        ids.push(id);
    }
    let all = sorted(ids);
    for limit in [1, 7, 10, 56, 57, 100] {
        let what = format!("all runs, {limit} per page");
        let found = walk(&ck, &what, RunQuery::new().limit(limit), count).await?;
        ck.eq(
            format!("workflow ids visited by paging {what}"),
            &all,
            &found,
        )?;
    }
    let completed: Vec<String> = all
        .iter()
        .filter(|id| id[5..].parse::<usize>().is_ok_and(|n| n.is_multiple_of(3)))
        .cloned()
        .collect();
    let found = walk(
        &ck,
        "completed runs, 4 per page",
        RunQuery::new().state(RunState::Completed).limit(4),
        count,
    )
    .await?;
    ck.eq(
        "workflow ids visited by paging completed runs",
        &completed,
        &found,
    )?;
    let found = walk(
        &ck,
        "id_prefix page/01, 3 per page",
        RunQuery::new().id_prefix("page/01").limit(3),
        count,
    )
    .await?;
    let tens: Vec<String> = (10..20).map(|n| format!("page/{n:03}")).collect();
    ck.eq(
        "workflow ids visited by paging id_prefix page/01",
        &tens,
        &found,
    )?;

    let page = list(
        &ck,
        "after page/0305",
        &RunQuery::new().after("page/0305").limit(2),
    )
    .await?;
    let found: Vec<&str> = page
        .runs
        .iter()
        .map(|run| run.workflow_id.as_str())
        .collect();
    ck.eq(
        "runs after the cursor page/0305 (not an id)",
        &vec!["page/031", "page/032"],
        &found,
    )?;
    let page = list(&ck, "after page/056", &RunQuery::new().after("page/056")).await?;
    ck.eq("runs after the last id", &Vec::new(), &page.runs)?;
    ck.eq("`next` after the last id", &None, &page.next)?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** the page size is clamped to 1..=1,000 by the store, whatever the query's `limit`
/// field holds: `limit: 0` returns one run (and a `next`), a limit above 1,000 returns 1,000 runs
/// (and a `next`) out of 1,001.
pub async fn list_runs_limit_clamped(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("list_runs_limit_clamped", store);
    let total = 1_001usize;
    let ids: Vec<String> = (0..total).map(|n| format!("bulk/{n:04}")).collect();
    for chunk in ids.chunks(64) {
        try_join_all(chunk.iter().map(|id| ck.create(id, "bulk"))).await?;
    }
    let mut zero = RunQuery::new();
    zero.limit = 0;
    let page = list(&ck, "limit 0", &zero).await?;
    ck.eq(
        "the number of runs in a page with limit 0",
        &1,
        &page.runs.len(),
    )?;
    ck.ensure(
        page.next.is_some(),
        "`next` of a page with limit 0",
        "Some(cursor)",
        "None",
    )?;
    let mut huge = RunQuery::new();
    huge.limit = 5_000;
    let page = list(&ck, "limit 5,000", &huge).await?;
    ck.eq(
        "the number of runs in a page with limit 5,000",
        &1_000,
        &page.runs.len(),
    )?;
    let found: Vec<&str> = page
        .runs
        .iter()
        .map(|run| run.workflow_id.as_str())
        .collect();
    let expected: Vec<&str> = ids[..1_000].iter().map(String::as_str).collect();
    ck.ensure(
        found == expected,
        "the runs of a page with limit 5,000",
        "bulk/0000 to bulk/0999 in order",
        format!("{} runs, not those", found.len()),
    )?;
    ck.ensure(
        page.next.is_some(),
        "`next` of a page with limit 5,000",
        "Some(cursor)",
        "None",
    )?;
    let mut rest = RunQuery::new();
    rest.limit = 5_000;
    rest.after = page.next;
    let page = list(&ck, "limit 5,000, second page", &rest).await?;
    let found: Vec<&str> = page
        .runs
        .iter()
        .map(|run| run.workflow_id.as_str())
        .collect();
    ck.eq(
        "the second page with limit 5,000",
        &vec!["bulk/1000"],
        &found,
    )?;
    Ok(CheckOutcome::Passed)
}
