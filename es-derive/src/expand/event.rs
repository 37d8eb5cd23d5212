//! `#[derive(Event)]` on a struct: one stored event.
//!
//! ```ignore
//! impl Event for MoneyWithdrawn {
//!     const NAMES: &[&str] = &["account.withdrawn", /* aliases */];
//!     const SINGLE: bool = true;
//!     const VERSION: u32 = 4;
//!     const SUPERSEDED: bool = false;            // true with `next = ..`
//!     fn name(&self) -> &'static str { "account.withdrawn" }
//!     fn version(&self) -> u32 { 4 }
//!     fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> { codec.encode(self) }
//!     fn decode(codec, name, version, payload) -> Result<Self, _> {
//!         // refuse an unknown name or a newer version; the current version
//!         // decodes as is; an older one goes up the chain and must make one
//!     }
//!     fn decode_each(codec, name, version, payload, each) -> Result<(), _> {
//!         // the same, handing each event the chain makes to `each`
//!     }
//! }
//! // with `older = [V1, V2, V3]`: each step written once, so one broken
//! // link is one error, at its entry in the list
//! fn __es_older(codec, version, payload) -> Result<Vec<MoneyWithdrawn>, _> {
//!     let (mut v1, mut v2, mut v3, mut out) = (vec![], vec![], vec![], vec![]);
//!     match version { 1 => v1.push(decode V1), 2 => v2.push(decode V2), 3 => .., _ => error }
//!     for e in v1 { <V1 as UpcastTo<V2>>::upcast_to(e, &mut v2) }
//!     for e in v2 { <V2 as UpcastTo<V3>>::upcast_to(e, &mut v3) }
//!     for e in v3 { <V3 as UpcastTo<MoneyWithdrawn>>::upcast_to(e, &mut out) }
//!     Ok(out)
//! }
//! const _: () = assert!(<V2 as Event>::VERSION == 2, "..");  // no gap, no repeat
//! // with `next = V2` (an older version): the step, through `From`
//! impl Upcast for V1 { type Next = V2; fn upcast(self, out) { out.push(V2::from(self)) } }
//! impl<T: Apply<MoneyWithdrawn> + ?Sized> ApplyTo<T> for MoneyWithdrawn { .. target.apply(self) .. }
//! impl IntoEvents<MoneyWithdrawn> for MoneyWithdrawn { .. out.push(self) .. }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::{target_param, with_param, wrap};
use crate::ast::{EventStruct, lit_str, type_name};
use syn::spanned::Spanned;

pub(crate) fn expand(input: &EventStruct<'_>) -> TokenStream {
    let EventStruct {
        ident,
        generics,
        name,
        name_span,
        version,
        aliases,
        older,
        next,
        custom_upcast,
        personal,
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
    let encode_into = quote_spanned!(ident.span()=> <Self as #krate::__private::Storable>::encode_into_with::<__C>);
    // A struct with personal fields binds each to its subject once decoded.
    let decode = if personal.is_empty() {
        quote_spanned!(ident.span()=> <Self as #krate::__private::Storable>::decode_with::<__C>)
    } else {
        quote_spanned!(ident.span()=> #krate::__private::decode_bound::<Self, __C>)
    };
    let personal_items = personal_items(krate, personal);
    let shape = quote_spanned!(ident.span()=> <Self as #krate::__private::Storable>::shape);
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
    let superseded = next.is_some();
    // What an older stored version becomes: without `older`, it decodes as
    // the current struct (serde defaults fill added fields); with it, it
    // goes up the chain.
    let (older_one, older_each, chain) = if older.is_empty() {
        (
            quote!(#decode(codec, payload)),
            quote!({
                each(#decode(codec, payload)?);
                ::core::result::Result::Ok(())
            }),
            TokenStream::new(),
        )
    } else {
        (
            quote!(#krate::__private::exactly_one(__es_older(codec, version, payload)?, #name, version)),
            quote!({
                for event in __es_older(codec, version, payload)? {
                    each(event);
                }
                ::core::result::Result::Ok(())
            }),
            chain(input, &name),
        )
    };
    let upcast = next.as_ref().filter(|_| !custom_upcast).map(|next| {
        quote_spanned! {next.span()=>
            #[automatically_derived]
            impl #impl_generics #krate::Upcast for #ident #ty_generics #where_clause {
                type Next = #next;

                #[inline]
                fn upcast(self, out: &mut ::std::vec::Vec<#next>) {
                    out.push(<#next as #krate::__private::FromOlder<Self>>::from_older(self))
                }
            }
        }
    });
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #storable {
            const NAMES: &'static [&'static str] = &[#name #(, #aliases)*];
            const SINGLE: bool = true;
            const VERSION: u32 = #version;
            const SUPERSEDED: bool = #superseded;
            #personal_items

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
            fn encode_into<__C: #krate::Codec>(
                &self,
                codec: &__C,
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), #krate::CodecError> {
                #encode_into(self, codec, out)
            }

            #[inline]
            fn decode<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, #krate::EventDecodeError> {
                if !<Self as #krate::Event>::knows(name) {
                    return ::core::result::Result::Err(
                        #krate::__private::unknown_name::<Self>(name, <Self as #krate::Event>::NAMES),
                    );
                }
                <Self as #krate::Event>::decode_known(codec, name, version, payload)
            }

            #[inline]
            fn decode_known<__C: #krate::Codec>(
                codec: &__C,
                _name: &str,
                version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, #krate::EventDecodeError> {
                if version == #version {
                    return #decode(codec, payload);
                }
                if version > #version {
                    return ::core::result::Result::Err(#krate::__private::newer_version(#name, version, #version));
                }
                // Versions start at 1: a 0 is corrupt data, not an older
                // version to read as the current one.
                if version == 0 {
                    return ::core::result::Result::Err(#krate::__private::unknown_version(#name, 0, #version));
                }
                #older_one
            }

            fn describe(out: &mut ::std::vec::Vec<#krate::schema::EventShape>) {
                #krate::__private::describe::<Self>(
                    #name,
                    #version,
                    &<Self as #krate::Event>::NAMES[1..],
                    !#superseded,
                    #shape(),
                    out,
                );
                #(<#older as #krate::Event>::describe(out);)*
            }

            #[inline]
            fn decode_each<__C: #krate::Codec>(
                codec: &__C,
                name: &str,
                version: u32,
                payload: &[u8],
                each: impl ::core::ops::FnMut(Self),
            ) -> ::core::result::Result<(), #krate::EventDecodeError> {
                if !<Self as #krate::Event>::knows(name) {
                    return ::core::result::Result::Err(
                        #krate::__private::unknown_name::<Self>(name, <Self as #krate::Event>::NAMES),
                    );
                }
                <Self as #krate::Event>::decode_each_known(codec, name, version, payload, each)
            }

            #[inline]
            fn decode_each_known<__C: #krate::Codec>(
                codec: &__C,
                _name: &str,
                version: u32,
                payload: &[u8],
                mut each: impl ::core::ops::FnMut(Self),
            ) -> ::core::result::Result<(), #krate::EventDecodeError> {
                if version == #version {
                    each(#decode(codec, payload)?);
                    return ::core::result::Result::Ok(());
                }
                if version > #version {
                    return ::core::result::Result::Err(#krate::__private::newer_version(#name, version, #version));
                }
                if version == 0 {
                    return ::core::result::Result::Err(#krate::__private::unknown_version(#name, 0, #version));
                }
                #older_each
            }
        }

        #chain

        #upcast

        #apply_to

        #self_events
    })
}

/// The decoder of older versions (`older = [..]`) and its compile-time
/// checks: each entry has the event's stored name (or one of its aliases)
/// and the version of its place in the list, and each step leads to the
/// next entry, the last to the current struct.
fn chain(input: &EventStruct<'_>, name: &syn::LitStr) -> TokenStream {
    let EventStruct {
        ident,
        version,
        older,
        krate,
        ..
    } = input;
    let vars: Vec<syn::Ident> = (1..=older.len()).map(|k| quote::format_ident!("__es_v{k}")).collect();
    let arms = older.iter().zip(&vars).enumerate().map(|(i, (ty, var))| {
        let k = (i + 1) as u32;
        quote_spanned!(ty.span()=> #k => #var.push(<#ty as #krate::__private::Storable>::decode_with::<__C>(codec, payload)?),)
    });
    let steps = older.iter().enumerate().map(|(i, ty)| {
        let from = &vars[i];
        let (into, next_ty) = match (vars.get(i + 1), older.get(i + 1)) {
            (Some(var), Some(next)) => (quote!(#var), quote!(#next)),
            _ => (quote!(__es_out), quote!(#ident)),
        };
        quote_spanned! {ty.span()=>
            for event in #from {
                <#ty as #krate::__private::UpcastTo<#next_ty>>::upcast_to(event, &mut #into);
            }
        }
    });
    let checks = older.iter().enumerate().map(|(i, ty)| {
        let k = (i + 1) as u32;
        let place = match k {
            1 => "1st".to_owned(),
            2 => "2nd".to_owned(),
            3 => "3rd".to_owned(),
            k => format!("{k}th"),
        };
        let version_message = format!(
            "`older` of `{ident}` lists `{}` {place}, so it must be version {k} of `{}`, and it is not: list every older version once, version 1 first, with no gap",
            type_name(ty),
            name.value()
        );
        let name_message = format!(
            "`older` of `{ident}` lists `{}`, whose stored name is not `{}` nor one of its aliases: an older version keeps the event's stored name (after a rename, add the old name to `aliases = [..]`)",
            type_name(ty),
            name.value()
        );
        quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(<#ty as #krate::Event>::VERSION == #k, #version_message);
            const _: () = ::core::assert!(
                #krate::__private::names_overlap(&[<#ty as #krate::Event>::NAMES[0]], <#ident as #krate::Event>::NAMES),
                #name_message
            );
        }
    });
    quote! {
        #[allow(clippy::vec_init_then_push)]
        fn __es_older<__C: #krate::Codec>(
            codec: &__C,
            version: u32,
            payload: &[u8],
        ) -> ::core::result::Result<::std::vec::Vec<#ident>, #krate::EventDecodeError> {
            #(let mut #vars = ::std::vec::Vec::new();)*
            let mut __es_out = ::std::vec::Vec::new();
            match version {
                #(#arms)*
                _ => return ::core::result::Result::Err(#krate::__private::unknown_version(#name, version, #version)),
            }
            #(#steps)*
            ::core::result::Result::Ok(__es_out)
        }

        #(#checks)*
    }
}

/// `PERSONAL` and the binding of each personal field to its subject.
fn personal_items(krate: &syn::Path, personal: &[crate::ast::personal::PersonalField]) -> TokenStream {
    if personal.is_empty() {
        return TokenStream::new();
    }
    let binds = personal.iter().map(|p| {
        let field = &p.field;
        let subject = &p.subject;
        let field_name = field.to_string();
        // Spanned at the subject in the attribute: a subject of a type
        // that cannot be an id is reported there.
        let subject_value = quote_spanned!(subject.span()=> #krate::personal::__subject(&self.#subject));
        quote! {
            self.#field.__bind(&#subject_value, #field_name)?;
        }
    });
    quote! {
        const PERSONAL: bool = true;

        fn bind_personal(&mut self) -> ::core::result::Result<(), ::std::string::String> {
            #(#binds)*
            ::core::result::Result::Ok(())
        }
    }
}
