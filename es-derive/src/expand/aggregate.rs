//! `#[derive(Aggregate)]`.
//!
//! ```ignore
//! impl Aggregate for BankAccount {
//!     const NAME: &str = "bank_account";
//!     type Id = AccountId;
//!     type Event = AccountEvent;
//!     type Error = AccountError;
//!     type Services = ();
//!     fn apply(&mut self, event: &AccountEvent) {
//!         // spanned at `event = AccountEvent`: a missing `#[apply]` is
//!         // reported there, naming the aggregate and the event
//!         <AccountEvent as ApplyTo<Self>>::apply_to(event, self)
//!     }
//!     // with `snapshot_every = N`: SNAPSHOT_EVERY, SNAPSHOT_VERSION and
//!     // encode_snapshot / decode_snapshot through the codec
//! }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wrap;
use crate::ast::{AggregateInput, lit_str};

pub(crate) fn expand(input: &AggregateInput<'_>) -> TokenStream {
    let AggregateInput {
        ident,
        generics,
        name,
        id,
        event,
        error,
        services,
        snapshot_every,
        snapshot_version,
        snapshot_untraced,
        krate,
    } = input;
    let (Some(id), Some(error)) = (id, error) else {
        // A required key is missing and was reported; without its type
        // there is no impl to emit.
        return TokenStream::new();
    };
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = lit_str(name, ident.span());
    let services = services.clone().unwrap_or_else(|| syn::parse_quote!(()));
    let (event, apply, apply_stored) = match event {
        Some(event) => {
            let apply_to = quote_spanned!(event.span()=> <#event as #krate::ApplyTo<Self>>::apply_to);
            let apply_stored = quote! {
                #[inline]
                fn apply_stored<__C: #krate::Codec>(
                    &mut self,
                    codec: &__C,
                    name: &str,
                    version: u32,
                    payload: &[u8],
                ) -> ::core::result::Result<(), #krate::EventDecodeError> {
                    <#event as #krate::ApplyTo<Self>>::decode_apply_to(codec, name, version, payload, self)
                }
            };
            (quote!(#event), quote!(#apply_to(event, self)), apply_stored)
        }
        // `event = ..` is missing and was reported: an uninhabited stand-in
        // keeps the handlers type-checking, so that is the only error.
        None => (
            quote!(#krate::__private::MissingEvents),
            quote!(match *event {}),
            quote!(),
        ),
    };
    // Spanned at the user's type: a missing `Default` is one error, there.
    let initial = quote_spanned!(ident.span()=> <Self as #krate::__private::InitialState>::initial_state);
    let snapshots = snapshot_every.as_ref().map(|every| {
        let version = snapshot_version.as_ref().map_or_else(|| quote!(1), |v| quote!(#v));
        // The arguments are the generated function's own (call-site) names,
        // never respanned: inside a `macro_rules!` macro the user's span
        // carries the macro's hygiene, and they would not be found.
        let (codec, this, bytes) = (quote!(codec), quote!(self), quote!(bytes));
        let encode = quote_spanned!(ident.span()=> #krate::Codec::encode(#codec, #this));
        let decode = quote_spanned!(ident.span()=> #krate::Codec::decode::<Self>(#codec, #bytes));
        // A shape that cannot be traced turns snapshots off, loudly, unless
        // the user said so (`snapshot_untraced`: the version alone tells).
        let fingerprint = if *snapshot_untraced {
            quote!(0)
        } else {
            quote_spanned!(ident.span()=> #krate::__private::snapshot_fingerprint::<Self>(#name))
        };
        // Traced once; a generic aggregate's instances each have their own
        // shape, and a static in a generic function would be shared.
        let fingerprint = if generics.params.is_empty() {
            quote! {
                static FINGERPRINT: ::std::sync::OnceLock<u64> = ::std::sync::OnceLock::new();
                *FINGERPRINT.get_or_init(|| #fingerprint)
            }
        } else {
            fingerprint
        };
        quote! {
            const SNAPSHOT_EVERY: u64 = #every;
            const SNAPSHOT_VERSION: u32 = #version;

            fn snapshot_fingerprint() -> u64 {
                #fingerprint
            }

            fn encode_snapshot<__C: #krate::Codec>(
                &self,
                codec: &__C,
            ) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, #krate::CodecError>> {
                ::core::option::Option::Some(#encode)
            }

            fn decode_snapshot<__C: #krate::Codec>(
                codec: &__C,
                bytes: &[u8],
            ) -> ::core::option::Option<::core::result::Result<Self, #krate::CodecError>> {
                ::core::option::Option::Some(#decode)
            }
        }
    });
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Aggregate for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            type Id = #id;
            type Event = #event;
            type Error = #error;
            type Services = #services;

            #snapshots

            #[inline]
            fn initial() -> Self {
                #initial()
            }

            #[inline]
            fn apply(&mut self, event: &Self::Event) {
                #apply
            }

            #apply_stored
        }
    })
}
