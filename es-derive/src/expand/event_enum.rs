//! `#[derive(Event)]` on an enum: an aggregate's set of events.
//!
//! ```ignore
//! impl Event for AccountEvent {
//!     const NAMES: &[&str] = &[<AccountOpened as Event>::NAMES[0], ..];
//!     fn name(&self) -> &'static str { match self { Self::Opened(e) => e.name(), .. } }
//!     fn encode(..) { match self { Self::Opened(e) => e.encode(codec), .. } }
//!     fn decode(..) {
//!         if <AccountOpened as Event>::knows(name) { return AccountOpened::decode(..).map(Self::Opened) }
//!         ..
//!         Err(unknown name)
//!     }
//! }
//! impl From<AccountOpened> for AccountEvent { .. }
//! impl TryFrom<AccountEvent> for AccountOpened { type Error = AccountEvent; .. }
//! impl IntoEvents<AccountEvent> for AccountOpened { .. }   // and for AccountEvent itself
//! impl<T: Apply<AccountOpened> + Apply<..> + ?Sized> ApplyTo<T> for AccountEvent { match .. }
//! //   and decode_apply_to: the same routing by name as `decode`, applying the
//! //   decoded payload instead of building the enum.
//! // compile-time checks (non-generic enums): each payload has one stored
//! // name, and no two payloads share one.
//! const _: () = match first_overlap(&[<AccountOpened as Event>::NAMES], <MoneyDeposited as Event>::NAMES) {
//!     Some((0, name)) => panic!("{}", ConstMessage::new().push("..`Opened` and `Deposited` share the stored name `").push(name)..),
//!     _ => {}
//! };
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{target_param, with_param, wrap};
use crate::ast::{EventEnum, type_name};

pub(crate) fn expand(input: &EventEnum<'_>) -> TokenStream {
    let EventEnum {
        ident,
        generics,
        variants,
        skipped,
        krate,
    } = input;
    let unreachable = quote!(#(Self::#skipped { .. } => ::core::unreachable!(),)*);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let names: Vec<_> = variants.iter().map(|v| v.ident).collect();
    let tys: Vec<_> = variants.iter().map(|v| v.ty).collect();
    // Each use of a payload as an `Event` is spanned at the payload type, so
    // "`X` is not an event" points at the variant.
    let as_event: Vec<_> = tys
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as #krate::Event>))
        .collect();

    let with_target = with_param(generics, target_param(ident.span()));
    let (target_impl_generics, _, _) = with_target.split_for_impl();
    let mut target_where = generics
        .where_clause
        .clone()
        .unwrap_or_else(|| syn::parse_quote_spanned!(ident.span()=> where));
    target_where
        .predicates
        .push(syn::parse_quote_spanned!(ident.span()=> __EsTarget: #(#krate::Apply<#tys>)+*));

    let conversions = variants.iter().map(|v| {
        let (variant, ty) = (v.ident, v.ty);
        quote! {
            #[automatically_derived]
            impl #impl_generics ::core::convert::From<#ty> for #ident #ty_generics #where_clause {
                #[inline]
                fn from(event: #ty) -> Self {
                    Self::#variant(event)
                }
            }

            #[automatically_derived]
            impl #impl_generics ::core::convert::TryFrom<#ident #ty_generics> for #ty #where_clause {
                type Error = #ident #ty_generics;

                #[inline]
                #[allow(unreachable_patterns)]
                fn try_from(event: #ident #ty_generics) -> ::core::result::Result<Self, Self::Error> {
                    match event {
                        #ident::#variant(e) => ::core::result::Result::Ok(e),
                        other => ::core::result::Result::Err(other),
                    }
                }
            }

            #[automatically_derived]
            impl #impl_generics #krate::IntoEvents<#ident #ty_generics> for #ty #where_clause {
                #[inline]
                fn into_events(self, out: &mut ::std::vec::Vec<#ident #ty_generics>) {
                    out.push(#ident::#variant(self))
                }
            }
        }
    });

    let checks = if generics.params.is_empty() {
        compile_time_checks(input)
    } else {
        // Constants cannot name the enum's type parameters; a generic event
        // enum relies on the decoder's first-match order instead.
        TokenStream::new()
    };

    let decode = by_name(
        krate,
        &as_event,
        as_event
            .iter()
            .zip(&names)
            .map(|(p, v)| quote!(#p::decode_known(codec, name, version, payload).map(Self::#v))),
    );
    let decode_each = by_name(
        krate,
        &as_event,
        as_event
            .iter()
            .zip(&names)
            .map(|(p, v)| quote!(#p::decode_each_known(codec, name, version, payload, |event| each(Self::#v(event))))),
    );
    let decode_and_apply = by_name(
        krate,
        &as_event,
        as_event.iter().zip(&tys).map(|(p, ty)| {
            quote!(#p::decode_each_known(codec, name, version, payload, |event| #krate::Apply::<#ty>::apply(target, &event)))
        }),
    );
    // Every name of every payload (aliases included); a generic enum (whose
    // constants cannot be sized from its payloads) lists each one's first.
    let all_names = if generics.params.is_empty() {
        quote!({
            const __ES_COUNT: usize = 0 #(+ #as_event::NAMES.len())*;
            const __ES_NAMES: [&str; __ES_COUNT] = #krate::__private::concat_names(&[#(#as_event::NAMES),*]);
            &__ES_NAMES
        })
    } else {
        quote!(&[#(#as_event::NAMES[0]),*])
    };
    // Spanned at the user's type, so a missing `Apply` is reported there.
    // The whole header carries that span (none of it the derive's), or rustc
    // takes this for a derive's bound and suggests implementing `ApplyTo` by
    // hand; the body keeps the payload types' own spans.
    let header = super::respan(
        quote!(impl #target_impl_generics #krate::ApplyTo<__EsTarget> for #ident #ty_generics #target_where),
        ident.span(),
    );
    let apply_to = quote_spanned! {ident.span()=>
        #[automatically_derived]
        #header {
            #[inline]
            fn apply_to(&self, target: &mut __EsTarget) {
                match self {
                    #(Self::#names(e) => #krate::Apply::<#tys>::apply(target, e),)*
                    #unreachable
                }
            }

            #[inline]
            fn decode_apply_to<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
                target: &mut __EsTarget,
            ) -> ::core::result::Result<(), #krate::EventDecodeError> {
                #decode_and_apply
            }
        }
    };
    let self_events = super::self_into_events(krate, ident, generics);
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
            const NAMES: &'static [&'static str] = #all_names;
            const PERSONAL: bool = false #(|| #as_event::PERSONAL)*;

            #[inline]
            fn bind_personal(&mut self) -> ::core::result::Result<(), ::std::string::String> {
                match self {
                    #(Self::#names(e) => #as_event::bind_personal(e),)*
                    #unreachable
                }
            }

            #[inline]
            fn name(&self) -> &'static str {
                match self {
                    #(Self::#names(e) => #as_event::name(e),)*
                    #unreachable
                }
            }

            #[inline]
            fn version(&self) -> u32 {
                match self {
                    #(Self::#names(e) => #as_event::version(e),)*
                    #unreachable
                }
            }

            #[inline]
            fn encode<__C: #krate::Codec>(
                &self,
                codec: &__C,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::CodecError> {
                match self {
                    #(Self::#names(e) => #as_event::encode(e, codec),)*
                    #unreachable
                }
            }

            #[inline]
            fn encode_into<__C: #krate::Codec>(
                &self,
                codec: &__C,
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), #krate::CodecError> {
                match self {
                    #(Self::#names(e) => #as_event::encode_into(e, codec, out),)*
                    #unreachable
                }
            }

            #[inline]
            fn decode<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, #krate::EventDecodeError> {
                #decode
            }

            fn describe(out: &mut ::std::vec::Vec<#krate::schema::EventShape>) {
                #(#as_event::describe(out);)*
            }

            #[inline]
            fn decode_each<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
                mut each: impl ::core::ops::FnMut(Self),
            ) -> ::core::result::Result<(), #krate::EventDecodeError> {
                #decode_each
            }
        }

        #self_events

        #apply_to

        #(#conversions)*

        #checks
    })
}

/// Routes a stored event to the first payload type that knows `name` and
/// returns that payload's `then`; an unknown name is an error listing the
/// enum's names.
fn by_name(krate: &syn::Path, as_event: &[TokenStream], then: impl Iterator<Item = TokenStream>) -> TokenStream {
    quote! {
        #(
            if #as_event::knows(name) {
                return #then;
            }
        )*
        ::core::result::Result::Err(#krate::__private::unknown_name::<Self>(name, <Self as #krate::Event>::NAMES))
    }
}

/// Each payload must be one event struct, and no two payloads may share a
/// stored name: decoding goes by name, so the second could never be read.
fn compile_time_checks(input: &EventEnum<'_>) -> TokenStream {
    let EventEnum {
        ident, variants, krate, ..
    } = input;
    let mut out = TokenStream::new();
    for (i, v) in variants.iter().enumerate() {
        let ty = v.ty;
        let single = format!(
            "the payload of `{ident}::{}` must be one event struct (`#[derive(Event)]` on a struct), not a set of events",
            v.ident
        );
        let current = format!(
            "the payload of `{ident}::{}`, `{}`, is an older version of an event (it has `next = ..`): put the current version in `{ident}`; older ones are read through its `older = [..]`",
            v.ident,
            type_name(ty)
        );
        out.extend(quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(<#ty as #krate::Event>::SINGLE, #single);
            const _: () = ::core::assert!(!<#ty as #krate::Event>::SUPERSEDED, #current);
        });
        if i == 0 {
            continue;
        }
        let earlier = variants[..i].iter().map(|e| e.ty);
        let arms = variants[..i].iter().enumerate().map(|(j, e)| {
            let before = format!(
                "event enum `{ident}`: the payloads of `{}` (`{}`) and `{}` (`{}`) share the stored event name `",
                e.ident,
                type_name(e.ty),
                v.ident,
                type_name(ty)
            );
            let after = "` (a name or an alias), so the second could never be decoded; give one of them another `#[event(name = \"..\")]`, or drop the alias";
            quote_spanned! {ty.span()=>
                ::core::option::Option::Some((#j, name)) => ::core::panic!(
                    "{}",
                    #krate::__private::ConstMessage::new().push(#before).push(name).push(#after).as_str()
                ),
            }
        });
        out.extend(quote_spanned! {ty.span()=>
            const _: () = match #krate::__private::first_overlap(
                &[#(<#earlier as #krate::Event>::NAMES),*],
                <#ty as #krate::Event>::NAMES,
            ) {
                #(#arms)*
                _ => {}
            };
        });
    }
    out
}
