//! `#[derive(Event)]` on a struct: one stored event.
//!
//! ```ignore
//! impl Event for MoneyDeposited {
//!     const NAMES: &[&str] = &["MoneyDeposited"];
//!     fn name(&self) -> &'static str { "MoneyDeposited" }
//!     fn version(&self) -> u32 { 1 }
//!     fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> { codec.encode(self) }
//!     fn decode<C: Codec>(codec: &C, name: &str, version: u32, payload: &[u8]) -> Result<Self, EventDecodeError> {
//!         // refuse another name or a newer version, then codec.decode(payload)
//!     }
//! }
//! impl<T: Apply<MoneyDeposited> + ?Sized> ApplyTo<T> for MoneyDeposited { .. target.apply(self) .. }
//! impl IntoEvents<MoneyDeposited> for MoneyDeposited { .. out.push(self) .. }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::{target_param, with_param, wrap};
use crate::ast::{EventStruct, lit_str};

pub(crate) fn expand(input: &EventStruct<'_>) -> TokenStream {
    let EventStruct {
        ident,
        generics,
        name,
        name_span,
        version,
        krate,
    } = input;
    let name = lit_str(name, *name_span);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    // Generic events need the serde bounds on the impl; for the others the
    // bodies check them, once, with a message that names the fix.
    let storable = if generics.params.is_empty() {
        where_clause.cloned()
    } else {
        let mut w = generics
            .where_clause
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(where));
        w.predicates.push(syn::parse_quote!(Self: #krate::__private::Storable));
        Some(w)
    };
    let with_target = with_param(generics, target_param(ident.span()));
    let (target_impl_generics, _, _) = with_target.split_for_impl();
    let mut target_where = generics
        .where_clause
        .clone()
        .unwrap_or_else(|| syn::parse_quote_spanned!(ident.span()=> where));
    target_where
        .predicates
        .push(syn::parse_quote_spanned!(ident.span()=> __EsTarget: #krate::Apply<#ident #ty_generics>));
    let encode = quote_spanned!(ident.span()=> <Self as #krate::__private::Storable>::encode_with::<__C>);
    let decode = quote_spanned!(ident.span()=> <Self as #krate::__private::Storable>::decode_with::<__C>);
    // Spanned at the user's type, so a missing `Apply` is reported there.
    let apply_to = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #target_impl_generics #krate::ApplyTo<__EsTarget> for #ident #ty_generics #target_where {
            #[inline]
            fn apply_to(&self, target: &mut __EsTarget) {
                #krate::Apply::<#ident #ty_generics>::apply(target, self)
            }
        }
    };
    let self_events = super::self_into_events(krate, ident, generics);
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #storable {
            const NAMES: &'static [&'static str] = &[#name];

            #[inline]
            fn name(&self) -> &'static str {
                #name
            }

            #[inline]
            fn version(&self) -> u32 {
                #version
            }

            #[inline]
            fn encode<__C: #krate::Codec>(
                &self,
                codec: &__C,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::CodecError> {
                #encode(self, codec)
            }

            #[inline]
            fn decode<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, #krate::EventDecodeError> {
                if name != #name {
                    return ::core::result::Result::Err(
                        #krate::__private::unknown_name::<Self>(name, <Self as #krate::Event>::NAMES),
                    );
                }
                if version > #version {
                    return ::core::result::Result::Err(#krate::__private::newer_version(#name, version, #version));
                }
                #decode(codec, payload)
            }

            #[inline]
            fn decode_known<__C: #krate::Codec>(
                codec: &__C,
                _name: &str,
                version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, #krate::EventDecodeError> {
                if version > #version {
                    return ::core::result::Result::Err(#krate::__private::newer_version(#name, version, #version));
                }
                #decode(codec, payload)
            }
        }

        #apply_to

        #self_events
    })
}
