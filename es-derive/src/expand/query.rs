//! `#[derive(Query)]`.
//!
//! ```ignore
//! impl Query for BalanceOf {
//!     type Output = Option<u64>;
//! }
//! ```

use proc_macro2::TokenStream;
use quote::quote;

use super::wrap;
use crate::ast::QueryInput;

pub(crate) fn expand(input: &QueryInput<'_>) -> TokenStream {
    let QueryInput {
        ident,
        generics,
        output,
        krate,
    } = input;
    let Some(output) = output else {
        // Reported: without the output type there is no impl to emit.
        return TokenStream::new();
    };
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Query for #ident #ty_generics #where_clause {
            type Output = #output;
        }
    })
}
