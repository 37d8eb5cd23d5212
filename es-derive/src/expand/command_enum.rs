//! `#[derive(Command)]` on an enum: commands of different aggregates, each
//! variant routed to its own aggregate (for commands that arrive as JSON over
//! HTTP or a queue).
//!
//! ```ignore
//! impl Dispatchable for BankCommand {
//!     type Output = AnyCommitted;
//!     type Rejection = AnyRejection;
//!     fn dispatch_on(self, dispatcher, metadata) -> impl Future<..> {
//!         let future: Pin<Box<dyn Future<..> + Send>> = match self {
//!             Self::Open(c) => route(c, dispatcher, metadata), // boxes
//!             ..
//!         };
//!         future
//!     }
//! }
//! impl From<OpenAccount> for BankCommand { .. }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wrap;
use crate::ast::CommandEnum;

pub(crate) fn expand(input: &CommandEnum<'_>) -> TokenStream {
    let CommandEnum {
        ident,
        generics,
        variants,
        skipped,
        krate,
    } = input;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let arms = variants.iter().map(|v| {
        let (variant, ty) = (v.ident, v.ty);
        // Spanned at the payload so "`X` cannot be dispatched" points at it.
        // Spanned at the payload, so "`X` cannot be dispatched" points at it.
        quote_spanned!(ty.span()=>
            Self::#variant(command) => #krate::__private::route::<#ty, __S, __C>(command, dispatcher, metadata),
        )
    });
    let conversions = variants.iter().map(|v| {
        let (variant, ty) = (v.ident, v.ty);
        quote! {
            #[automatically_derived]
            impl #impl_generics ::core::convert::From<#ty> for #ident #ty_generics #where_clause {
                #[inline]
                fn from(command: #ty) -> Self {
                    Self::#variant(command)
                }
            }
        }
    });
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Dispatchable for #ident #ty_generics #where_clause {
            type Output = #krate::AnyCommitted;
            type Rejection = #krate::AnyRejection;

            fn dispatch_on<__S: #krate::EventStore, __C: #krate::Codec>(
                self,
                dispatcher: &#krate::Dispatcher<__S, __C>,
                metadata: #krate::Metadata,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<#krate::AnyCommitted, #krate::DispatchError<#krate::AnyRejection>>,
            > + ::core::marker::Send + '_ {
                let future: #krate::__private::RouteFuture<'_> = match self {
                    #(#arms)*
                    #(Self::#skipped { .. } => ::core::unreachable!(),)*
                };
                future
            }
        }

        #(#conversions)*
    })
}
