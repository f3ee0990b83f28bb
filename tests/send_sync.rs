//! Compile-time checks that the engine, handles, contexts and step futures can cross threads.

use orchestrator::prelude::*;
use orchestrator::{ActivityCall, SignalWait, Sleep};

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}
fn is_send_future<F: std::future::Future + Send>(_: &F) {}

#[activity]
async fn noop(value: u32) -> Result<u32, ActivityError> {
    Ok(value)
}

#[workflow]
async fn uses_everything(ctx: WorkflowContext, value: u32) -> Result<u32, WorkflowError> {
    ctx.call(noop, value).await
}

#[test]
fn public_types_are_send_and_sync() {
    is_send::<Engine>();
    is_sync::<Engine>();
    is_send::<RunHandle<String>>();
    is_send::<RunHandle>();
    is_sync::<RunHandle>();
    is_send::<orchestrator::Fork>();
    is_sync::<RunHandle<String>>();
    is_send::<WorkflowContext>();
    is_sync::<WorkflowContext>();
    is_send::<ActivityContext>();
    is_sync::<ActivityContext>();
    is_send::<ActivityCall<noop>>();
    is_send::<Sleep>();
    is_send::<SignalWait<String>>();
    is_send::<orchestrator::ChildCall<uses_everything>>();
    is_send::<orchestrator::StartRun<uses_everything>>();
    is_send::<orchestrator::Select<Sleep>>();
    is_send::<Error>();
    is_sync::<Error>();
    is_send::<WorkflowError>();
    is_send::<ActivityError>();
}

#[test]
fn engine_futures_are_send() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Engine::builder()
            .in_memory()
            .register(uses_everything)
            .start()
            .await
            .unwrap();
        let start =
            std::future::IntoFuture::into_future(engine.start(uses_everything, "send-check", 7));
        is_send_future(&start);
        let run = start.await.unwrap();
        let result = run.result();
        is_send_future(&result);
        assert_eq!(result.await.unwrap(), 7);
        let retry = engine.retry("send-check", "alice");
        is_send_future(&retry);
        assert!(retry.await.is_err(), "a completed run is not retried");
        let fork = engine.fork(
            "send-check",
            orchestrator::Fork::new(1, "send-fork").input(9_u32),
        );
        is_send_future(&fork);
        assert_eq!(
            fork.await
                .unwrap()
                .typed(uses_everything)
                .await
                .unwrap()
                .result()
                .await
                .unwrap(),
            9
        );
        let describe = engine.describe("send-check");
        is_send_future(&describe);
        let description = describe.await.unwrap();
        is_send::<orchestrator::inspect::RunDescription>();
        is_sync::<orchestrator::inspect::RunDescription>();
        assert_eq!(description.timeline.steps.len(), 1);
        let signal = engine.signal_json("send-check", "none", serde_json::json!(1));
        is_send_future(&signal);
        assert!(signal.await.is_err(), "no type is known for the signal");
        let shutdown = engine.shutdown();
        is_send_future(&shutdown);
        shutdown.await;
    });
}
