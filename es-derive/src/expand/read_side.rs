//! `#[es_core::handlers(read_model)]` and `#[es_core::handlers(process, ..)]`.
//!
//! ```ignore
//! // a read model in memory
//! impl Project<MoneyDeposited> for Balances { fn project(&mut self, e, ctx) { Balances::deposited(self, e, ctx) } }
//! impl Answer<BalanceOf> for Balances { fn answer(&self, q) -> <BalanceOf as Query>::Output { Balances::balance_of(self, q) } }
//! impl ReadModel for Balances {
//!     fn handles(name: &str) -> bool { <MoneyDeposited as Event>::knows(name) || .. }
//!     fn apply_recorded(&mut self, codec, recorded) -> Result<bool, EventDecodeError> {
//!         if <MoneyDeposited as Event>::knows(recorded.name) { decode, project, return Ok(true) }
//!         ..
//!         Ok(false) // not ours: skipped without decoding
//!     }
//! }
//! // a read model in a database: ProjectIn<E, Tx> per handler, and
//! impl ReadModelIn<Tx> for Ledger { /* the same routing, awaiting each handler in `tx` */ }
//! // a process
//! impl Process for Transfers {
//!     type Command = BankCommand;
//!     fn react_recorded(&self, codec, recorded, ctx, out) -> Result<bool, EventDecodeError> {
//!         if <TransferRequested as Event>::knows(recorded.name) {
//!             out.extend(Transfers::requested(self, &decoded, ctx).into_iter().map(Into::into));
//!             return Ok(true);
//!         }
//!         ..
//!     }
//! }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::handlers::HandlersInput;
use crate::ast::read_side::{AnswerFn, ProjectFn, ReactFn};

pub(crate) fn read_model(input: &HandlersInput, projections: &[ProjectFn], answers: &[AnswerFn]) -> TokenStream {
    let mut out = TokenStream::new();
    for p in projections {
        out.extend(match &p.tx {
            None => project_impl(input, p),
            Some(_) => project_in_impl(input, p),
        });
    }
    for a in answers {
        out.extend(answer_impl(input, a));
    }
    let in_memory: Vec<&ProjectFn> = projections.iter().filter(|p| p.tx.is_none()).collect();
    if !in_memory.is_empty() {
        out.extend(read_model_impl(input, &in_memory));
    }
    let in_database: Vec<&ProjectFn> = projections.iter().filter(|p| p.tx.is_some()).collect();
    if !in_database.is_empty() {
        out.extend(read_model_in_impl(input, &in_database));
    }
    out
}

fn project_impl(input: &HandlersInput, p: &ProjectFn) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let (method, event) = (&p.method, &p.event);
    let body = match (p.callable, p.context) {
        (true, true) => quote!(<#self_ty>::#method(self, event, context)),
        (true, false) => quote!({
            let _ = context;
            <#self_ty>::#method(self, event)
        }),
        (false, _) => quote!({
            let _ = (event, context, <#self_ty>::#method);
        }),
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Project<#event> for #self_ty #where_clause {
            #[inline]
            fn project(&mut self, event: &#event, context: &#krate::EventContext<'_>) {
                #body
            }
        }
    }
}

fn project_in_impl(input: &HandlersInput, p: &ProjectFn) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let (method, event) = (&p.method, &p.event);
    let Some(tx) = &p.tx else { return TokenStream::new() };
    let args = if p.context {
        quote!(self, event, context, tx)
    } else {
        quote!(self, event, {
            let _ = context;
            tx
        })
    };
    let call = if p.is_async {
        quote!(<#self_ty>::#method(#args).await)
    } else {
        quote!(<#self_ty>::#method(#args))
    };
    let body = if p.callable {
        quote! {
            match #call {
                ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
                ::core::result::Result::Err(e) => ::core::result::Result::Err(::core::convert::Into::into(e)),
            }
        }
    } else {
        quote!({
            let _ = (event, context, tx, <#self_ty>::#method);
            ::core::unreachable!()
        })
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::ProjectIn<#event, #tx> for #self_ty #where_clause {
            fn project_in<'__es>(
                &'__es self,
                event: &'__es #event,
                context: &'__es #krate::EventContext<'__es>,
                tx: &'__es mut #tx,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<(), #krate::BoxError>>
                   + ::core::marker::Send + '__es {
                async move { #body }
            }
        }
    }
}

fn answer_impl(input: &HandlersInput, a: &AnswerFn) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let (method, query) = (&a.method, &a.query);
    let body = match (&a.output, a.callable) {
        // Spanned at the declared return type, where a mismatch with the
        // query's output is reported.
        (Some(output), true) => quote_spanned!(output.span()=>
            #krate::__private::QueryOutput::<<#query as #krate::Query>::Output>::into_output(<#self_ty>::#method(self, query))
        ),
        _ => quote!({
            let _ = (query, <#self_ty>::#method);
            ::core::unreachable!()
        }),
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Answer<#query> for #self_ty #where_clause {
            #[inline]
            fn answer(&self, query: #query) -> <#query as #krate::Query>::Output {
                #body
            }
        }
    }
}

/// `false || <E1 as Event>::knows(name) || ..`
fn handles<'a>(krate: &syn::Path, events: impl Iterator<Item = &'a syn::Type>) -> TokenStream {
    // `name` is the generated function's own (see `super::located`).
    let name = quote!(name);
    let events = events.map(|e| quote_spanned!(e.span()=> <#e as #krate::Event>::knows(#name)));
    quote!(false #(|| #events)*)
}

/// Decodes the `recorded` event in scope, whose name `event` knows, into
/// each event it stands for today (one, or several after an upcast that
/// splits it), calling `each` with each.
fn decode_recorded(krate: &syn::Path, event: &syn::Type, each: TokenStream) -> TokenStream {
    quote! {
        <#event as #krate::Event>::decode_each_known(
            codec, recorded.name, recorded.schema_version, recorded.payload, #each,
        )
    }
}

/// The union of the context fields the handlers read, or every field if one
/// of them may use any.
fn context_fields(krate: &syn::Path, fns: &[&ProjectFn]) -> TokenStream {
    let mut names: Vec<&'static str> = Vec::new();
    for p in fns {
        let Some(used) = &p.fields else {
            return quote!(#krate::store::ContextFields::CONTEXT);
        };
        for &name in used {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let names = names.iter().map(|n| syn::Ident::new(n, proc_macro2::Span::call_site()));
    quote!(#krate::store::ContextFields::NONE #(.union(#krate::store::ContextFields::#names))*)
}

fn read_model_impl(input: &HandlersInput, fns: &[&ProjectFn]) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let handles = handles(krate, fns.iter().map(|p| &p.event));
    let fields = context_fields(krate, fns);
    let routes = fns.iter().map(|p| {
        let event = &p.event;
        let decode = decode_recorded(
            krate,
            event,
            quote!(|event| <Self as #krate::Project<#event>>::project(self, &event, &context)),
        );
        quote! {
            if <#event as #krate::Event>::knows(recorded.name) {
                #decode?;
                return ::core::result::Result::Ok(true);
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::ReadModel for #self_ty #where_clause {
            #[inline]
            fn handles(name: &str) -> bool {
                #handles
            }

            const CONTEXT_FIELDS: #krate::store::ContextFields = #fields;

            fn apply_recorded<__C: #krate::Codec>(
                &mut self,
                codec: &__C,
                recorded: &#krate::store::RecordedEvent<'_>,
            ) -> ::core::result::Result<bool, #krate::EventDecodeError> {
                let context = #krate::EventContext::from(recorded);
                #(#routes)*
                ::core::result::Result::Ok(false)
            }
        }
    }
}

fn read_model_in_impl(input: &HandlersInput, fns: &[&ProjectFn]) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let Some(tx) = fns.first().and_then(|p| p.tx.as_ref()) else {
        return TokenStream::new();
    };
    let handles = handles(krate, fns.iter().map(|p| &p.event));
    let routes = fns.iter().map(|p| {
        let event = &p.event;
        let decode = decode_recorded(krate, event, quote!(|event| events.push(event)));
        quote! {
            if <#event as #krate::Event>::knows(recorded.name) {
                let mut events = ::std::vec::Vec::<#event>::with_capacity(1);
                if let ::core::result::Result::Err(source) = #decode {
                    return ::core::result::Result::Err(#krate::SubscriptionError::from(
                        #krate::__private::decode_error(recorded, source),
                    ));
                }
                for event in &events {
                    let done = <Self as #krate::ProjectIn<#event, #tx>>::project_in(self, event, &context, &mut *tx).await;
                    if let ::core::result::Result::Err(source) = done {
                        return ::core::result::Result::Err(#krate::SubscriptionError::Handler {
                            subscription: ::std::string::String::from(::core::any::type_name::<Self>()),
                            event_name: ::std::string::String::from(recorded.name),
                            position: recorded.position,
                            source,
                        });
                    }
                }
                return ::core::result::Result::Ok(true);
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::ReadModelIn<#tx> for #self_ty #where_clause {
            #[inline]
            fn handles(name: &str) -> bool {
                #handles
            }

            fn apply_recorded_in<'__es, __C: #krate::Codec>(
                &'__es self,
                codec: &'__es __C,
                recorded: &'__es #krate::store::RecordedEvent<'__es>,
                tx: &'__es mut #tx,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<bool, #krate::SubscriptionError>>
                   + ::core::marker::Send + '__es {
                async move {
                    let context = #krate::EventContext::from(recorded);
                    #(#routes)*
                    ::core::result::Result::Ok(false)
                }
            }
        }
    }
}

pub(crate) fn process(input: &HandlersInput, command: &syn::Type, reactions: &[ReactFn]) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let handles = handles(krate, reactions.iter().map(|r| &r.event));
    let routes = reactions.iter().map(|r: &ReactFn| {
        let (event, method) = (&r.event, &r.method);
        let call = match (r.callable, r.context) {
            (true, true) => {
                let (this, event, context) = (quote!(self), quote!(event), quote!(context));
                quote_spanned!(method.span()=> <#self_ty>::#method(#this, &#event, #context))
            }
            (true, false) => {
                let (this, event) = (quote!(self), quote!(event));
                quote_spanned!(method.span()=> <#self_ty>::#method(#this, &#event))
            }
            (false, _) => quote!({
                let _ = <#self_ty>::#method;
                ::core::option::Option::<#command>::None
            }),
        };
        // The command type re-spanned at the method, so a command the
        // enum does not hold is reported there, once.
        let command_here = super::respan(quote!(#command), method.span());
        let push = quote_spanned!(method.span()=>
            ::core::iter::Extend::extend(
                out,
                ::core::iter::Iterator::map(
                    ::core::iter::IntoIterator::into_iter(#call),
                    #krate::__private::IntoCommand::<#command_here>::into_command,
                ),
            )
        );
        let decode = decode_recorded(krate, event, quote!(|event| #push));
        quote! {
            if <#event as #krate::Event>::knows(recorded.name) {
                #decode?;
                return ::core::result::Result::Ok(true);
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Process for #self_ty #where_clause {
            type Command = #command;

            #[inline]
            fn handles(name: &str) -> bool {
                #handles
            }

            fn react_recorded<__C: #krate::Codec>(
                &self,
                codec: &__C,
                recorded: &#krate::store::RecordedEvent<'_>,
                context: &#krate::EventContext<'_>,
                out: &mut ::std::vec::Vec<#command>,
            ) -> ::core::result::Result<bool, #krate::EventDecodeError> {
                let _ = context;
                #(#routes)*
                ::core::result::Result::Ok(false)
            }
        }
    }
}
