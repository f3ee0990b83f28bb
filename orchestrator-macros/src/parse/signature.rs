//! Checks of the annotated function's signature: `async`, no generics or receiver, the context
//! parameter, plain parameter names, owned input types, and a `Result<T, E>` return type.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{FnArg, GenericArgument, Pat, PathArguments, ReturnType, Type};

use super::{Errors, Kind, is_named};

/// The classified parameters and return type of an annotated function.
#[derive(Debug)]
pub(crate) struct Signature {
    /// Whether the first parameter is the context (always true for a workflow).
    pub(crate) context: bool,
    /// The types of the parameters after the context (at most one for a workflow).
    pub(crate) inputs: Vec<Type>,
    /// `T` of `Result<T, E>`.
    pub(crate) output: Type,
    /// `E` of `Result<T, E>`.
    pub(crate) error: Type,
}

/// Checks `signature` for `kind`.
pub(crate) fn check(kind: Kind, signature: &syn::Signature) -> syn::Result<Signature> {
    let attribute = kind.attribute();
    let mut errors = Errors::default();

    if signature.asyncness.is_none() {
        let fn_token = &signature.fn_token;
        let ident = &signature.ident;
        errors.push(syn::Error::new_spanned(
            quote!(#fn_token #ident),
            format!("`{attribute}` functions must be an `async fn`: write `async fn {ident}`"),
        ));
    }
    if let Some(constness) = &signature.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            format!("`{attribute}` functions cannot be `const`"),
        ));
    }
    if let Some(unsafety) = &signature.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            format!("`{attribute}` functions cannot be `unsafe`"),
        ));
    }
    if let Some(abi) = &signature.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            format!("`{attribute}` functions cannot declare an ABI"),
        ));
    }
    if let Some(variadic) = &signature.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            format!("`{attribute}` functions cannot be variadic"),
        ));
    }
    let generics = &signature.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        let tokens = match &generics.where_clause {
            Some(where_clause) if generics.params.is_empty() => where_clause.to_token_stream(),
            _ => generics.to_token_stream(),
        };
        errors.push(syn::Error::new_spanned(
            tokens,
            format!(
                "generic functions are not supported by `{attribute}`: inputs and outputs are \
                 stored in the journal, so their types must be concrete (lifetime parameters included)"
            ),
        ));
    }

    let (context, inputs) = parameters(kind, signature, &mut errors);
    let result = errors.ok(result_types(kind, &signature.output));
    errors.finish()?;
    let Some((output, error)) = result else {
        // `finish` returned `Ok`, so the return type was accepted; this is only a fallback.
        return Err(syn::Error::new_spanned(
            &signature.output,
            "internal error in orchestrator-macros",
        ));
    };
    Ok(Signature {
        context,
        inputs,
        output,
        error,
    })
}

/// Classifies the parameters: whether there is a context, and the input types after it.
fn parameters(kind: Kind, signature: &syn::Signature, errors: &mut Errors) -> (bool, Vec<Type>) {
    let attribute = kind.attribute();
    let (context_type, other_context) = match kind {
        Kind::Workflow => ("WorkflowContext", "ActivityContext"),
        Kind::Activity => ("ActivityContext", "WorkflowContext"),
    };
    let mut context = false;
    let mut inputs = Vec::new();
    // The parameters after the context, for the "too many inputs" error.
    let mut extra_inputs = Vec::new();

    for (position, argument) in signature.inputs.iter().enumerate() {
        let typed = match argument {
            FnArg::Receiver(receiver) => {
                errors.push(syn::Error::new_spanned(
                    receiver,
                    format!(
                        "`self` receivers are not supported: `{attribute}` must be applied to a \
                         free function, not a method"
                    ),
                ));
                continue;
            }
            FnArg::Typed(typed) => typed,
        };
        check_pattern(kind, &typed.pat, errors);
        let ty = &*typed.ty;

        if is_named(ty, context_type) {
            if position == 0 {
                context = true;
            } else {
                errors.push(syn::Error::new_spanned(
                    ty,
                    format!("the `{context_type}` must be the first parameter"),
                ));
            }
            continue;
        }
        if let Type::Reference(reference) = ty
            && is_named(&reference.elem, context_type)
        {
            errors.push(syn::Error::new_spanned(
                ty,
                format!("take the context by value: `ctx: {context_type}`"),
            ));
            if position == 0 {
                context = true;
            }
            continue;
        }
        if is_named(ty, other_context) {
            let what = match kind {
                Kind::Workflow => {
                    "a workflow receives a `WorkflowContext`, not an `ActivityContext`"
                }
                Kind::Activity => {
                    "an activity receives an `ActivityContext`, not a `WorkflowContext`"
                }
            };
            errors.push(syn::Error::new_spanned(ty, what));
            continue;
        }
        if kind == Kind::Workflow && position == 0 {
            errors.push(missing_workflow_context(typed.to_token_stream()));
            continue;
        }
        check_input_type(kind, ty, errors);
        if kind == Kind::Workflow && !inputs.is_empty() {
            extra_inputs.push(typed);
        }
        inputs.push(ty.clone());
    }

    if kind == Kind::Workflow {
        let has_receiver_only = signature
            .inputs
            .iter()
            .all(|argument| matches!(argument, FnArg::Receiver(_)));
        if has_receiver_only {
            let parens = signature.paren_token.span.join();
            errors.push(syn::Error::new(
                parens,
                "missing context: the first parameter of a `#[workflow]` function must be \
                 `ctx: WorkflowContext`",
            ));
        }
        if !extra_inputs.is_empty() {
            errors.push(syn::Error::new_spanned(
                quote!(#(#extra_inputs),*),
                format!(
                    "a `#[workflow]` function takes at most one input after the context, found {}; \
                     gather the inputs into one serializable struct (or a tuple)",
                    inputs.len()
                ),
            ));
        }
    }
    (context, inputs)
}

fn missing_workflow_context(tokens: TokenStream) -> syn::Error {
    syn::Error::new_spanned(
        tokens,
        "missing context: the first parameter of a `#[workflow]` function must be \
         `ctx: WorkflowContext`",
    )
}

/// Parameters must bind a plain name: `x`, `mut x`, `_x` or `_`.
fn check_pattern(kind: Kind, pattern: &Pat, errors: &mut Errors) {
    let message = match pattern {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => return,
        Pat::Wild(_) => return,
        Pat::Ident(ident) if ident.by_ref.is_some() => "`ref` bindings are not supported",
        _ => "destructuring patterns are not supported",
    };
    errors.push(syn::Error::new_spanned(
        pattern,
        format!(
            "{message} in the parameters of `{}` functions; bind a plain name (e.g. \
             `order: Order`) and destructure it in the body",
            kind.attribute()
        ),
    ));
}

/// Inputs are deserialized from the journal, so they must be owned, concrete types.
fn check_input_type(kind: Kind, ty: &Type, errors: &mut Errors) {
    match ty {
        Type::Reference(_) => errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "borrowed parameters are not supported by `{}`: inputs are deserialized from the \
                 journal, so take an owned type (e.g. `String` rather than `&str`)",
                kind.attribute()
            ),
        )),
        Type::ImplTrait(_) => errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "`impl Trait` parameters are not supported by `{}`; use a concrete type",
                kind.attribute()
            ),
        )),
        _ => {}
    }
}

/// `T` and `E` of the required `-> Result<T, E>`.
fn result_types(kind: Kind, output: &ReturnType) -> syn::Result<(Type, Type)> {
    let attribute = kind.attribute();
    let required = format!(
        "`{attribute}` functions must return `Result<T, E>` with both type arguments written out \
         (aliases such as `anyhow::Result<T>` are not recognized)"
    );
    let ty = match output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                output,
                format!("missing return type: {required}"),
            ));
        }
    };
    if let Some(pair) = result_arguments(ty) {
        for ty in [&pair.0, &pair.1] {
            if let Type::ImplTrait(_) = ty {
                return Err(syn::Error::new_spanned(
                    ty,
                    format!(
                        "`impl Trait` is not supported in the return type of `{attribute}`; use a concrete type"
                    ),
                ));
            }
        }
        return Ok(pair);
    }
    Err(syn::Error::new_spanned(ty, required))
}

/// `(T, E)` if `ty` is `Result<T, E>` (any path ending in `Result`).
fn result_arguments(ty: &Type) -> Option<(Type, Type)> {
    let path = match ty {
        Type::Group(group) => return result_arguments(&group.elem),
        Type::Paren(paren) => return result_arguments(&paren.elem),
        Type::Path(path) if path.qself.is_none() => &path.path,
        _ => return None,
    };
    let segment = path.segments.last()?;
    if segment.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    let mut types = arguments.args.iter().map(|argument| match argument {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(output)), Some(Some(error)), None) => Some((output, error)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use syn::{ItemFn, parse_quote};

    use super::*;

    fn check_fn(kind: Kind, function: ItemFn) -> syn::Result<Signature> {
        check(kind, &function.sig)
    }

    fn errors(kind: Kind, function: ItemFn) -> Vec<String> {
        check_fn(kind, function)
            .expect_err("expected an error")
            .into_iter()
            .map(|error| error.to_string())
            .collect()
    }

    #[test]
    fn workflow_inputs() {
        let signature = check_fn(
            Kind::Workflow,
            parse_quote!(
                async fn w(mut ctx: orchestrator::WorkflowContext, _order: Order) -> Result<(), E> {
                }
            ),
        )
        .unwrap();
        assert!(signature.context);
        assert_eq!(signature.inputs, vec![parse_quote!(Order)]);
        let signature = check_fn(
            Kind::Workflow,
            parse_quote!(
                async fn w(_: WorkflowContext) -> std::result::Result<Vec<u8>, E> {}
            ),
        )
        .unwrap();
        assert!(signature.inputs.is_empty());
        assert_eq!(signature.output, parse_quote!(Vec<u8>));
    }

    #[test]
    fn activity_inputs() {
        let signature = check_fn(
            Kind::Activity,
            parse_quote!(
                async fn a(ctx: ActivityContext, a: u32, b: String) -> Result<u8, E> {}
            ),
        )
        .unwrap();
        assert!(signature.context);
        assert_eq!(
            signature.inputs,
            vec![parse_quote!(u32), parse_quote!(String)]
        );
        let signature = check_fn(
            Kind::Activity,
            parse_quote!(
                async fn a(a: u32) -> Result<u8, E> {}
            ),
        )
        .unwrap();
        assert!(!signature.context);
        assert_eq!(signature.inputs.len(), 1);
        let signature = check_fn(
            Kind::Activity,
            parse_quote!(
                async fn a() -> Result<u8, E> {}
            ),
        )
        .unwrap();
        assert!(!signature.context);
        assert!(signature.inputs.is_empty());
    }

    #[test]
    fn not_async() {
        assert_eq!(
            errors(
                Kind::Activity,
                parse_quote!(
                    fn a() -> Result<(), E> {}
                )
            ),
            ["`#[activity]` functions must be an `async fn`: write `async fn a`"]
        );
    }

    #[test]
    fn qualifiers_and_generics() {
        let messages = errors(
            Kind::Activity,
            parse_quote!(
                const unsafe extern "C" fn a<'a, T>() -> Result<(), E>
                where
                    T: Send,
                {
                }
            ),
        );
        assert_eq!(messages.len(), 5, "{messages:#?}");
        assert!(messages[4].starts_with("generic functions are not supported by `#[activity]`"));
        let messages = errors(
            Kind::Activity,
            parse_quote!(
                async fn a() -> Result<(), E>
                where
                    u8: Send,
                {
                }
            ),
        );
        assert!(messages[0].starts_with("generic functions"));
    }

    #[test]
    fn receivers() {
        let messages = errors(
            Kind::Activity,
            parse_quote!(
                async fn a(&self) -> Result<(), E> {}
            ),
        );
        assert_eq!(
            messages,
            [
                "`self` receivers are not supported: `#[activity]` must be applied to a free function, not a method"
            ]
        );
        let messages = errors(
            Kind::Workflow,
            parse_quote!(
                async fn w(self) -> Result<(), E> {}
            ),
        );
        assert_eq!(messages.len(), 2);
        assert!(messages[1].starts_with("missing context"));
    }

    #[test]
    fn workflow_context_is_required_first() {
        let missing = "missing context: the first parameter of a `#[workflow]` function must be `ctx: WorkflowContext`";
        assert_eq!(
            errors(
                Kind::Workflow,
                parse_quote!(
                    async fn w() -> Result<(), E> {}
                )
            ),
            [missing]
        );
        assert_eq!(
            errors(
                Kind::Workflow,
                parse_quote!(
                    async fn w(order: Order) -> Result<(), E> {}
                )
            ),
            [missing]
        );
        assert_eq!(
            errors(
                Kind::Workflow,
                parse_quote!(
                    async fn w(order: Order, ctx: WorkflowContext) -> Result<(), E> {}
                )
            ),
            [missing, "the `WorkflowContext` must be the first parameter"]
        );
        assert_eq!(
            errors(
                Kind::Workflow,
                parse_quote!(
                    async fn w(ctx: &WorkflowContext) -> Result<(), E> {}
                )
            ),
            ["take the context by value: `ctx: WorkflowContext`"]
        );
        assert_eq!(
            errors(
                Kind::Workflow,
                parse_quote!(
                    async fn w(ctx: ActivityContext) -> Result<(), E> {}
                )
            ),
            ["a workflow receives a `WorkflowContext`, not an `ActivityContext`"]
        );
    }

    #[test]
    fn activity_context_placement() {
        assert_eq!(
            errors(
                Kind::Activity,
                parse_quote!(
                    async fn a(x: u8, ctx: ActivityContext) -> Result<(), E> {}
                )
            ),
            ["the `ActivityContext` must be the first parameter"]
        );
        assert_eq!(
            errors(
                Kind::Activity,
                parse_quote!(
                    async fn a(ctx: WorkflowContext) -> Result<(), E> {}
                )
            ),
            ["an activity receives an `ActivityContext`, not a `WorkflowContext`"]
        );
    }

    #[test]
    fn workflow_takes_one_input() {
        let messages = errors(
            Kind::Workflow,
            parse_quote!(
                async fn w(ctx: WorkflowContext, a: u8, b: u8, c: u8) -> Result<(), E> {}
            ),
        );
        assert_eq!(messages.len(), 1);
        assert!(messages[0].starts_with(
            "a `#[workflow]` function takes at most one input after the context, found 3"
        ));
    }

    #[test]
    fn patterns_and_input_types() {
        let messages = errors(
            Kind::Activity,
            parse_quote!(
                async fn a((x, y): (u8, u8), ref z: u8, s: &str, i: impl Send) -> Result<(), E> {}
            ),
        );
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].starts_with(
            "destructuring patterns are not supported in the parameters of `#[activity]` functions"
        ));
        assert!(messages[1].starts_with("`ref` bindings are not supported"));
        assert!(messages[2].starts_with("borrowed parameters are not supported"));
        assert!(messages[3].starts_with("`impl Trait` parameters are not supported"));
    }

    #[test]
    fn return_type_must_be_a_two_argument_result() {
        for function in [
            parse_quote!(
                async fn a() {}
            ),
            parse_quote!(
                async fn a() -> u8 {}
            ),
            parse_quote!(
                async fn a() -> anyhow::Result<u8> {}
            ),
            parse_quote!(
                async fn a() -> Result<u8, E, F> {}
            ),
            parse_quote!(
                async fn a() -> Result {}
            ),
            parse_quote!(
                async fn a() -> Option<u8> {}
            ),
            parse_quote!(
                async fn a() -> <X as Y>::Result<u8, E> {}
            ),
        ] {
            let messages = errors(Kind::Activity, function);
            assert_eq!(messages.len(), 1);
            assert!(
                messages[0].contains(
                    "`#[activity]` functions must return `Result<T, E>` with both type arguments"
                ),
                "{messages:?}"
            );
        }
        assert!(
            errors(
                Kind::Activity,
                parse_quote!(
                    async fn a() {}
                )
            )[0]
            .starts_with("missing return type")
        );
        assert!(
            errors(
                Kind::Activity,
                parse_quote!(
                    async fn a() -> Result<impl Send, E> {}
                )
            )[0]
            .starts_with("`impl Trait` is not supported in the return type")
        );
        let signature = check_fn(
            Kind::Activity,
            parse_quote!(
                async fn a() -> core::result::Result<u8, Box<dyn Error>> {}
            ),
        )
        .unwrap();
        assert_eq!(signature.error, parse_quote!(Box<dyn Error>));
    }
}
