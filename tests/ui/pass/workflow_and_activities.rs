//! A workflow and activities using every option; checks what the macros generate.

use std::time::Duration;

use orchestrator::{
    Activity, ActivityError, ActivityOptions, Registrable, RetryPolicy, Workflow, WorkflowContext,
    WorkflowError, activity, workflow,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub charge: String,
}

/// An error of the application, converted into `WorkflowError` by the generated code.
#[derive(Debug)]
pub struct CheckoutError(String);

impl From<CheckoutError> for WorkflowError {
    fn from(error: CheckoutError) -> Self {
        WorkflowError::failed(error.0)
    }
}

/// Charges a card.
#[activity(
    name = "payments.charge",
    timeout = "10s",
    retry(
        max_attempts = 5,
        initial_backoff = "200ms",
        max_backoff = "30s",
        multiplier = 1.5,
        jitter = 0.2,
    )
)]
pub async fn charge(cents: u64) -> Result<String, ActivityError> {
    Ok(format!("charge-{cents}"))
}

#[activity(
    retry(backoff = "1.5s..1m", multiplier = 3, jitter = 0),
    crate = "::orchestrator"
)]
async fn notify(order_id: String) -> Result<(), std::io::Error> {
    let _ = order_id;
    Ok(())
}

#[activity(timeout = "1m30s")]
pub(crate) async fn plain(_input: u8) -> Result<u8, String> {
    Ok(0)
}

/// Charges the order.
#[workflow(name = "checkout-v2")]
pub async fn checkout(ctx: WorkflowContext, order: Order) -> Result<Receipt, CheckoutError> {
    // A local binding may not reuse an activity's name: the name is a unit struct in scope.
    let charge_id = ctx
        .call(charge, order.cents)
        .await
        .map_err(|error| CheckoutError(error.to_string()))?;
    ctx.call(notify, order.id)
        .await
        .map_err(|error| CheckoutError(error.to_string()))?;
    Ok(Receipt { charge: charge_id })
}

#[workflow]
async fn nightly(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn input_of<W: Workflow<Input = I, Output = O>, I, O>(_: W) {}

fn main() {
    // Names.
    assert_eq!(<checkout as Workflow>::NAME, "checkout-v2");
    assert_eq!(<nightly as Workflow>::NAME, "nightly");
    assert_eq!(<charge as Activity>::NAME, "payments.charge");
    assert_eq!(<notify as Activity>::NAME, "notify");
    assert_eq!(checkout.registration().name(), "checkout-v2");
    assert_eq!(charge.registration().name(), "payments.charge");

    // Input and output types.
    input_of::<checkout, Order, Receipt>(checkout);
    input_of::<nightly, (), ()>(nightly);

    // Options: only the given fields change the defaults.
    let expected = ActivityOptions::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(5)
                .initial_backoff(Duration::from_millis(200))
                .max_backoff(Duration::from_secs(30))
                .multiplier(1.5)
                .jitter(0.2)
                .build(),
        )
        .timeout(Duration::from_secs(10))
        .build();
    assert_eq!(<charge as Activity>::options(), expected);
    let notify_options = <notify as Activity>::options();
    assert_eq!(
        notify_options.retry.max_attempts,
        RetryPolicy::default().max_attempts
    );
    assert_eq!(
        notify_options.retry.initial_backoff,
        Duration::from_millis(1500)
    );
    assert_eq!(notify_options.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(notify_options.retry.multiplier, 3.0);
    assert_eq!(notify_options.retry.jitter, 0.0);
    assert_eq!(notify_options.timeout, None);
    let plain_options = <plain as Activity>::options();
    assert_eq!(plain_options.retry, RetryPolicy::default());
    assert_eq!(plain_options.timeout, Some(Duration::from_secs(90)));

    // The functions stay callable directly, and the struct is a plain value type.
    let charged = futures::executor::block_on(charge::invoke(1999));
    assert_eq!(charged.ok().as_deref(), Some("charge-1999"));
    assert_eq!(format!("{:?}", charge), "charge");
    assert_eq!(checkout, checkout::default());
    let _ = plain;
}
