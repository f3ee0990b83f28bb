//! A loan-application pipeline that survives being killed.
//!
//! Upload a pay stub → parse it (a flaky OCR service that fails its first attempt and succeeds on
//! retry) → check the income → decide → wait for an underwriter's approval signal → notify the applicant.
//! Every step is journaled in `loan_pipeline.db` (or the path given as the first argument). Kill the
//! process at any moment (Ctrl-C, `kill -9`) and run it again: it resumes where it stopped instead of
//! starting over. Pass `--fresh` to delete the journal and start a new application.
//!
//! ```text
//! cargo run -p orchestrator-examples --example loan_pipeline
//! ```

use std::path::PathBuf;
use std::time::Duration;

use orchestrator::prelude::*;
use serde::{Deserialize, Serialize};

/// A loan application as submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Application {
    applicant: String,
    amount: u64,
    pay_stub: String,
}

/// What the parser read from the pay stub.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Income {
    employer: String,
    monthly: u64,
}

/// The automated decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Decision {
    approved: bool,
    rate_percent: f64,
    reason: String,
}

/// The underwriter's answer, sent as a signal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Approval {
    underwriter: String,
    approved: bool,
}

/// How long each simulated service call takes: long enough to kill the process mid-step.
const WORK: Duration = Duration::from_millis(800);

fn say(ctx: &ActivityContext, message: impl std::fmt::Display) {
    println!(
        "  [step {} · {} · attempt {}] {message}",
        ctx.step(),
        ctx.activity_name(),
        ctx.attempt()
    );
}

/// Stores the pay stub and returns its document id.
#[activity(retry(max_attempts = 3, backoff = "200ms..2s"), timeout = "10s")]
async fn upload_pay_stub(
    ctx: ActivityContext,
    application: Application,
) -> Result<String, ActivityError> {
    say(
        &ctx,
        format!("uploading the pay stub of {}", application.applicant),
    );
    tokio::time::sleep(WORK).await;
    let document = format!("doc-{}", ctx.idempotency_key().replace('/', "-"));
    say(&ctx, format!("stored as {document}"));
    Ok(document)
}

/// Reads the income from the document. The OCR service is flaky: its first attempt always fails.
#[activity(
    retry(max_attempts = 4, backoff = "500ms..5s", jitter = 0.0),
    timeout = "10s"
)]
async fn parse_pay_stub(
    ctx: ActivityContext,
    document: String,
    text: String,
) -> Result<Income, ActivityError> {
    say(&ctx, format!("sending {document} to the OCR service"));
    tokio::time::sleep(WORK).await;
    if ctx.attempt() == 1 {
        say(&ctx, "OCR service answered 503; will retry");
        return Err(ActivityError::retryable("OCR service unavailable (503)"));
    }
    let mut fields = text.split(';');
    let employer = fields.next().unwrap_or("unknown").trim().to_string();
    let monthly = fields
        .next()
        .and_then(|amount| amount.trim().parse().ok())
        .ok_or_else(|| ActivityError::non_retryable(format!("no monthly income in `{text}`")))?;
    say(&ctx, format!("{employer} pays {monthly} a month"));
    Ok(Income { employer, monthly })
}

/// Checks the debt-to-income ratio: the monthly payment must stay under 35% of income.
#[activity]
async fn check_income(
    ctx: ActivityContext,
    income: Income,
    amount: u64,
) -> Result<f64, ActivityError> {
    tokio::time::sleep(WORK).await;
    let monthly_payment = amount as f64 / 60.0;
    let ratio = monthly_payment / income.monthly.max(1) as f64;
    say(
        &ctx,
        format!(
            "payment {monthly_payment:.0}/month is {:.1}% of income",
            ratio * 100.0
        ),
    );
    Ok(ratio)
}

/// The automated credit decision.
#[activity]
async fn decide(ctx: ActivityContext, ratio: f64) -> Result<Decision, ActivityError> {
    tokio::time::sleep(WORK).await;
    let decision = if ratio < 0.35 {
        Decision {
            approved: true,
            rate_percent: 4.5 + ratio * 10.0,
            reason: "income covers the payment".to_string(),
        }
    } else {
        Decision {
            approved: false,
            rate_percent: 0.0,
            reason: format!("payment would be {:.0}% of income", ratio * 100.0),
        }
    };
    say(&ctx, format!("automated decision: {decision:?}"));
    Ok(decision)
}

/// Sends the decision letter.
#[activity(retry(max_attempts = 5, backoff = "1s..30s"))]
async fn notify(
    ctx: ActivityContext,
    applicant: String,
    letter: String,
) -> Result<(), ActivityError> {
    tokio::time::sleep(WORK).await;
    say(&ctx, format!("letter to {applicant}: {letter}"));
    Ok(())
}

/// The pipeline. Its code reads top to bottom; the engine makes every step durable.
#[workflow]
async fn loan_application(
    ctx: WorkflowContext,
    application: Application,
) -> Result<String, WorkflowError> {
    let document = ctx.call(upload_pay_stub, application.clone()).await?;
    let income = ctx
        .call(parse_pay_stub, (document, application.pay_stub.clone()))
        .await?;
    let ratio = ctx.call(check_income, (income, application.amount)).await?;
    let decision = ctx.call(decide, ratio).await?;
    let letter = if decision.approved {
        let approval: Approval = ctx
            .signal("underwriter-approval")
            .timeout(Duration::from_secs(120))
            .await?;
        if approval.approved {
            format!(
                "APPROVED: {} at {:.2}% (signed off by {})",
                application.amount, decision.rate_percent, approval.underwriter
            )
        } else {
            format!("DECLINED by {}", approval.underwriter)
        }
    } else {
        format!("DECLINED: {}", decision.reason)
    };
    ctx.call(notify, (application.applicant.clone(), letter.clone()))
        .await?;
    Ok(letter)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = PathBuf::from("loan_pipeline.db");
    let mut fresh = false;
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--fresh" => fresh = true,
            other => path = PathBuf::from(other),
        }
    }
    if fresh {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    let resuming = path.exists();
    println!(
        "journal: {} ({})",
        path.display(),
        if resuming { "resuming from it" } else { "new" }
    );

    let engine = Engine::builder()
        .sqlite(&path)
        .register(loan_application)
        .register(upload_pay_stub)
        .register(parse_pay_stub)
        .register(check_income)
        .register(decide)
        .register(notify)
        .start()
        .await?;

    let application = Application {
        applicant: "Ada Lovelace".to_string(),
        amount: 25_000,
        pay_stub: "Analytical Engines Ltd; 5200".to_string(),
    };
    // Idempotent on the id: after a restart this returns the run the engine already resumed.
    let run = engine
        .start(loan_application, "loan-0001", application)
        .await?;
    if run.status().await? != RunStatus::Running {
        println!("loan-0001 already finished; run with --fresh to start a new application");
    }

    // The underwriter reviews for a few seconds, then approves. (A repeated approval after a restart
    // stays unread in the inbox: each signal is delivered at most once.)
    let underwriter = engine.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let approval = Approval {
            underwriter: "Grace Hopper".to_string(),
            approved: true,
        };
        if underwriter
            .signal("loan-0001", "underwriter-approval", approval)
            .await
            .is_ok()
        {
            println!("  [underwriter] approval signal sent");
        }
    });

    match run.result().await {
        Ok(letter) => println!("loan-0001 finished: {letter}"),
        Err(error) => println!("loan-0001 did not finish: {error}"),
    }
    engine.shutdown().await;
    Ok(())
}

/// The pipeline under the testing toolkit: the 800 ms service calls, the OCR retry backoff and the
/// underwriter's two-minute deadline all run on virtual time.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use orchestrator::inspect::{StepKind, StepStatus};
    use orchestrator::testing::TestEngine;

    use super::*;

    fn application(monthly: u64) -> Application {
        Application {
            applicant: "Ada Lovelace".to_string(),
            amount: 25_000,
            pay_stub: format!("Analytical Engines Ltd; {monthly}"),
        }
    }

    async fn engine() -> TestEngine {
        TestEngine::builder()
            .register(loan_application)
            .register(upload_pay_stub)
            .register(parse_pay_stub)
            .register(check_income)
            .register(decide)
            .register(notify)
            .start()
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn approved_after_the_underwriter_signs_off() {
        let test = engine().await;
        let letters = test.mock(
            notify,
            |(_applicant, _letter): (String, String)| async move { Ok(()) },
        );
        let run = test
            .start(loan_application, "loan-1", application(5_200))
            .await
            .unwrap();
        test.run_until_blocked().await;
        // The underwriter answers a minute later, inside the two-minute window.
        test.advance(Duration::from_secs(60)).await.unwrap();
        let approval = Approval {
            underwriter: "Grace Hopper".to_string(),
            approved: true,
        };
        test.signal("loan-1", "underwriter-approval", approval)
            .await
            .unwrap();
        let letter = run.result().await.unwrap();
        assert!(letter.starts_with("APPROVED: 25000"), "{letter}");
        assert_eq!(letters.inputs(), vec![("Ada Lovelace".to_string(), letter)]);

        let history = test.history("loan-1").await.unwrap();
        assert_eq!(
            history.attempts(2),
            2,
            "the flaky OCR failed once, then succeeded"
        );
        assert_eq!(
            history.kinds(),
            vec![
                StepKind::Activity,
                StepKind::Activity,
                StepKind::Activity,
                StepKind::Activity,
                StepKind::Signal,
                StepKind::Activity
            ]
        );
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_within_two_minutes_fails_the_application() {
        let test = engine().await;
        let letters = test.mock(notify, |_: (String, String)| async move { Ok(()) });
        let run = test
            .start(loan_application, "loan-2", application(5_200))
            .await
            .unwrap();
        let error = run.result().await.unwrap_err();
        assert!(
            error.to_string().contains("underwriter-approval"),
            "{error}"
        );
        let history = test.history("loan-2").await.unwrap();
        let wait = history.step(5);
        assert_eq!(
            (wait.kind, wait.status),
            (StepKind::Signal, StepStatus::Failed)
        );
        assert_eq!(
            wait.deadline_ms.unwrap() - wait.started_at_ms.unwrap(),
            120_000
        );
        assert_eq!(letters.calls(), 0, "no letter without a decision");
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_income_is_declined_without_waiting() {
        let test = engine().await;
        let letters = test.mock(notify, |_: (String, String)| async move { Ok(()) });
        let started = test.now_ms();
        let run = test
            .start(loan_application, "loan-3", application(300))
            .await
            .unwrap();
        let letter = run.result().await.unwrap();
        assert!(letter.starts_with("DECLINED: payment would be"), "{letter}");
        assert_eq!(letters.calls(), 1);
        // Upload, two OCR attempts, income check and decision (800 ms each, the letter is mocked)
        // and the OCR's 500 ms backoff: 4.5 virtual seconds, to the millisecond.
        assert_eq!(test.now_ms() - started, 4_500);
        test.shutdown().await;
    }
}
