//! Activities with a context and several inputs, with only a context, and with nothing at all.

use orchestrator::{Activity, ActivityContext, ActivityError, activity};

#[activity]
pub async fn transfer(
    ctx: ActivityContext,
    from: String,
    to: String,
    mut cents: u64,
) -> Result<String, ActivityError> {
    cents += 0;
    Ok(format!("{}:{from}->{to}:{cents}", ctx.idempotency_key()))
}

#[activity]
pub async fn several(a: u8, b: Vec<String>, _c: Option<bool>) -> Result<usize, ActivityError> {
    Ok(usize::from(a) + b.len())
}

#[activity]
pub async fn attempt_number(ctx: ActivityContext) -> Result<u32, ActivityError> {
    Ok(ctx.attempt())
}

#[activity]
pub async fn nothing() -> Result<(), ActivityError> {
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[activity]
pub async fn many(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    e: u8,
    f: u8,
    g: u8,
    h: u8,
) -> Result<u64, ActivityError> {
    Ok([a, b, c, d, e, f, g, h].iter().map(|x| u64::from(*x)).sum())
}

fn input_of<A: Activity<Input = I, Output = O>, I, O>(_: A) {}

fn main() {
    input_of::<transfer, (String, String, u64), String>(transfer);
    input_of::<several, (u8, Vec<String>, Option<bool>), usize>(several);
    input_of::<attempt_number, (), u32>(attempt_number);
    input_of::<nothing, (), ()>(nothing);
    input_of::<many, (u8, u8, u8, u8, u8, u8, u8, u8), u64>(many);

    let ctx = ActivityContext::for_testing("wf-1", 3, 2);
    let out = futures::executor::block_on(<transfer as Activity>::run(
        ctx.clone(),
        ("a".to_owned(), "b".to_owned(), 5),
    ));
    assert_eq!(out, Ok("wf-1/3:a->b:5".to_owned()));
    let out = futures::executor::block_on(<several as Activity>::run(
        ctx.clone(),
        (2, vec![String::new()], None),
    ));
    assert_eq!(out, Ok(3));
    let out = futures::executor::block_on(<attempt_number as Activity>::run(ctx.clone(), ()));
    assert_eq!(out, Ok(2));
    let out = futures::executor::block_on(<nothing as Activity>::run(ctx.clone(), ()));
    assert_eq!(out, Ok(()));
    let out = futures::executor::block_on(<many as Activity>::run(ctx, (1, 2, 3, 4, 5, 6, 7, 8)));
    assert_eq!(out, Ok(36));
    let direct = futures::executor::block_on(transfer::invoke(
        ActivityContext::for_testing("wf-2", 1, 1),
        "x".to_owned(),
        "y".to_owned(),
        1,
    ));
    assert_eq!(direct, Ok("wf-2/1:x->y:1".to_owned()));
}
