//! The testing toolkit (`orchestrator::testing`, feature `testing`): a test engine on virtual time,
//! activity mocks and history assertions, driven through the public API.
//!
//! Checked here:
//! - a 30-day sleep, 3 failed attempts with 1-hour backoffs and a 7-day signal timeout complete in
//!   virtual time, in well under a second of real time, and the history shows each wait at its own
//!   virtual time;
//! - the same seed gives byte-identical histories (timestamps, random values, UUIDs, jittered
//!   backoffs) in two separate runtimes; another seed gives another history;
//! - mocks replace activities by type and by name, script failures, count calls and record inputs;
//!   removing a mock runs the real activity again;
//! - manual time control: `next_wakeup`, `advance` stopping at each wake-up, `run_until_blocked`;
//!   a paused run's due wake-up does not hold back the others; a chosen start instant (one in the
//!   past is refused);
//! - a signal sent at a chosen virtual time, and the state a workflow published;
//! - compensations' order in the history;
//! - a multi-thread runtime is refused with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::export::RunExport;
use orchestrator::inspect::{StepKind, StepStatus};
use orchestrator::prelude::*;
use orchestrator::testing::TestEngine;

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

#[activity(retry(max_attempts = 4, backoff = "1h..1h", jitter = 0.0))]
async fn charge(cents: u64) -> Result<String, ActivityError> {
    Err(ActivityError::non_retryable(format!(
        "the real `charge` must not run in these tests ({cents})"
    )))
}

#[activity]
async fn notify(message: String) -> Result<u32, ActivityError> {
    Ok(u32::try_from(message.len()).unwrap_or(u32::MAX))
}

/// Sleeps 30 days, charges (retried hourly), then waits a week for `confirm`.
#[workflow]
async fn subscription(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    ctx.sleep(30 * DAY).await?;
    let receipt = ctx.call(charge, cents).await?;
    let confirmed = ctx
        .signal::<bool>("confirm")
        .timeout(7 * DAY)
        .await
        .unwrap_or(false);
    Ok(format!("{receipt} confirmed={confirmed}"))
}

#[tokio::test(start_paused = true)]
async fn long_waits_finish_in_virtual_time() {
    let wall = Instant::now();
    let test = TestEngine::builder()
        .register(subscription)
        .register(charge)
        .start()
        .await
        .unwrap();
    let mock = test
        .mock(
            charge,
            |cents| async move { Ok(format!("receipt-{cents}")) },
        )
        .fail_times(3, || ActivityError::retryable("gateway down"));
    let started = test.now_ms();
    let run = test.start(subscription, "sub-1", 999).await.unwrap();
    let output = run.result().await.unwrap();
    let real = wall.elapsed();

    assert_eq!(output, "receipt-999 confirmed=false");
    assert_eq!(mock.calls(), 4, "three failures, then success");
    let virtual_elapsed = test.now_ms() - started;
    let expected = (30 * DAY + 3 * HOUR + 7 * DAY).as_millis() as i64;
    assert!(
        virtual_elapsed >= expected,
        "virtual time moved {virtual_elapsed} ms, expected at least {expected}"
    );
    assert!(
        real < Duration::from_secs(1),
        "37 virtual days took {real:?} of real time"
    );
    eprintln!("37 virtual days in {real:?} of real time");

    let history = test.history("sub-1").await.unwrap();
    assert_eq!(
        history.kinds(),
        vec![StepKind::Timer, StepKind::Activity, StepKind::Signal]
    );
    assert_eq!(history.timer(1), 30 * DAY);
    assert_eq!(history.attempts(2), 4, "{}", history.summary());
    let attempts = &history.step(2).attempts;
    for pair in attempts.windows(2) {
        let (Some(a), Some(b)) = (pair[0].started_at_ms, pair[1].started_at_ms) else {
            panic!("attempt starts are journaled: {attempts:?}");
        };
        assert_eq!(
            b - a,
            HOUR.as_millis() as i64,
            "hourly backoff: {attempts:?}"
        );
    }
    let signal = history.step(3);
    assert_eq!(signal.status, StepStatus::Failed, "the wait timed out");
    assert_eq!(
        signal.deadline_ms.unwrap() - signal.started_at_ms.unwrap(),
        (7 * DAY).as_millis() as i64
    );
    test.shutdown().await;
}

#[activity(retry(max_attempts = 3, backoff = "1m..10m"))]
async fn jittery(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[workflow]
async fn noisy(ctx: WorkflowContext, n: u64) -> Result<(u64, String), WorkflowError> {
    let random = ctx.random_u64();
    let id = ctx.uuid();
    ctx.sleep(Duration::from_secs(random % 10_000)).await?;
    let value = ctx.call(jittery, n).await?;
    Ok((value ^ random, id.to_string()))
}

/// Runs `noisy` under a fresh runtime with `seed`; returns its export with the export's own
/// timestamp cleared.
fn noisy_history(seed: u64) -> RunExport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let test = TestEngine::builder()
            .register(noisy)
            .register(jittery)
            .seed(seed)
            .start()
            .await
            .unwrap();
        let _flaky = test
            .mock(jittery, |n| async move { Ok(n + 1) })
            .fail_times(2, || ActivityError::retryable("flaky"));
        let run = test.start(noisy, "noisy-1", 5).await.unwrap();
        run.result().await.unwrap();
        let mut export = test.export_run("noisy-1").await.unwrap();
        export.exported_at_ms = 0;
        test.shutdown().await;
        export
    })
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let first = noisy_history(42);
    let second = noisy_history(42);
    assert!(first.events.len() >= 6, "{:#?}", first.events);
    assert_eq!(first.events, second.events, "events, payloads and times");
    assert_eq!(first.run.output, second.run.output);
    assert_eq!(first.run.created_at_ms, second.run.created_at_ms);
    let other = noisy_history(43);
    assert_ne!(
        first.run.output, other.run.output,
        "another seed draws other random values"
    );
}

#[tokio::test(start_paused = true)]
async fn mocks_replace_activities_and_count_calls() {
    #[workflow]
    async fn greet(ctx: WorkflowContext, names: Vec<String>) -> Result<u32, WorkflowError> {
        let mut total = 0;
        for name in names {
            total += ctx.call(notify, format!("hello {name}")).await?;
        }
        Ok(total)
    }

    let test = TestEngine::builder()
        .register(greet)
        .register(notify)
        .start()
        .await
        .unwrap();
    // By type: typed input and output.
    let mock = test.mock(notify, |message: String| async move {
        assert!(message.starts_with("hello "));
        Ok(100)
    });
    let names = vec!["ann".to_string(), "bob".to_string()];
    let run = test.start(greet, "g-1", names).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 200);
    assert_eq!(mock.calls(), 2);
    assert_eq!(mock.inputs(), vec!["hello ann", "hello bob"]);
    let log = mock.call_log();
    assert_eq!(
        (log[0].step, log[1].step, log[0].attempt),
        (1, 2, 1),
        "{log:?}"
    );
    assert_eq!(log[0].workflow_id, "g-1");

    // By name, on bytes, with scripted non-retryable failure: the workflow fails with it.
    let raw = test
        .mock_by_name("notify", |_bytes| async move {
            Err(ActivityError::non_retryable(
                "unreachable: failure scripted",
            ))
        })
        .fail_times(1, || ActivityError::failure("blocked", "recipient blocked"));
    let run = test
        .start(greet, "g-2", vec!["eve".to_string()])
        .await
        .unwrap();
    let error = run.result().await.unwrap_err();
    assert_eq!(error.failure_code(), Some("blocked"), "{error}");
    assert_eq!(raw.calls(), 1);
    assert_eq!(mock.calls(), 2, "the replaced mock is no longer called");

    // Unmocked: the real activity runs.
    assert!(test.unmock("notify"));
    assert!(!test.unmock("notify"));
    let run = test
        .start(greet, "g-3", vec!["x".to_string()])
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), 7, "len(\"hello x\")");
    test.shutdown().await;
}

#[workflow]
async fn two_naps(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.sleep(HOUR).await?;
    ctx.sleep(HOUR).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn time_moves_by_hand() {
    let test = TestEngine::builder()
        .register(two_naps)
        .start()
        .await
        .unwrap();
    let t0 = test.now_ms();
    let hour = HOUR.as_millis() as i64;
    test.start(two_naps, "naps", ()).await.unwrap();
    test.run_until_blocked().await;
    assert_eq!(
        test.now_ms(),
        t0,
        "running until blocked does not move time"
    );
    assert_eq!(test.next_wakeup().await.unwrap(), Some(t0 + hour));

    test.advance(HOUR / 2).await.unwrap();
    assert_eq!(test.now_ms(), t0 + hour / 2);
    let history = test.history("naps").await.unwrap();
    assert_eq!(history.step(1).status, StepStatus::Waiting);

    // Crossing the first timer: it fires at its own time, the second starts from there.
    test.advance(HOUR).await.unwrap();
    assert_eq!(test.now_ms(), t0 + hour + hour / 2);
    let history = test.history("naps").await.unwrap();
    assert_eq!(history.step(1).status, StepStatus::Completed);
    assert_eq!(history.step(2).started_at_ms, Some(t0 + hour));
    assert_eq!(test.next_wakeup().await.unwrap(), Some(t0 + 2 * hour));

    assert_eq!(
        test.advance_to_next_wakeup().await.unwrap(),
        Some(t0 + 2 * hour)
    );
    assert_eq!(test.status("naps").await.unwrap(), RunStatus::Completed);
    assert_eq!(test.next_wakeup().await.unwrap(), None);
    assert_eq!(test.advance_to_next_wakeup().await.unwrap(), None);
    test.shutdown().await;
}

#[workflow]
async fn review(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.set_state("stage", &"waiting".to_string())?;
    let verdict: String = ctx.signal("verdict").timeout(7 * DAY).await?;
    ctx.set_state("stage", &format!("decided: {verdict}"))?;
    Ok(verdict)
}

#[tokio::test(start_paused = true)]
async fn signals_at_a_virtual_time_and_published_state() {
    let test = TestEngine::builder()
        .register(review)
        .start()
        .await
        .unwrap();
    let t0 = test.now_ms();
    let run = test.start(review, "rev-1", ()).await.unwrap();
    test.run_until_blocked().await;
    assert_eq!(
        test.get_state::<String>("rev-1", "stage").await.unwrap(),
        Some("waiting".to_string())
    );
    test.signal_at(
        t0 + (2 * DAY).as_millis() as i64,
        "rev-1",
        "verdict",
        "approved".to_string(),
    )
    .await
    .unwrap();
    assert_eq!(run.result().await.unwrap(), "approved");
    assert_eq!(
        test.get_state::<String>("rev-1", "stage").await.unwrap(),
        Some("decided: approved".to_string())
    );
    let history = test.history("rev-1").await.unwrap();
    let signal = history
        .steps()
        .iter()
        .find(|entry| entry.kind == StepKind::Signal)
        .unwrap();
    assert_eq!(
        signal.ended_at_ms,
        Some(t0 + (2 * DAY).as_millis() as i64),
        "received two virtual days in"
    );
    test.shutdown().await;
}

#[activity]
async fn reserve(item: String) -> Result<String, ActivityError> {
    Ok(item)
}

#[activity]
async fn release(item: String) -> Result<(), ActivityError> {
    let _ = item;
    Ok(())
}

#[activity]
async fn ship(item: String) -> Result<(), ActivityError> {
    Err(ActivityError::non_retryable(format!("cannot ship {item}")))
}

#[workflow]
async fn order(ctx: WorkflowContext, items: Vec<String>) -> Result<(), WorkflowError> {
    for item in &items {
        let reserved = ctx.call(reserve, item.clone()).await?;
        ctx.compensate_with(release, reserved);
    }
    ctx.call(ship, items.join("+")).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn compensations_run_in_reverse_order() {
    let test = TestEngine::builder()
        .register(order)
        .register(reserve)
        .register(release)
        .register(ship)
        .start()
        .await
        .unwrap();
    let releases = test.mock(release, |_item| async move { Ok(()) });
    let run = test
        .start(order, "o-1", vec!["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    assert!(run.result().await.is_err());
    assert_eq!(
        releases.inputs(),
        vec!["b".to_string(), "a".to_string()],
        "last reserved, first released"
    );
    let history = test.history("o-1").await.unwrap();
    assert_eq!(
        history.activities(),
        vec!["reserve", "reserve", "ship", "release", "release"]
    );
    assert_eq!(history.compensations(), vec!["release", "release"]);
    assert_eq!(history.failed_steps(), vec![3]);
    test.shutdown().await;
}

#[test]
fn a_multi_thread_runtime_is_refused() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let error = runtime
        .block_on(TestEngine::builder().register(two_naps).start())
        .unwrap_err();
    assert!(error.to_string().contains("current-thread"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_start_instant_in_the_past_is_refused_and_one_ahead_is_used() {
    let error = TestEngine::builder()
        .register(two_naps)
        .start_at_ms(0)
        .start()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot start at 0 ms"),
        "{error}"
    );

    // 2100-01-01T00:00:00Z.
    let at = 4_102_444_800_000;
    let test = TestEngine::builder()
        .register(two_naps)
        .start_at_ms(at)
        .start()
        .await
        .unwrap();
    assert_eq!(test.now_ms(), at);
    let run = test.start(two_naps, "future", ()).await.unwrap();
    run.result().await.unwrap();
    assert_eq!(test.now_ms(), at + 2 * HOUR.as_millis() as i64);
    let history = test.history("future").await.unwrap();
    assert_eq!(history.step(1).started_at_ms, Some(at));
    test.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_run_does_not_hold_back_the_others() {
    let test = TestEngine::builder()
        .register(two_naps)
        .start()
        .await
        .unwrap();
    let t0 = test.now_ms();
    let hour = HOUR.as_millis() as i64;
    test.start(two_naps, "held", ()).await.unwrap();
    test.run_until_blocked().await;
    test.pause("held", "test", "hold it").await.unwrap();
    test.advance(HOUR / 2).await.unwrap();
    test.start(two_naps, "free", ()).await.unwrap();
    test.run_until_blocked().await;
    // The held run's first timer (t0 + 1h) passes while it is paused; the free run's wake-ups at
    // t0 + 1.5h and t0 + 2.5h still fire at their own times.
    test.advance(3 * HOUR).await.unwrap();
    let free = test.history("free").await.unwrap();
    assert_eq!(free.step(2).started_at_ms, Some(t0 + hour + hour / 2));
    assert_eq!(free.step(2).ended_at_ms, Some(t0 + 2 * hour + hour / 2));
    assert_eq!(test.status("free").await.unwrap(), RunStatus::Completed);
    assert!(matches!(
        test.status("held").await.unwrap(),
        RunStatus::Paused(_)
    ));
    test.resume("held", "test").await.unwrap();
    test.handle(two_naps, "held")
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    test.shutdown().await;
}
