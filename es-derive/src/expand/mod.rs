//! Code generation, one file per generated shape. Every output sits inside
//! `const _: () = { .. };` and names everything by absolute path.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{GenericParam, Generics};

pub(crate) mod aggregate;
pub(crate) mod command;
pub(crate) mod command_enum;
pub(crate) mod event;
pub(crate) mod event_enum;
pub(crate) mod handlers;
pub(crate) mod query;
pub(crate) mod read_side;

/// `generics` with one more type parameter (for `impl<__T> ApplyTo<__T> for ..`).
pub(crate) fn with_param(generics: &Generics, param: GenericParam) -> Generics {
    let mut g = generics.clone();
    g.params.push(param);
    g
}

/// A fresh type parameter `__EsTarget: ?Sized`, spanned at the user's type
/// (a parameter spanned at the derive makes rustc blame the derive's bounds).
pub(crate) fn target_param(span: proc_macro2::Span) -> GenericParam {
    syn::parse_quote_spanned!(span=> __EsTarget: ?::core::marker::Sized)
}

/// Every event type is its own events (`IntoEvents<Self>`), and converts
/// into the stand-in event set of an aggregate whose `event = ..` is missing
/// (see `es_core::__private::MissingEvents`).
pub(crate) fn self_into_events(krate: &syn::Path, ident: &syn::Ident, generics: &Generics) -> TokenStream {
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::IntoEvents<#ident #ty_generics> for #ident #ty_generics #where_clause {
            #[inline]
            fn into_events(self, out: &mut ::std::vec::Vec<Self>) {
                out.push(self)
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::IntoEvents<#krate::__private::MissingEvents> for #ident #ty_generics #where_clause {
            #[inline]
            fn into_events(self, _: &mut ::std::vec::Vec<#krate::__private::MissingEvents>) {}
        }
    }
}

/// Wraps generated items so their helper names never leak.
/// `tokens` with every span set to `span`.
pub(crate) fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(g) = &tree {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tree = proc_macro2::TokenTree::Group(group);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

pub(crate) fn wrap(items: TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #items
        };
    }
}

use syn::DeriveInput;

use crate::ast::handlers::HandlersInput;
use crate::ast::{AggregateInput, CommandInput, EventInput};
use crate::ctxt::Ctxt;
use crate::valid;

/// The expansion, with every recorded error appended to it. `Err` only when
/// there is nothing to emit but the errors.
fn finish(cx: Ctxt, tokens: TokenStream) -> syn::Result<TokenStream> {
    match cx.check() {
        Ok(()) => Ok(tokens),
        Err(e) if tokens.is_empty() => Err(e),
        Err(e) => {
            let errors = e.into_compile_error();
            Ok(quote!(#tokens #errors))
        }
    }
}

pub(crate) fn derive_event(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let tokens = match EventInput::from_syn(&cx, input) {
        Some(EventInput::Struct(s)) => event::expand(&s),
        Some(EventInput::Enum(mut e)) => {
            valid::unique_payloads(&cx, e.ident, &mut e.variants, &mut e.skipped, "event");
            event_enum::expand(&e)
        }
        None => TokenStream::new(),
    };
    finish(cx, tokens)
}

pub(crate) fn derive_aggregate(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let tokens = AggregateInput::from_syn(&cx, input).map_or_else(TokenStream::new, |a| aggregate::expand(&a));
    finish(cx, tokens)
}

pub(crate) fn derive_command(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let tokens = match CommandInput::from_syn(&cx, input) {
        Some(CommandInput::Struct(s)) => command::expand(&s),
        Some(CommandInput::Enum(mut e)) => {
            valid::unique_payloads(&cx, e.ident, &mut e.variants, &mut e.skipped, "command");
            command_enum::expand(&e)
        }
        None => TokenStream::new(),
    };
    finish(cx, tokens)
}

pub(crate) fn derive_query(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let tokens = crate::ast::QueryInput::from_syn(&cx, input).map_or_else(TokenStream::new, |q| query::expand(&q));
    finish(cx, tokens)
}

pub(crate) fn handlers(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: syn::ItemImpl = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), format!("`#[es_core::handlers]` goes on an `impl` block: {e}")))?;
    let cx = Ctxt::new();
    let mut input = HandlersInput::from_syn(&cx, args, item);
    valid::unique_handlers(&cx, &mut input);
    let checked = !cx.has_errors();
    finish(cx, handlers::expand(&input, checked))
}
