//! Stubs emitted next to an error, so one mistake gives one error.
//!
//! Where the input is too broken to expand (the wrong item kind), the macro
//! emits the error alone; where it is only partly wrong, `expand/` generates
//! the impls from the parts that are right and stubs the rest (a command
//! with no `#[aggregate_id]` field still implements `Command`, a handler with
//! the wrong receiver still implements `Apply`/`Handle`). What remains here
//! is the attribute macro's last resort: the user's impl block untouched, so
//! its methods still exist while the error is fixed.

use proc_macro2::TokenStream;
use quote::quote;

/// The input of `#[handlers]` when it does not even parse as an impl block.
pub(crate) fn handlers_unparsed(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote! {
        #error
        #item
    }
}

/// A handler marker on a method whose impl block lacks
/// `#[es_core::handlers]`: one error that names the fix, at the method's
/// name, and the method as it was.
pub(crate) fn marker_outside_handlers(marker: &str, item: TokenStream) -> TokenStream {
    let at = syn::parse2::<syn::ImplItemFn>(item.clone())
        .map(|f| f.sig.ident.span())
        .unwrap_or_else(|_| proc_macro2::Span::call_site());
    let error = syn::Error::new(
        at,
        format!(
            "`#[{marker}]` is read by `#[es_core::handlers]` on the `impl` block around this method, and that block has none: add `#[es_core::handlers]` above the `impl` (or `#[es_core::handlers(read_model)]`, `#[es_core::handlers(process, command = ..)]`)"
        ),
    )
    .into_compile_error();
    quote! {
        #error
        #item
    }
}
