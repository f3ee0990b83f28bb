//! Serves the embedded admin HTTP API over a journal with a few runs in it: one completed, one
//! failed, one waiting for a signal, one sleeping. Try the curl commands of `docs/operations.md`
//! against it; stop it with Ctrl-C.
//!
//! ```text
//! cargo run --example admin_server --features admin -p orchestrator-examples -- [--db PATH] [--bind ADDR] [--token SECRET]
//! ```
//!
//! With `--token`, requests need `Authorization: Bearer SECRET` (identity `operator`).

use std::net::SocketAddr;
use std::time::Duration;

use orchestrator::admin::AdminConfig;
use orchestrator::prelude::*;

#[activity(retry(max_attempts = 3, backoff = "10ms..100ms"))]
async fn charge_card(amount_cents: u64) -> Result<String, ActivityError> {
    if amount_cents > 100_000 {
        return Err(ActivityError::failure(
            "card_declined",
            "the card was declined",
        ));
    }
    Ok(format!("charge-{amount_cents}"))
}

#[workflow]
async fn checkout(ctx: WorkflowContext, amount_cents: u64) -> Result<String, WorkflowError> {
    let charge = ctx.call(charge_card, amount_cents).await?;
    let approved: bool = ctx.signal("approval").await?;
    if !approved {
        return Err(WorkflowError::failed("not approved"));
    }
    Ok(charge)
}

#[workflow]
async fn nightly_report(ctx: WorkflowContext, day: u32) -> Result<u32, WorkflowError> {
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(day)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = std::env::temp_dir().join("orchestrator-admin-example.db");
    let mut bind: SocketAddr = "127.0.0.1:7070".parse()?;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--db", Some(path)) => db = path.into(),
            ("--bind", Some(addr)) => bind = addr.parse()?,
            ("--token", Some(secret)) => token = Some(secret),
            _ => return Err(format!("unknown argument `{arg}`; see the file's header").into()),
        }
    }
    let mut admin = AdminConfig::builder().bind(bind);
    if let Some(secret) = token {
        admin = admin.token("operator", secret);
    }
    let engine = Engine::builder()
        .sqlite(&db)
        .register(checkout)
        .register(charge_card)
        .register(nightly_report)
        .admin(admin.build())
        .start()
        .await?;
    // A few runs to look at (idempotent on their ids, so restarts reuse them).
    let paid = engine.start(checkout, "order-1", 1_999).await?;
    let _ = engine.signal("order-1", "approval", true).await;
    let _ = paid.result().await;
    let declined = engine.start(checkout, "order-2", 250_000).await?;
    let _ = declined.result().await;
    engine.start(checkout, "order-3", 4_200).await?;
    engine
        .start(nightly_report, "report-2026-12-02", 336)
        .await?;

    let addr = engine.admin_addr().ok_or("the admin API is not running")?;
    println!("journal: {}", db.display());
    println!("admin API: http://{addr}/api/v1/runs  (Ctrl-C to stop)");
    println!("dashboard: http://{addr}/");
    tokio::signal::ctrl_c().await?;
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The example's workflows under the testing toolkit, on virtual time.

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use orchestrator::inspect::{BlockedOn, StepKind, StepStatus};
    use orchestrator::testing::TestEngine;

    use super::*;

    async fn engine() -> TestEngine {
        TestEngine::builder()
            .register(checkout)
            .register(charge_card)
            .register(nightly_report)
            .start()
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_approved_checkout_returns_its_charge() {
        let test = engine().await;
        let run = test.start(checkout, "order-1", 1_999).await.unwrap();
        test.run_until_blocked().await;
        // Charged, then waiting for the approval (a wait without a deadline journals nothing until
        // the signal arrives).
        let history = test.history("order-1").await.unwrap();
        assert_eq!(history.kinds(), vec![StepKind::Activity]);
        assert_eq!(history.step(1).status, StepStatus::Completed);
        assert!(
            matches!(
                history.description.blocked_on,
                BlockedOn::Unjournaled { .. }
            ),
            "{:?}",
            history.description.blocked_on
        );
        test.signal("order-1", "approval", true).await.unwrap();
        assert_eq!(run.result().await.unwrap(), "charge-1999");
        let history = test.history("order-1").await.unwrap();
        assert_eq!(history.kinds(), vec![StepKind::Activity, StepKind::Signal]);
        assert_eq!(history.activities(), vec!["charge_card"]);
        assert_eq!(history.attempts(1), 1);
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_approval_fails_the_checkout() {
        let test = engine().await;
        let run = test.start(checkout, "order-3", 4_200).await.unwrap();
        test.signal("order-3", "approval", false).await.unwrap();
        let error = run.result().await.unwrap_err();
        assert!(error.to_string().contains("not approved"), "{error}");
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_declined_card_fails_at_once_without_retries() {
        let test = engine().await;
        let run = test.start(checkout, "order-2", 250_000).await.unwrap();
        let error = run.result().await.unwrap_err();
        assert_eq!(error.failure_code(), Some("card_declined"), "{error}");
        let history = test.history("order-2").await.unwrap();
        assert_eq!(history.failed_steps(), vec![1]);
        assert_eq!(history.attempts(1), 1, "a business failure is not retried");
        assert_eq!(
            history.kinds(),
            vec![StepKind::Activity],
            "no approval asked"
        );
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_flaky_gateway_is_retried_within_the_policy() {
        let test = engine().await;
        let charges = test
            .mock(charge_card, |cents: u64| async move {
                Ok(format!("mocked-{cents}"))
            })
            .fail_times(2, || ActivityError::retryable("gateway timeout"));
        let run = test.start(checkout, "order-5", 500).await.unwrap();
        test.run_until_blocked().await;
        test.signal("order-5", "approval", true).await.unwrap();
        assert_eq!(run.result().await.unwrap(), "mocked-500");
        assert_eq!(charges.calls(), 3);
        assert_eq!(charges.inputs(), vec![500, 500, 500]);
        let history = test.history("order-5").await.unwrap();
        assert_eq!(history.attempts(1), 3, "{}", history.summary());
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_nightly_report_sleeps_an_hour_of_virtual_time() {
        let test = engine().await;
        let started = test.now_ms();
        let run = test
            .start(nightly_report, "report-2026-12-02", 336)
            .await
            .unwrap();
        test.run_until_blocked().await;
        assert_eq!(test.next_wakeup().await.unwrap(), Some(started + 3_600_000));
        // 59 minutes later it still sleeps.
        test.advance(Duration::from_secs(59 * 60)).await.unwrap();
        test.run_until_blocked().await;
        let history = test.history("report-2026-12-02").await.unwrap();
        assert_eq!(history.step(1).status, StepStatus::Waiting);
        // The last minute: it wakes up and reports.
        test.advance(Duration::from_secs(60)).await.unwrap();
        assert_eq!(run.result().await.unwrap(), 336);
        assert_eq!(test.now_ms() - started, 3_600_000);
        let history = test.history("report-2026-12-02").await.unwrap();
        assert_eq!(history.timer(1), Duration::from_secs(3_600));
        assert_eq!(history.kinds(), vec![StepKind::Timer]);
        test.shutdown().await;
    }
}
