//! The `#[workflow]` and `#[activity]` attribute macros of
//! [orchestrator](https://docs.rs/orchestrator).
//!
//! Use them through the library (`orchestrator::workflow`, `orchestrator::activity`); this crate is an
//! implementation detail. Each macro turns an `async fn` into a unit struct of the same name that
//! implements `orchestrator::Workflow` or `orchestrator::Activity` (and `orchestrator::Registrable`),
//! so the function is passed around as a value: `engine.start(checkout, ..)`,
//! `ctx.call(charge_card, ..)`, `.register(checkout)`. The function itself stays callable as
//! `checkout::invoke(..)`, outside the engine.
//!
//! Mistakes are reported as compile errors on the offending tokens. A wrong attribute argument still
//! expands the function (that option keeps its default), so only the real error shows; when the
//! function's signature is wrong, the function is emitted unchanged next to the errors, so the rest of
//! the crate keeps type-checking.
//!
//! The crate is organised like `tracing-attributes`: `parse` checks the arguments and the signature into
//! a model, `duration` reads duration literals such as `"200ms"`, and `expand` generates the code.

mod duration;
mod expand;
mod parse;

use proc_macro::TokenStream;

use crate::parse::Kind;

/// Turns an `async fn` into a durable workflow type.
///
/// The function must be an `async fn` whose first parameter is the
/// `WorkflowContext`, followed by at most one input, and which returns `Result<T, E>` (written out with
/// both type arguments) where `E: Into<WorkflowError>`. The input and output are stored in the journal,
/// so they must be owned, serializable types; generic functions and methods are not supported.
///
/// ```ignore
/// use orchestrator::{workflow, WorkflowContext, WorkflowError};
///
/// /// Charges the card, then ships the order.
/// #[workflow]
/// pub async fn checkout(ctx: WorkflowContext, order: Order) -> Result<Receipt, WorkflowError> {
///     let charge = ctx.call(charge_card, (order.card.clone(), order.total)).await?;
///     let shipment = ctx.call(ship, order.id).await?;
///     Ok(Receipt { charge, shipment })
/// }
/// ```
///
/// This generates a unit struct `checkout` (with the function's docs and visibility) implementing
/// `Workflow` with `Input = Order` (`()` when there is no input) and `Output = Receipt`, and
/// `Registrable`. The function is kept as `checkout::invoke`.
///
/// # Options
///
/// ```text
/// #[workflow(
///     name = "checkout",              // the name recorded in the journal; default: the function's name
///     crate = "::orchestrator",       // the path of the orchestrator crate, if renamed or re-exported
/// )]
/// ```
///
/// The name identifies the workflow in stored journals: renaming the function orphans running
/// workflows unless `name` keeps the old name.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Workflow, args, item)
}

/// Turns an `async fn` into an activity type: a step whose result is journaled, retried on failure.
///
/// The function must be an `async fn` returning `Result<T, E>` (written out with both type arguments)
/// where `E: Into<ActivityError>`. Its first parameter may be the `ActivityContext`; the other
/// parameters are its inputs: the activity's `Input` is the one input's type, a tuple of the inputs'
/// types when there are several, or `()` when there are none. Inputs and output are stored in the
/// journal, so they must be owned, serializable types; generic functions and methods are not supported.
///
/// ```ignore
/// use orchestrator::{activity, ActivityContext, ActivityError};
///
/// #[activity(timeout = "10s", retry(max_attempts = 5, backoff = "200ms..30s"))]
/// pub async fn charge_card(ctx: ActivityContext, card: Card, cents: u64) -> Result<ChargeId, ActivityError> {
///     Ok(payments::charge(&card, cents).await?) // any error converts (retryable); `.non_retryable()?` fails at once
/// }
///
/// // In a workflow: ctx.call(charge_card, (card, 1_999)).await?
/// ```
///
/// This generates a unit struct `charge_card` implementing `Activity` (with `Input = (Card, u64)`) and
/// `Registrable`; the function is kept as `charge_card::invoke`.
///
/// # Options
///
/// ```text
/// #[activity(
///     name = "charge_card",           // the name recorded in the journal; default: the function's name
///     timeout = "10s",                // start-to-close timeout of each attempt; default: none
///     retry(                          // the retry policy; fields not given keep the library's defaults
///         max_attempts = 5,           // attempts in all, the first included (at least 1)
///         initial_backoff = "200ms",  // the wait after the first failed attempt
///         max_backoff = "30s",        // the longest wait
///         backoff = "200ms..30s",     // shorthand for both; not with initial_backoff / max_backoff
///         multiplier = 2.0,           // growth of the wait after each failure (at least 1.0)
///         jitter = 0.1,               // random spread of each wait, 0.0 to 1.0 (0.1 = ±10%)
///     ),
///     crate = "::orchestrator",       // the path of the orchestrator crate, if renamed or re-exported
/// )]
/// ```
///
/// Durations are string literals: a number (fractions allowed) followed by a unit, `ns`, `us`, `ms`,
/// `s`, `m`, `h` or `d`, such as `"1500us"`, `"200ms"`, `"1.5s"`, `"5m"`, `"1h"`, `"1d"` or `"1m30s"`.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Activity, args, item)
}

/// Parses and expands, appending any error; re-emits the item unchanged with the errors when the
/// function itself cannot be expanded. A wrong argument still expands (with that option's default),
/// like `#[tokio::main]`, so the user sees the one real error and not its echo at every call site.
fn entry(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let parse::Parsed { model, error } = parse::parse_lenient(kind, args.into(), item.clone());
    match (model, error) {
        (Some(model), None) => expand::expand(model),
        (Some(model), Some(error)) => expand::expansion_with_error(expand::expand(model), error),
        (None, Some(error)) => expand::item_with_error(item, error),
        (None, None) => expand::item_with_error(
            item,
            syn::Error::new(
                proc_macro2::Span::call_site(),
                "internal error in orchestrator-macros",
            ),
        ),
    }
    .into()
}
