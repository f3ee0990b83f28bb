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
