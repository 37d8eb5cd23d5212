//! `#[derive(Command)]` on a struct.
//!
//! ```ignore
//! impl Command for Deposit {
//!     const NAME: &str = "Deposit";
//!     // spanned at `aggregate = BankAccount`: `Command::Aggregate` must
//!     // implement `Handle<Deposit>`, so a command without a handler is an
//!     // error here, at the command's definition
//!     type Aggregate = BankAccount;
//!     fn aggregate_id(&self) -> &<BankAccount as Aggregate>::Id { &self.account }
//!     // its JSON's fingerprint when it is `Serialize`, `None` otherwise
//!     fn fingerprint(&self) -> Option<Fingerprint> {
//!         (&Probe(self)).es_fingerprint("Deposit")
//!     }
//! }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wrap;
use crate::ast::{CommandStruct, lit_str};

pub(crate) fn expand(input: &CommandStruct<'_>) -> TokenStream {
    let CommandStruct {
        ident,
        generics,
        aggregate,
        id_field,
        krate,
    } = input;
    let Some(aggregate) = aggregate else {
        // Reported: without the aggregate there is no impl to emit.
        return TokenStream::new();
    };
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = lit_str(&ident.to_string(), ident.span());
    let id = match id_field {
        Some((member, ty)) => {
            // Spanned at the field's type, where a wrong id type is reported.
            quote_spanned!(ty.span()=>
                #krate::__private::IdField::<<#aggregate as #krate::Aggregate>::Id>::id_field(&self.#member)
            )
        }
        // Reported; the stub keeps the rest of the program checking.
        None => quote!(::core::unreachable!()),
    };
    let aggregate_ty = quote_spanned!(aggregate.span()=> #aggregate);
    wrap(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Command for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            type Aggregate = #aggregate_ty;

            #[inline]
            fn aggregate_id(&self) -> &<#aggregate as #krate::Aggregate>::Id {
                #id
            }

            fn fingerprint(&self) -> ::core::option::Option<#krate::__private::Fingerprint> {
                #[allow(unused_imports)]
                use #krate::__private::fingerprint::{BySerde as _, Unavailable as _};
                (&#krate::__private::fingerprint::Probe(self)).es_fingerprint(#name)
            }
        }
    })
}
