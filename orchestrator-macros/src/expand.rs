//! Code generation: a unit struct named after the function, the function itself as
//! `<name>::invoke`, and the `Workflow`/`Activity` and `Registrable` impls.
//!
//! Every path into the library goes through `#krate::__private`, so the generated code depends only
//! on that module (and on `::core`).

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Visibility};

use crate::parse::{ActivityOptions, Kind, Model, RetryOptions};

/// The code for a checked model.
pub(crate) fn expand(model: Model) -> TokenStream {
    let Model {
        kind,
        krate,
        name,
        function,
        signature,
        options,
    } = model;
    let private = quote!(#krate::__private);
    let ident = &function.sig.ident;
    let vis = &function.vis;

    let attributes = Attributes::split(&function.attrs);
    let struct_attrs = &attributes.on_struct;
    let cfg_attrs = &attributes.cfg;
    let fn_attrs = &attributes.on_function;

    // The user's function, renamed `invoke`, as an associated function of the struct.
    let mut invoke_sig = function.sig.clone();
    invoke_sig.ident = Ident::new("invoke", ident.span());
    let body = &function.block;
    let invoke_doc = match kind {
        Kind::Workflow => {
            "Calls the workflow function directly, outside the engine (no journaling)."
        }
        Kind::Activity => {
            "Calls the activity function directly, outside the engine (no journaling, retries or \
             timeout)."
        }
    };
    // Not `pub`: `invoke` is only a convenience, so it being unused is no news (the unit struct, which
    // is what the function's name now stands for, still gets the dead-code lint).
    let allow_dead_code = match vis {
        Visibility::Public(_) => TokenStream::new(),
        _ => quote!(#[allow(dead_code)]),
    };

    let input_types = &signature.inputs;
    let input_type = match input_types.as_slice() {
        [single] => quote!(#single),
        several => quote!((#(#several),*)),
    };
    let output = &signature.output;
    let error = &signature.error;
    let name = Literal::string(&name);

    // How `run` hands its `input` to `invoke`.
    let (unpack, input_args) = match input_types.len() {
        0 => (quote!(let () = input;), Vec::new()),
        1 => (TokenStream::new(), vec![quote!(input)]),
        count => {
            let names: Vec<Ident> = (0..count).map(|i| format_ident!("__input{}", i)).collect();
            (
                quote!(let (#(#names),*) = input;),
                names.iter().map(|n| quote!(#n)).collect(),
            )
        }
    };
    let (context_arg, drop_context) = if signature.context {
        (Some(quote!(ctx)), TokenStream::new())
    } else {
        (None, quote!(::core::mem::drop(ctx);))
    };
    let call_args = context_arg.into_iter().chain(input_args);

    let (trait_name, context_type, error_type, registration) = match kind {
        Kind::Workflow => (
            quote!(Workflow),
            quote!(WorkflowContext),
            quote!(WorkflowError),
            quote!(workflow),
        ),
        Kind::Activity => (
            quote!(Activity),
            quote!(ActivityContext),
            quote!(ActivityError),
            quote!(activity),
        ),
    };
    // Spanned on the user's error type, so that a missing `From<E>` impl is reported there. rustc
    // points at the generic argument of `Into`, so that path is respanned too.
    let error_span = error.span();
    let target = respan(quote!(#private::#error_type), error_span);
    let convert = quote_spanned! {error_span=>
        ::core::result::Result::map_err(
            #ident::invoke(#(#call_args),*).await,
            ::core::convert::Into::<#target>::into,
        )
    };
    let options_fn = options.map(|options| options_fn(&private, &options));

    quote! {
        #(#struct_attrs)*
        #[allow(non_camel_case_types)]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::default::Default,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
        )]
        #vis struct #ident;

        #(#cfg_attrs)*
        impl #ident {
            #[doc = #invoke_doc]
            #[allow(
                clippy::too_many_arguments,
                clippy::missing_errors_doc,
                clippy::missing_panics_doc
            )]
            #allow_dead_code
            #(#fn_attrs)*
            #vis #invoke_sig #body
        }

        #(#cfg_attrs)*
        impl #private::#trait_name for #ident {
            type Input = #input_type;
            type Output = #output;
            const NAME: &'static str = #name;

            #options_fn

            fn run(
                ctx: #private::#context_type,
                input: Self::Input,
            ) -> #private::BoxFuture<::core::result::Result<Self::Output, #private::#error_type>> {
                #unpack
                #drop_context
                #private::Box::pin(async move { #convert })
            }
        }

        #(#cfg_attrs)*
        impl #private::Registrable for #ident {
            fn registration(&self) -> #private::Registration {
                #private::Registration::#registration::<Self>()
            }
        }
    }
}

/// `tokens` with every token's span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            }
            token.set_span(span);
            token
        })
        .collect()
}

/// `fn options()` of an activity, setting only the given fields.
fn options_fn(private: &TokenStream, options: &ActivityOptions) -> TokenStream {
    let retry = options.retry.as_ref().map(|retry| {
        let policy = retry_policy(private, retry);
        quote!(.retry(#policy))
    });
    let timeout = options.timeout.map(|timeout| {
        let timeout = duration(private, timeout);
        quote!(.timeout(#timeout))
    });
    quote! {
        fn options() -> #private::ActivityOptions {
            #private::ActivityOptions::builder() #retry #timeout .build()
        }
    }
}

/// `RetryPolicy::builder()...build()` with the given fields.
fn retry_policy(private: &TokenStream, retry: &RetryOptions) -> TokenStream {
    let RetryOptions {
        max_attempts,
        initial_backoff,
        max_backoff,
        multiplier,
        jitter,
    } = retry;
    let max_attempts = max_attempts.map(|attempts| {
        let attempts = Literal::u32_suffixed(attempts);
        quote!(.max_attempts(#attempts))
    });
    let initial_backoff = initial_backoff.map(|wait| {
        let wait = duration(private, wait);
        quote!(.initial_backoff(#wait))
    });
    let max_backoff = max_backoff.map(|wait| {
        let wait = duration(private, wait);
        quote!(.max_backoff(#wait))
    });
    let multiplier = multiplier.map(|multiplier| {
        let multiplier = Literal::f64_suffixed(multiplier);
        quote!(.multiplier(#multiplier))
    });
    let jitter = jitter.map(|jitter| {
        let jitter = Literal::f64_suffixed(jitter);
        quote!(.jitter(#jitter))
    });
    quote! {
        #private::RetryPolicy::builder()
            #max_attempts #initial_backoff #max_backoff #multiplier #jitter
            .build()
    }
}

/// `Duration::from_nanos(N)`; the parser guarantees that `N` fits a `u64`.
fn duration(private: &TokenStream, duration: std::time::Duration) -> TokenStream {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let nanos = Literal::u64_suffixed(nanos);
    quote!(#private::Duration::from_nanos(#nanos))
}

/// The user's attributes, sorted by where they belong in the output.
struct Attributes<'a> {
    /// Documentation and `#[deprecated]`: they describe the struct, which is what users name.
    on_struct: Vec<&'a Attribute>,
    /// `#[cfg(..)]`: applies to every generated item.
    cfg: Vec<&'a Attribute>,
    /// Everything else (lint levels, `#[inline]`, other attribute macros): about the function.
    on_function: Vec<&'a Attribute>,
}

impl<'a> Attributes<'a> {
    fn split(attrs: &'a [Attribute]) -> Self {
        let mut attributes = Attributes {
            on_struct: Vec::new(),
            cfg: Vec::new(),
            on_function: Vec::new(),
        };
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("doc") || path.is_ident("deprecated") {
                attributes.on_struct.push(attr);
            } else if path.is_ident("cfg") {
                attributes.on_struct.push(attr);
                attributes.cfg.push(attr);
            } else {
                attributes.on_function.push(attr);
            }
        }
        attributes
    }
}

/// The expansion followed by `error` as `compile_error!`s: the function stays usable, so a wrong
/// option is reported once rather than again at every use of the function.
pub(crate) fn expansion_with_error(expansion: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = expansion;
    tokens.extend(error.into_compile_error());
    tokens
}

/// The user's item unchanged, followed by `error` as `compile_error!`s, so that one bad option does not
/// also break every use of the function (and IDEs keep working).
pub(crate) fn item_with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use quote::ToTokens;
    use syn::{File, ItemFn, parse_quote};

    use super::*;
    use crate::parse;

    fn expand_to_file(kind: Kind, args: TokenStream, item: ItemFn) -> File {
        let model = parse::parse(kind, args, item.into_token_stream()).unwrap();
        syn::parse2(expand(model)).unwrap()
    }

    /// Normalized token text, for comparing against expectations written with `quote!`.
    fn text(tokens: impl ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    #[test]
    fn workflow_expansion() {
        let file = expand_to_file(
            Kind::Workflow,
            quote!(),
            parse_quote! {
                /// Docs.
                #[allow(unused_variables)]
                pub async fn checkout(ctx: WorkflowContext, order: Order) -> Result<Receipt, MyErr> { body() }
            },
        );
        let expected: File = parse_quote! {
            /// Docs.
            #[allow(non_camel_case_types)]
            #[derive(
                ::core::fmt::Debug,
                ::core::clone::Clone,
                ::core::marker::Copy,
                ::core::default::Default,
                ::core::cmp::PartialEq,
                ::core::cmp::Eq,
                ::core::hash::Hash,
            )]
            pub struct checkout;

            impl checkout {
                #[doc = "Calls the workflow function directly, outside the engine (no journaling)."]
                #[allow(
                    clippy::too_many_arguments,
                    clippy::missing_errors_doc,
                    clippy::missing_panics_doc
                )]
                #[allow(unused_variables)]
                pub async fn invoke(ctx: WorkflowContext, order: Order) -> Result<Receipt, MyErr> { body() }
            }

            impl ::orchestrator::__private::Workflow for checkout {
                type Input = Order;
                type Output = Receipt;
                const NAME: &'static str = "checkout";

                fn run(
                    ctx: ::orchestrator::__private::WorkflowContext,
                    input: Self::Input,
                ) -> ::orchestrator::__private::BoxFuture<::core::result::Result<Self::Output, ::orchestrator::__private::WorkflowError>> {
                    ::orchestrator::__private::Box::pin(async move {
                        ::core::result::Result::map_err(
                            checkout::invoke(ctx, input).await,
                            ::core::convert::Into::<::orchestrator::__private::WorkflowError>::into,
                        )
                    })
                }
            }

            impl ::orchestrator::__private::Registrable for checkout {
                fn registration(&self) -> ::orchestrator::__private::Registration {
                    ::orchestrator::__private::Registration::workflow::<Self>()
                }
            }
        };
        assert_eq!(text(&file), text(&expected));
    }

    #[test]
    fn private_functions_stay_private_and_allow_dead_code() {
        let file = expand_to_file(
            Kind::Workflow,
            quote!(name = "renamed", crate = "crate::orch"),
            parse_quote!(
                async fn w(ctx: WorkflowContext) -> Result<(), E> {}
            ),
        );
        let text = text(&file);
        assert!(text.contains("struct w ;"), "{text}");
        assert!(!text.contains("pub"), "{text}");
        assert!(
            text.contains("# [allow (dead_code)] async fn invoke"),
            "{text}"
        );
        assert!(
            text.contains("const NAME : & 'static str = \"renamed\""),
            "{text}"
        );
        assert!(
            text.contains("impl crate :: orch :: __private :: Workflow for w"),
            "{text}"
        );
        assert!(text.contains("type Input = () ;"), "{text}");
        assert!(text.contains("let () = input ;"), "{text}");
        assert!(text.contains("w :: invoke (ctx) . await"), "{text}");
    }

    #[test]
    fn activity_with_context_and_several_inputs() {
        let file = expand_to_file(
            Kind::Activity,
            quote!(),
            parse_quote!(
                pub(crate) async fn a(ctx: ActivityContext, x: u8, y: String) -> Result<u8, E> {}
            ),
        );
        let text = text(&file);
        assert!(text.contains("pub (crate) struct a ;"), "{text}");
        assert!(text.contains("pub (crate) async fn invoke"), "{text}");
        assert!(
            text.contains("# [allow (dead_code)] pub (crate) async fn invoke"),
            "{text}"
        );
        assert!(text.contains("type Input = (u8 , String) ;"), "{text}");
        assert!(
            text.contains("let (__input0 , __input1) = input ;"),
            "{text}"
        );
        assert!(
            text.contains("a :: invoke (ctx , __input0 , __input1) . await"),
            "{text}"
        );
        assert!(
            text.contains("Into :: < :: orchestrator :: __private :: ActivityError > :: into"),
            "{text}"
        );
        assert!(
            text.contains("Registration :: activity :: < Self > ()"),
            "{text}"
        );
        assert!(!text.contains("fn options"), "{text}");
        assert!(!text.contains("drop"), "{text}");
    }

    #[test]
    fn activity_without_context_drops_it() {
        let text = text(expand_to_file(
            Kind::Activity,
            quote!(),
            parse_quote!(
                async fn a(x: u8) -> Result<u8, E> {}
            ),
        ));
        assert!(text.contains("type Input = u8 ;"), "{text}");
        assert!(text.contains(":: core :: mem :: drop (ctx) ;"), "{text}");
        assert!(text.contains("a :: invoke (input) . await"), "{text}");
    }

    #[test]
    fn activity_options() {
        let file = expand_to_file(
            Kind::Activity,
            quote!(
                timeout = "1.5s",
                retry(
                    max_attempts = 4,
                    backoff = "200ms..30s",
                    jitter = 0.25,
                    multiplier = 3
                )
            ),
            parse_quote!(
                async fn a() -> Result<u8, E> {}
            ),
        );
        let options = file
            .items
            .iter()
            .find_map(|item| match item {
                syn::Item::Impl(item) if item.trait_.is_some() => {
                    item.items.iter().find_map(|item| match item {
                        syn::ImplItem::Fn(function) if function.sig.ident == "options" => {
                            Some(function.clone())
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .unwrap();
        let expected: syn::ImplItemFn = parse_quote! {
            fn options() -> ::orchestrator::__private::ActivityOptions {
                ::orchestrator::__private::ActivityOptions::builder()
                    .retry(
                        ::orchestrator::__private::RetryPolicy::builder()
                            .max_attempts(4u32)
                            .initial_backoff(::orchestrator::__private::Duration::from_nanos(200000000u64))
                            .max_backoff(::orchestrator::__private::Duration::from_nanos(30000000000u64))
                            .multiplier(3f64)
                            .jitter(0.25f64)
                            .build()
                    )
                    .timeout(::orchestrator::__private::Duration::from_nanos(1500000000u64))
                    .build()
            }
        };
        assert_eq!(text(options), text(expected));
    }

    #[test]
    fn timeout_alone_keeps_the_default_retry_policy() {
        let text = text(expand_to_file(
            Kind::Activity,
            quote!(timeout = "1m"),
            parse_quote!(
                async fn a() -> Result<u8, E> {}
            ),
        ));
        assert!(!text.contains("RetryPolicy"), "{text}");
        assert!(text.contains(". timeout (:: orchestrator :: __private :: Duration :: from_nanos (60000000000u64)) . build ()"), "{text}");
    }

    #[test]
    fn attributes_are_split_between_struct_and_function() {
        let text = text(expand_to_file(
            Kind::Activity,
            quote!(),
            parse_quote! {
                #[doc = "a"]
                #[cfg(unix)]
                #[deprecated]
                #[inline]
                async fn a() -> Result<u8, E> {}
            },
        ));
        assert!(
            text.starts_with(
                "# [doc = \"a\"] # [cfg (unix)] # [deprecated] # [allow (non_camel_case_types)]"
            ),
            "{text}"
        );
        assert_eq!(text.matches("# [cfg (unix)] impl").count(), 3, "{text}");
        assert!(text.contains("# [inline] async fn invoke"), "{text}");
        assert_eq!(text.matches("deprecated").count(), 1, "{text}");
    }

    #[test]
    fn errors_keep_the_item() {
        let item = quote!(
            fn f() {}
        );
        let error = syn::Error::new(Span::call_site(), "boom");
        let text = item_with_error(item, error).to_string();
        assert!(text.starts_with("fn f () { }"), "{text}");
        assert!(text.contains("compile_error ! { \"boom\" }"), "{text}");
    }
}
