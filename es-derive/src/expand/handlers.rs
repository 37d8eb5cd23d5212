//! `#[es_core::handlers]` on an inherent impl block.
//!
//! ```ignore
//! impl BankAccount { /* the methods, marker attributes removed */ }
//! const _: () = {
//!     impl Apply<MoneyDeposited> for BankAccount {
//!         fn apply(&mut self, event: &MoneyDeposited) { BankAccount::deposited(self, event) }
//!     }
//!     // everything but the body spanned at `BankAccount` in `impl BankAccount`
//!     impl Handle<Deposit> for BankAccount {
//!         fn handle(&self, command: &Deposit, services: &<BankAccount as Aggregate>::Services)
//!             -> Result<Vec<<BankAccount as Aggregate>::Event>, <BankAccount as Aggregate>::Error>
//!         {
//!             // spanned at the method's return type
//!             Decision::<Self, <BankAccount as Aggregate>::Event, <BankAccount as Aggregate>::Error>
//!                 ::into_decision(BankAccount::deposit(self, command))
//!         }
//!     }
//! };
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wrap;
use crate::ast::handlers::{ApplyFn, Block, HandleFn, HandlersInput};

/// `checked`: the block had no mistakes of its own, so the checks that need
/// a well-formed aggregate are emitted.
pub(crate) fn expand(input: &HandlersInput, checked: bool) -> TokenStream {
    let item = &input.item;
    let impls: TokenStream = match &input.block {
        Block::Aggregate { applies, handles } => applies
            .iter()
            .map(|a| apply_impl(input, a, checked))
            .chain(handles.iter().map(|h| handle_impl(input, h)))
            .collect(),
        Block::ReadModel { projections, answers } => super::read_side::read_model(input, projections, answers),
        Block::Process {
            command: Some(command),
            reactions,
        } => super::read_side::process(input, command, reactions),
        // Reported: without the command type there is no impl to emit.
        Block::Process { command: None, .. } => TokenStream::new(),
    };
    let generated = if impls.is_empty() {
        TokenStream::new()
    } else {
        wrap(impls)
    };
    quote! {
        #item
        #generated
    }
}

fn apply_impl(input: &HandlersInput, a: &ApplyFn, checked: bool) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    let (impl_generics, _, where_clause) = input.item.generics.split_for_impl();
    let ApplyFn {
        method,
        event,
        callable,
    } = a;
    let body = if *callable {
        quote!(<#self_ty>::#method(self, event))
    } else {
        // The method's shape was reported; this stub keeps the aggregate
        // complete so the mistake gives one error, not a second "missing
        // `#[apply]`" one.
        quote!({
            let _ = (event, <#self_ty>::#method);
        })
    };
    // A handler for an event the aggregate never stores could never run.
    // (Constants cannot name a generic aggregate's parameters: those go
    // unchecked. An aggregate whose `event = ..` is missing has no names.)
    let stored = if checked && *callable && input.item.generics.params.is_empty() {
        let message = format!(
            "`{}` has an `#[apply]` handler for `{}`, which is not one of its events, so it could never run: add a variant holding `{}` to the event enum in its `#[aggregate(event = ..)]`, or remove the handler",
            crate::ast::type_name(self_ty),
            crate::ast::type_name(event),
            crate::ast::type_name(event)
        );
        quote_spanned! {event.span()=>
            const _: () = {
                let ours = <<#self_ty as #krate::Aggregate>::Event as #krate::Event>::NAMES;
                ::core::assert!(
                    ours.is_empty() || #krate::__private::names_overlap(<#event as #krate::Event>::NAMES, ours),
                    #message
                );
            };
        }
    } else {
        TokenStream::new()
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Apply<#event> for #self_ty #where_clause {
            #[inline]
            fn apply(&mut self, event: &#event) {
                #body
            }
        }

        #stored
    }
}

fn handle_impl(input: &HandlersInput, h: &HandleFn) -> TokenStream {
    let krate = &input.krate;
    let self_ty = &input.item.self_ty;
    // An unbounded parameter of a generic aggregate is reported by its
    // derive: the impl is written as if it had the bounds an aggregate needs.
    let (generics, _) = crate::ast::with_aggregate_bounds(&input.item.generics);
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let HandleFn {
        method,
        command,
        command_by_ref,
        services,
        output,
        callable,
    } = h;
    // The generated parameters are declared and used with one span each,
    // the user's token where an error about them belongs: outside a
    // `macro_rules!` macro that is the call site's hygiene too, and inside
    // one, declaration and uses still agree (mixing a macro's tokens with
    // the call site's would lose the names).
    let command_param = if *command_by_ref {
        quote!(command)
    } else {
        quote_spanned!(command.span()=> command)
    };
    let services_param = match services {
        Some(ty) => quote_spanned!(ty.span()=> services),
        None => quote!(services),
    };
    // A handler taking the command by value gets a copy: the dispatcher
    // keeps the command to decide it again after a version conflict. The
    // copy is spanned at the handler's argument, where a command that is
    // not `Clone` is reported.
    let command_arg = if *command_by_ref {
        command_param.clone()
    } else {
        quote_spanned!(command.span()=> #krate::__private::CommandClone::clone_command(#command_param))
    };
    let call = match services {
        Some(_) => quote!(<#self_ty>::#method(self, #command_arg, #services_param)),
        None => quote!({
            let _ = #services_param;
            <#self_ty>::#method(self, #command_arg)
        }),
    };
    // The impl's header, signature and braces, and each use of the
    // aggregate's types, are spanned at the block's type: when it is not an
    // aggregate, every handler's impl gives the same error at the same
    // place, which the compiler shows once (the rest of the block two
    // errors, whatever its number of handlers).
    let at_type = self_ty.span();
    let aggregate = super::respan(quote!(<#self_ty as #krate::Aggregate>), at_type);
    let event = quote_spanned!(at_type=> #aggregate::Event);
    let error = quote_spanned!(at_type=> #aggregate::Error);
    let services_ty = quote_spanned!(at_type=> #aggregate::Services);
    let this = quote!(self);
    let signature = quote_spanned!(at_type=>
        fn handle(&#this, #command_param: &#command, #services_param: &#services_ty)
            -> ::core::result::Result<::std::vec::Vec<#event>, #error>
    );
    let header = super::respan(
        quote!(impl #impl_generics #krate::Handle<#command> for #self_ty #where_clause),
        at_type,
    );
    let body = match (callable, output) {
        (true, Some(output)) => {
            // Both the call and its argument are spanned at the return type,
            // so a wrong return type is reported there.
            let decide = quote_spanned!(output.span()=>
                #krate::__private::Decision::<Self, #event, #error>::into_decision(decision)
            );
            quote!({
                let decision = #call;
                #decide
            })
        }
        _ => quote!({
            let _ = (#command_param, #services_param, <#self_ty>::#method);
            ::core::unreachable!()
        }),
    };
    let method = braced(body, at_type);
    let items = braced(quote_spanned!(at_type=> #[inline] #signature #method), at_type);
    quote! {
        #[automatically_derived]
        #header #items
    }
}

/// `{ tokens }`, the braces spanned at `span`.
fn braced(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, tokens);
    group.set_span(span);
    proc_macro2::TokenTree::Group(group).into()
}
