//! Parsing and checking: the attribute's arguments and the function's signature become a [`Model`]
//! that [`expand`](crate::expand) turns into code.
//!
//! Every check reports a spanned [`syn::Error`] on the offending tokens, and checks keep going after a
//! failure so that all problems are reported at once (combined with [`syn::Error::combine`]).

mod args;
mod signature;

use proc_macro2::{Span, TokenStream};
use syn::{Item, ItemFn, Path, Type};

pub(crate) use args::{ActivityOptions, RetryOptions};
pub(crate) use signature::Signature;

/// Which of the two macros is being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[workflow]`.
    Workflow,
    /// `#[activity]`.
    Activity,
}

impl Kind {
    /// The attribute as the user writes it, for messages.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Workflow => "#[workflow]",
            Kind::Activity => "#[activity]",
        }
    }
}

/// Everything the code generation needs, checked.
#[derive(Debug)]
pub(crate) struct Model {
    /// Which macro.
    pub(crate) kind: Kind,
    /// The path of the `orchestrator` crate (`::orchestrator` unless `crate = ".."` is given).
    pub(crate) krate: Path,
    /// The name recorded in the journal.
    pub(crate) name: String,
    /// The user's function, unchanged.
    pub(crate) function: ItemFn,
    /// The parameters and the return type, classified.
    pub(crate) signature: Signature,
    /// The activity's options; `None` when no option changes the defaults (and always for workflows).
    pub(crate) options: Option<ActivityOptions>,
}

/// What parsing found: the model, when the function itself is usable, and every error.
///
/// An error in the attribute's arguments still yields a model (the invalid options keep their
/// defaults), so the function is expanded as usual and only the real error is reported, not a
/// "trait not satisfied" error at every place that uses the function. Errors in the function's
/// signature yield no model: the function is then re-emitted unchanged next to the errors.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The checked model, if the function and its signature are usable.
    pub(crate) model: Option<Model>,
    /// Every error found, combined.
    pub(crate) error: Option<syn::Error>,
}

/// Parses and checks `#[kind(args)] item`, failing on any error.
#[cfg(test)]
pub(crate) fn parse(kind: Kind, args: TokenStream, item: TokenStream) -> syn::Result<Model> {
    let Parsed { model, error } = parse_lenient(kind, args, item);
    match (model, error) {
        (_, Some(error)) => Err(error),
        (Some(model), None) => Ok(model),
        (None, None) => Err(syn::Error::new(
            Span::call_site(),
            "internal error in orchestrator-macros",
        )),
    }
}

/// Parses and checks `#[kind(args)] item`, keeping a model whenever only the arguments are wrong.
pub(crate) fn parse_lenient(kind: Kind, args: TokenStream, item: TokenStream) -> Parsed {
    let mut errors = Errors::default();
    let args = args::parse_lenient(kind, args, &mut errors);
    let function = errors.ok(parse_function(kind, item));
    let signature = match &function {
        Some(function) => errors.ok(signature::check(kind, &function.sig)),
        None => None,
    };
    let model = match (function, signature) {
        (Some(function), Some(signature)) => {
            let name = args
                .name
                .unwrap_or_else(|| syn::ext::IdentExt::unraw(&function.sig.ident).to_string());
            let krate = args
                .krate
                .unwrap_or_else(|| syn::parse_quote!(::orchestrator));
            let options = Some(args.options).filter(|options| !options.is_empty());
            Some(Model {
                kind,
                krate,
                name,
                function,
                signature,
                options,
            })
        }
        _ => None,
    };
    Parsed {
        model,
        error: errors.error,
    }
}

/// The annotated item, which must be a function.
fn parse_function(kind: Kind, item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<Item>(item)? {
        Item::Fn(function) => Ok(function),
        _ => Err(syn::Error::new(
            Span::call_site(),
            format!(
                "`{}` can only be applied to an `async fn`",
                kind.attribute()
            ),
        )),
    }
}

/// Collects errors so that all of them are reported, not only the first.
#[derive(Default)]
pub(crate) struct Errors {
    error: Option<syn::Error>,
}

impl Errors {
    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.error {
            Some(first) => first.combine(error),
            None => self.error = Some(error),
        }
    }

    /// The value of `result`, or `None` after recording its error.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// `Err` with every recorded error combined, if any was recorded.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Whether `ty` is a path whose last segment is `name` without generic arguments (e.g.
/// `WorkflowContext` or `orchestrator::WorkflowContext`).
pub(crate) fn is_named(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Group(group) => is_named(&group.elem, name),
        Type::Paren(paren) => is_named(&paren.elem, name),
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == name && segment.arguments.is_none())
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use quote::{ToTokens, quote};
    use syn::parse_quote;

    use super::*;

    fn parse_item(kind: Kind, args: TokenStream, item: ItemFn) -> syn::Result<Model> {
        parse(kind, args, item.into_token_stream())
    }

    fn messages(error: syn::Error) -> Vec<String> {
        error.into_iter().map(|error| error.to_string()).collect()
    }

    #[test]
    fn workflow_defaults() {
        let model = parse_item(
            Kind::Workflow,
            quote!(),
            parse_quote! {
                pub async fn checkout(ctx: WorkflowContext, order: Order) -> Result<Receipt, MyErr> { todo!() }
            },
        )
        .unwrap();
        assert_eq!(model.kind, Kind::Workflow);
        assert_eq!(model.name, "checkout");
        assert_eq!(model.krate, parse_quote!(::orchestrator));
        assert!(model.options.is_none());
        assert!(model.signature.context);
        assert_eq!(model.signature.inputs, vec![parse_quote!(Order)]);
        assert_eq!(model.signature.output, parse_quote!(Receipt));
        assert_eq!(model.signature.error, parse_quote!(MyErr));
    }

    #[test]
    fn raw_identifiers_are_named_without_their_prefix() {
        let model = parse_item(
            Kind::Activity,
            quote!(),
            parse_quote!(
                async fn r#match() -> Result<(), E> {
                    todo!()
                }
            ),
        )
        .unwrap();
        assert_eq!(model.name, "match");
    }

    #[test]
    fn activity_with_every_option() {
        let model = parse_item(
            Kind::Activity,
            quote!(name = "charge", crate = "orch", timeout = "10s", retry(max_attempts = 5, backoff = "1s..1m")),
            parse_quote! {
                async fn charge_card(ctx: ActivityContext, card: Card, amount: u64) -> Result<ChargeId, PaymentError> { todo!() }
            },
        )
        .unwrap();
        assert_eq!(model.name, "charge");
        assert_eq!(model.krate, parse_quote!(orch));
        let options = model.options.unwrap();
        assert_eq!(options.timeout, Some(std::time::Duration::from_secs(10)));
        assert_eq!(options.retry.unwrap().max_attempts, Some(5));
        assert!(model.signature.context);
        assert_eq!(model.signature.inputs.len(), 2);
    }

    #[test]
    fn argument_and_signature_errors_are_all_reported() {
        let error = parse_item(
            Kind::Workflow,
            quote!(nme = "x"),
            parse_quote!(
                fn checkout<T>(order: T) -> Receipt {
                    todo!()
                }
            ),
        )
        .unwrap_err();
        let messages = messages(error);
        assert_eq!(messages.len(), 5, "{messages:#?}");
        assert!(
            messages[0].starts_with("unknown option `nme`"),
            "{messages:#?}"
        );
        assert!(
            messages[1].contains("must be an `async fn`"),
            "{messages:#?}"
        );
        assert!(messages[2].contains("generic"), "{messages:#?}");
        assert!(messages[3].contains("WorkflowContext"), "{messages:#?}");
        assert!(messages[4].contains("Result<T, E>"), "{messages:#?}");
    }

    #[test]
    fn argument_errors_still_yield_a_model_with_defaults() {
        let item: ItemFn = parse_quote! {
            async fn charge(cents: u64) -> Result<u64, ActivityError> { todo!() }
        };
        let parsed = parse_lenient(
            Kind::Activity,
            quote!(name = "pay", timeout = "soon", retry(max_attempts = 0)),
            item.into_token_stream(),
        );
        let model = parsed.model.unwrap();
        assert_eq!(model.name, "pay", "valid options are kept");
        assert!(model.options.is_none(), "invalid ones keep their defaults");
        assert_eq!(messages(parsed.error.unwrap()).len(), 2);
    }

    #[test]
    fn signature_errors_yield_no_model() {
        let item: ItemFn = parse_quote! {
            fn charge(cents: u64) -> Result<u64, ActivityError> { todo!() }
        };
        let parsed = parse_lenient(Kind::Activity, quote!(), item.into_token_stream());
        assert!(parsed.model.is_none());
        assert!(parsed.error.is_some());
    }

    #[test]
    fn only_functions_are_accepted() {
        let error = parse(
            Kind::Activity,
            quote!(),
            quote!(
                struct NotAFunction;
            ),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`#[activity]` can only be applied to an `async fn`"
        );
    }

    #[test]
    fn recognises_types_by_their_last_segment() {
        assert!(is_named(&parse_quote!(WorkflowContext), "WorkflowContext"));
        assert!(is_named(
            &parse_quote!(orchestrator::WorkflowContext),
            "WorkflowContext"
        ));
        assert!(is_named(
            &parse_quote!((WorkflowContext)),
            "WorkflowContext"
        ));
        assert!(!is_named(
            &parse_quote!(WorkflowContext<T>),
            "WorkflowContext"
        ));
        assert!(!is_named(
            &parse_quote!(&WorkflowContext),
            "WorkflowContext"
        ));
        assert!(!is_named(
            &parse_quote!(<T as Tr>::WorkflowContext),
            "WorkflowContext"
        ));
        assert!(!is_named(&parse_quote!(ActivityContext), "WorkflowContext"));
    }
}
