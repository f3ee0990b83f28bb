//! The attribute's arguments: `#[activity(name = "..", retry(..), timeout = "..", crate = "..")]` and
//! `#[workflow(name = "..", crate = "..")]`.

use std::collections::HashSet;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, Meta, MetaList, Path, Token, UnOp};

use super::{Errors, Kind};
use crate::duration;

/// The options of `#[workflow]`, as listed in messages.
const WORKFLOW_OPTIONS: &str = "`name = \"...\"` and `crate = \"...\"`";
/// The options of `#[activity]`, as listed in messages.
const ACTIVITY_OPTIONS: &str =
    "`name = \"...\"`, `retry(...)`, `timeout = \"...\"` and `crate = \"...\"`";
/// The options inside `retry(...)`, as listed in messages.
const RETRY_OPTIONS: &str = "`max_attempts`, `initial_backoff`, `max_backoff`, `backoff` \
     (a range \"<initial>..<max>\"), `multiplier` and `jitter`";

/// The parsed arguments of either attribute.
#[derive(Debug, Default)]
pub(crate) struct Args {
    /// `name = ".."`: the journal name.
    pub(crate) name: Option<String>,
    /// `crate = ".."`: the path of the `orchestrator` crate.
    pub(crate) krate: Option<Path>,
    /// `retry(..)` and `timeout = ".."` (activities only).
    pub(crate) options: ActivityOptions,
}

/// `retry(..)` and `timeout = ".."` of `#[activity]`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ActivityOptions {
    /// The retry policy; `None` keeps the library's default policy.
    pub(crate) retry: Option<RetryOptions>,
    /// The start-to-close timeout of each attempt.
    pub(crate) timeout: Option<Duration>,
}

impl ActivityOptions {
    /// Whether no option was given, so the library's defaults apply unchanged.
    pub(crate) fn is_empty(&self) -> bool {
        self.retry.is_none() && self.timeout.is_none()
    }
}

/// The fields given in `retry(..)`; the others keep the library's defaults.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RetryOptions {
    /// Attempts in all (at least 1).
    pub(crate) max_attempts: Option<u32>,
    /// The wait after the first failed attempt.
    pub(crate) initial_backoff: Option<Duration>,
    /// The longest wait.
    pub(crate) max_backoff: Option<Duration>,
    /// The growth factor of the wait (at least 1.0).
    pub(crate) multiplier: Option<f64>,
    /// The random spread of each wait (0.0 to 1.0).
    pub(crate) jitter: Option<f64>,
}

/// Parses the tokens inside `#[workflow(..)]` or `#[activity(..)]`.
#[cfg(test)]
pub(crate) fn parse(kind: Kind, tokens: TokenStream) -> syn::Result<Args> {
    let mut errors = Errors::default();
    let args = parse_lenient(kind, tokens, &mut errors);
    errors.finish()?;
    Ok(args)
}

/// Parses the tokens inside `#[workflow(..)]` or `#[activity(..)]` as far as they are valid: each
/// invalid option is recorded in `errors` and left at its default, so the macro can still expand the
/// function (and report only the real mistake, not its consequences at every call site).
pub(crate) fn parse_lenient(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return args;
        }
    };
    let mut seen = Seen::default();
    for meta in &metas {
        let key = key_of(meta.path());
        match (key.as_str(), kind) {
            ("name", _) => {
                if seen.first(&key, meta, errors) {
                    args.name = errors.ok(name(meta));
                }
            }
            ("crate", _) => {
                if seen.first(&key, meta, errors) {
                    args.krate = errors.ok(krate(meta));
                }
            }
            ("timeout", Kind::Activity) => {
                if seen.first(&key, meta, errors) {
                    args.options.timeout = errors.ok(timeout(meta));
                }
            }
            ("retry", Kind::Activity) => {
                if seen.first(&key, meta, errors) {
                    args.options.retry = errors.ok(retry(meta));
                }
            }
            ("timeout" | "retry", Kind::Workflow) => errors.push(syn::Error::new_spanned(
                meta.path(),
                format!(
                    "`{key}` is an option of `#[activity]`, not of `#[workflow]`; \
                     the options of `#[workflow]` are {WORKFLOW_OPTIONS}"
                ),
            )),
            _ => {
                let valid = match kind {
                    Kind::Workflow => WORKFLOW_OPTIONS,
                    Kind::Activity => ACTIVITY_OPTIONS,
                };
                errors.push(syn::Error::new_spanned(
                    meta.path(),
                    format!(
                        "unknown option `{key}` of `{}`; the options are {valid}",
                        kind.attribute()
                    ),
                ));
            }
        }
    }
    args
}

/// `name = "..."`.
fn name(meta: &Meta) -> syn::Result<String> {
    let literal = string(meta, "\"...\"")?;
    let name = literal.value();
    if name.trim().is_empty() {
        return Err(syn::Error::new_spanned(literal, "`name` must not be empty"));
    }
    Ok(name)
}

/// `crate = "path::to::orchestrator"`.
fn krate(meta: &Meta) -> syn::Result<Path> {
    let literal = string(meta, "\"::orchestrator\"")?;
    literal.parse::<Path>().map_err(|_| {
        syn::Error::new_spanned(
            &literal,
            "`crate` must be the path of the orchestrator crate, e.g. `crate = \"::orchestrator\"`",
        )
    })
}

/// `timeout = "10s"`.
fn timeout(meta: &Meta) -> syn::Result<Duration> {
    let (timeout, literal) = duration_value(meta, "\"10s\"")?;
    if timeout.is_zero() {
        return Err(syn::Error::new_spanned(
            literal,
            "`timeout` must be longer than zero",
        ));
    }
    Ok(timeout)
}

/// `retry(max_attempts = .., initial_backoff = .., max_backoff = .., backoff = .., multiplier = ..,
/// jitter = ..)`.
fn retry(meta: &Meta) -> syn::Result<RetryOptions> {
    let list = match meta {
        Meta::List(list) => list,
        _ => {
            return Err(syn::Error::new_spanned(
                meta,
                "expected a list of retry options, e.g. \
                 `retry(max_attempts = 5, backoff = \"200ms..30s\")`",
            ));
        }
    };
    let metas = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
    let mut errors = Errors::default();
    let mut seen = Seen::default();
    let mut retry = RetryOptions::default();
    // The literal that set each bound, to point at when the bounds disagree.
    let mut initial_literal = None;
    let mut max_literal = None;
    for meta in &metas {
        let key = key_of(meta.path());
        match key.as_str() {
            "max_attempts" | "initial_backoff" | "max_backoff" | "backoff" | "multiplier"
            | "jitter" => {}
            _ => {
                errors.push(syn::Error::new_spanned(
                    meta.path(),
                    format!(
                        "unknown option `{key}` of `retry(...)`; the options are {RETRY_OPTIONS}"
                    ),
                ));
                continue;
            }
        }
        let conflicts = match key.as_str() {
            "backoff" => seen.contains("initial_backoff") || seen.contains("max_backoff"),
            "initial_backoff" | "max_backoff" => seen.contains("backoff"),
            _ => false,
        };
        if !seen.first(&key, meta, &mut errors) {
            continue;
        }
        if conflicts {
            errors.push(syn::Error::new_spanned(
                meta,
                "`backoff = \"<initial>..<max>\"` sets both `initial_backoff` and `max_backoff`; \
                 give either `backoff` or `initial_backoff`/`max_backoff`, not both",
            ));
            continue;
        }
        match key.as_str() {
            "max_attempts" => retry.max_attempts = errors.ok(max_attempts(meta)),
            "initial_backoff" => {
                if let Some((wait, literal)) = errors.ok(duration_value(meta, "\"200ms\"")) {
                    retry.initial_backoff = Some(wait);
                    initial_literal = Some(literal);
                }
            }
            "max_backoff" => {
                if let Some((wait, literal)) = errors.ok(duration_value(meta, "\"30s\"")) {
                    retry.max_backoff = Some(wait);
                    max_literal = Some(literal);
                }
            }
            "backoff" => {
                if let Some(((initial, max), literal)) = errors.ok(backoff_range(meta)) {
                    retry.initial_backoff = Some(initial);
                    retry.max_backoff = Some(max);
                    max_literal = Some(literal);
                }
            }
            "multiplier" => {
                retry.multiplier = errors.ok(bounded_number(
                    meta,
                    |multiplier| multiplier >= 1.0,
                    "`multiplier` must be a number of at least 1.0 (the factor applied to the wait \
                     after each failed attempt), e.g. `multiplier = 2.0`",
                ));
            }
            _ => {
                retry.jitter = errors.ok(bounded_number(
                    meta,
                    |jitter| (0.0..=1.0).contains(&jitter),
                    "`jitter` must be a number from 0.0 to 1.0 (the fraction by which each wait is \
                     randomly spread: 0.1 means ±10%), e.g. `jitter = 0.1`",
                ));
            }
        }
    }
    if let (Some(initial), Some(max), Some(literal)) =
        (retry.initial_backoff, retry.max_backoff, &max_literal)
        && initial > max
    {
        let mut error = syn::Error::new_spanned(
            literal,
            format!(
                "the initial backoff ({initial:?}) is longer than the maximum backoff ({max:?})"
            ),
        );
        if let Some(initial_literal) = initial_literal {
            error.combine(syn::Error::new_spanned(
                initial_literal,
                "the initial backoff is set here",
            ));
        }
        errors.push(error);
    }
    errors.finish()?;
    Ok(retry)
}

/// `max_attempts = 5`.
fn max_attempts(meta: &Meta) -> syn::Result<u32> {
    let value = value(meta, "5")?;
    let message = "`max_attempts` must be a whole number of at least 1 \
                   (the attempts in all, the first included; 1 means no retry), e.g. `max_attempts = 5`";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u32>() {
            Ok(attempts) if attempts >= 1 => Ok(attempts),
            _ => Err(syn::Error::new_spanned(int, message)),
        },
        other => Err(syn::Error::new_spanned(other, message)),
    }
}

/// `backoff = "200ms..30s"`.
fn backoff_range(meta: &Meta) -> syn::Result<((Duration, Duration), LitStr)> {
    let literal = string(meta, "\"200ms..30s\"")?;
    match duration::parse_range(&literal.value()) {
        Ok(range) => Ok((range, literal)),
        Err(message) => Err(syn::Error::new_spanned(literal, message)),
    }
}

/// `key = <number>` where the number satisfies `valid`; `message` explains what is expected.
fn bounded_number(meta: &Meta, valid: impl Fn(f64) -> bool, message: &str) -> syn::Result<f64> {
    let value = value(meta, "1.0")?;
    match number(value) {
        Some(number) if number.is_finite() && valid(number) => Ok(number),
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

/// The value of a numeric literal (integer or float, optionally negated).
fn number(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Float(float) => float.base10_parse().ok(),
            Lit::Int(int) => int.base10_parse().ok(),
            _ => None,
        },
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => number(expr).map(|number| -number),
        Expr::Group(group) => number(&group.expr),
        Expr::Paren(paren) => number(&paren.expr),
        _ => None,
    }
}

/// `key = "<duration>"`, with the literal for later messages.
fn duration_value(meta: &Meta, example: &str) -> syn::Result<(Duration, LitStr)> {
    let literal = string(meta, example)?;
    match duration::parse(&literal.value()) {
        Ok(duration) => Ok((duration, literal)),
        Err(message) => Err(syn::Error::new_spanned(literal, message)),
    }
}

/// `key = "..."`.
fn string(meta: &Meta, example: &str) -> syn::Result<LitStr> {
    let key = key_of(meta.path());
    match value(meta, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => Ok(literal.clone()),
        Expr::Group(group) => match &*group.expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(literal),
                ..
            }) => Ok(literal.clone()),
            other => Err(expected_string(&key, example, other.span())),
        },
        other => Err(expected_string(&key, example, other.span())),
    }
}

fn expected_string(key: &str, example: &str, span: Span) -> syn::Error {
    syn::Error::new(
        span,
        format!("`{key}` takes a string literal, e.g. `{key} = {example}`"),
    )
}

/// The value of `key = value`, or an error showing the expected form.
fn value<'a>(meta: &'a Meta, example: &str) -> syn::Result<&'a Expr> {
    match meta {
        Meta::NameValue(name_value) => Ok(&name_value.value),
        Meta::Path(_) | Meta::List(MetaList { .. }) => {
            let key = key_of(meta.path());
            Err(syn::Error::new_spanned(
                meta,
                format!("expected `{key} = {example}`"),
            ))
        }
    }
}

/// The option's name as written, e.g. `timeout` or `a::b`.
fn key_of(path: &Path) -> String {
    let segments = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>()
        .join("::");
    match path.leading_colon {
        Some(_) => format!("::{segments}"),
        None => segments,
    }
}

/// The options seen so far, to reject repeats.
#[derive(Default)]
struct Seen {
    keys: HashSet<String>,
}

impl Seen {
    /// Records `key`; on a repeat, records an error on `meta` and returns `false`.
    fn first(&mut self, key: &str, meta: &Meta, errors: &mut Errors) -> bool {
        if self.keys.insert(key.to_owned()) {
            return true;
        }
        errors.push(syn::Error::new_spanned(
            meta,
            format!("`{key}` is given more than once; each option may appear only once"),
        ));
        false
    }

    fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use syn::{Attribute, parse_quote};

    use super::*;

    /// Parses the arguments of an attribute written out in full.
    fn args(kind: Kind, attribute: Attribute) -> syn::Result<Args> {
        let tokens = match attribute.meta {
            Meta::List(list) => list.tokens,
            _ => TokenStream::new(),
        };
        parse(kind, tokens)
    }

    fn error(kind: Kind, attribute: Attribute) -> Vec<String> {
        args(kind, attribute)
            .expect_err("expected an error")
            .into_iter()
            .map(|error| error.to_string())
            .collect()
    }

    #[test]
    fn no_arguments() {
        let args = args(Kind::Workflow, parse_quote!(#[workflow])).unwrap();
        assert!(args.name.is_none());
        assert!(args.krate.is_none());
        assert!(args.options.is_empty());
        let args = super::parse(Kind::Activity, TokenStream::new()).unwrap();
        assert!(args.options.is_empty());
    }

    #[test]
    fn name_and_crate() {
        let args = args(
            Kind::Workflow,
            parse_quote!(#[workflow(name = "checkout-v2", crate = "my::orch",)]),
        )
        .unwrap();
        assert_eq!(args.name.as_deref(), Some("checkout-v2"));
        assert_eq!(args.krate, Some(parse_quote!(my::orch)));
        let args = super::parse(Kind::Activity, quote::quote!(crate = "::orchestrator")).unwrap();
        assert_eq!(args.krate, Some(parse_quote!(::orchestrator)));
    }

    #[test]
    fn every_retry_option() {
        let args = args(
            Kind::Activity,
            parse_quote!(#[activity(
                timeout = "10s",
                retry(
                    max_attempts = 5,
                    initial_backoff = "200ms",
                    max_backoff = "30s",
                    multiplier = 1.5,
                    jitter = 0.2,
                ),
            )]),
        )
        .unwrap();
        assert_eq!(
            args.options,
            ActivityOptions {
                retry: Some(RetryOptions {
                    max_attempts: Some(5),
                    initial_backoff: Some(Duration::from_millis(200)),
                    max_backoff: Some(Duration::from_secs(30)),
                    multiplier: Some(1.5),
                    jitter: Some(0.2),
                }),
                timeout: Some(Duration::from_secs(10)),
            }
        );
    }

    #[test]
    fn backoff_range_and_integer_numbers() {
        let args = args(
            Kind::Activity,
            parse_quote!(#[activity(retry(backoff = "1.5s..2m", multiplier = 3, jitter = 0))]),
        )
        .unwrap();
        let retry = args.options.retry.unwrap();
        assert_eq!(retry.initial_backoff, Some(Duration::from_millis(1500)));
        assert_eq!(retry.max_backoff, Some(Duration::from_secs(120)));
        assert_eq!(retry.multiplier, Some(3.0));
        assert_eq!(retry.jitter, Some(0.0));
        assert_eq!(retry.max_attempts, None);
    }

    #[test]
    fn empty_retry_list_is_an_explicit_default_policy() {
        let args = args(Kind::Activity, parse_quote!(#[activity(retry())])).unwrap();
        assert_eq!(args.options.retry, Some(RetryOptions::default()));
        assert!(!args.options.is_empty());
    }

    #[test]
    fn unknown_options_list_the_valid_ones() {
        assert_eq!(
            error(Kind::Workflow, parse_quote!(#[workflow(nam = "x")])),
            [
                "unknown option `nam` of `#[workflow]`; the options are `name = \"...\"` and `crate = \"...\"`"
            ]
        );
        let messages = error(
            Kind::Activity,
            parse_quote!(#[activity(timeot = "1s", a::b)]),
        );
        assert_eq!(messages.len(), 2);
        assert!(
            messages[0]
                .starts_with("unknown option `timeot` of `#[activity]`; the options are `name")
        );
        assert!(messages[0].contains("`retry(...)`, `timeout = \"...\"`"));
        assert!(messages[1].starts_with("unknown option `a::b`"));
        let messages = error(
            Kind::Activity,
            parse_quote!(#[activity(retry(attempts = 3))]),
        );
        assert!(messages[0].starts_with(
            "unknown option `attempts` of `retry(...)`; the options are `max_attempts`"
        ));
        let messages = error(
            Kind::Workflow,
            parse_quote!(#[workflow(retry(max_attempts = 3), timeout = "1s")]),
        );
        assert_eq!(messages.len(), 2);
        assert!(
            messages[0].starts_with("`retry` is an option of `#[activity]`, not of `#[workflow]`")
        );
        assert!(messages[1].starts_with("`timeout` is an option of `#[activity]`"));
    }

    #[test]
    fn repeated_options_are_rejected() {
        let messages = error(
            Kind::Activity,
            parse_quote!(#[activity(name = "a", name = "b", retry(jitter = 0.1, jitter = 0.2), retry())]),
        );
        assert_eq!(
            messages,
            [
                "`name` is given more than once; each option may appear only once",
                "`jitter` is given more than once; each option may appear only once",
                "`retry` is given more than once; each option may appear only once",
            ]
        );
    }

    #[test]
    fn wrong_forms_show_the_expected_one() {
        assert_eq!(
            error(Kind::Workflow, parse_quote!(#[workflow(name)])),
            ["expected `name = \"...\"`"]
        );
        assert_eq!(
            error(Kind::Workflow, parse_quote!(#[workflow(name = checkout)])),
            ["`name` takes a string literal, e.g. `name = \"...\"`"]
        );
        assert_eq!(
            error(Kind::Activity, parse_quote!(#[activity(timeout = 10)])),
            ["`timeout` takes a string literal, e.g. `timeout = \"10s\"`"]
        );
        assert!(
            error(Kind::Activity, parse_quote!(#[activity(retry = 3)]))[0]
                .starts_with("expected a list of retry options")
        );
        assert_eq!(
            error(Kind::Workflow, parse_quote!(#[workflow(name = "  ")])),
            ["`name` must not be empty"]
        );
        assert!(
            error(
                Kind::Workflow,
                parse_quote!(#[workflow(crate = "not a path")])
            )[0]
            .starts_with("`crate` must be the path of the orchestrator crate")
        );
    }

    #[test]
    fn bad_durations_list_the_units() {
        let messages = error(
            Kind::Activity,
            parse_quote!(#[activity(timeout = "10 seconds", retry(initial_backoff = "1", max_attempts = 2))]),
        );
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(messages[0].starts_with("invalid duration \"10 seconds\": unknown unit `seconds`"));
        assert!(messages[0].contains("(ns, us, ms, s, m, h or d)"));
        assert!(messages[1].starts_with("invalid duration \"1\": `1` has no unit"));
        assert_eq!(
            error(Kind::Activity, parse_quote!(#[activity(timeout = "0ms")])),
            ["`timeout` must be longer than zero"]
        );
        assert!(
            error(
                Kind::Activity,
                parse_quote!(#[activity(retry(backoff = "1s"))])
            )[0]
            .starts_with("invalid backoff range \"1s\"")
        );
    }

    #[test]
    fn backoff_conflicts_with_explicit_bounds() {
        for attribute in [
            parse_quote!(#[activity(retry(backoff = "1s..2s", initial_backoff = "1s"))]),
            parse_quote!(#[activity(retry(max_backoff = "1s", backoff = "1s..2s"))]),
        ] {
            let messages = error(Kind::Activity, attribute);
            assert_eq!(messages.len(), 1);
            assert!(messages[0].starts_with("`backoff = \"<initial>..<max>\"` sets both"));
        }
    }

    #[test]
    fn initial_backoff_must_not_exceed_max_backoff() {
        assert_eq!(
            error(
                Kind::Activity,
                parse_quote!(#[activity(retry(initial_backoff = "5s", max_backoff = "1s"))])
            ),
            [
                "the initial backoff (5s) is longer than the maximum backoff (1s)",
                "the initial backoff is set here",
            ]
        );
        assert_eq!(
            error(
                Kind::Activity,
                parse_quote!(#[activity(retry(backoff = "1m..1s"))])
            ),
            ["the initial backoff (60s) is longer than the maximum backoff (1s)"]
        );
        // Equal bounds are fine.
        assert!(
            args(
                Kind::Activity,
                parse_quote!(#[activity(retry(backoff = "1s..1000ms"))])
            )
            .is_ok()
        );
    }

    #[test]
    fn numbers_are_validated() {
        for attribute in [
            parse_quote!(#[activity(retry(max_attempts = 0))]),
            parse_quote!(#[activity(retry(max_attempts = 2.5))]),
            parse_quote!(#[activity(retry(max_attempts = -1))]),
            parse_quote!(#[activity(retry(max_attempts = 99999999999))]),
            parse_quote!(#[activity(retry(max_attempts = "3"))]),
        ] {
            assert!(
                error(Kind::Activity, attribute)[0]
                    .starts_with("`max_attempts` must be a whole number of at least 1")
            );
        }
        for attribute in [
            parse_quote!(#[activity(retry(multiplier = 0.5))]),
            parse_quote!(#[activity(retry(multiplier = -2.0))]),
            parse_quote!(#[activity(retry(multiplier = "2"))]),
        ] {
            assert!(
                error(Kind::Activity, attribute)[0]
                    .starts_with("`multiplier` must be a number of at least 1.0")
            );
        }
        for attribute in [
            parse_quote!(#[activity(retry(jitter = 1.5))]),
            parse_quote!(#[activity(retry(jitter = -0.1))]),
            parse_quote!(#[activity(retry(jitter = 2))]),
            parse_quote!(#[activity(retry(jitter = x))]),
        ] {
            assert!(
                error(Kind::Activity, attribute)[0]
                    .starts_with("`jitter` must be a number from 0.0 to 1.0")
            );
        }
        let retry = args(
            Kind::Activity,
            parse_quote!(#[activity(retry(max_attempts = 1u32, multiplier = 1, jitter = 1.0))]),
        )
        .unwrap()
        .options
        .retry
        .unwrap();
        assert_eq!(
            (retry.max_attempts, retry.multiplier, retry.jitter),
            (Some(1), Some(1.0), Some(1.0))
        );
    }

    #[test]
    fn syntax_errors_surface_from_syn() {
        assert!(args(Kind::Activity, parse_quote!(#[activity(name "x")])).is_err());
    }
}
