//! Derive macros for [es-core](https://docs.rs/es-core).
//!
//! Use them through `es-core`, which re-exports each under the name of its
//! trait and documents them. Each entry point parses, expands and turns
//! errors into `compile_error!`; the stages live in `ast` (syn to our
//! model), `attr` (attribute parsing), `valid` (cross-checks), `expand`
//! (code generation) and `fallback` (stubs beside errors).

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `es_core::Event` for an event struct or an enum of events.
#[proc_macro_derive(Event, attributes(event, personal))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_event(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `es_core::Aggregate`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_aggregate(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `es_core::Command` for a command struct, or `es_core::Dispatchable`
/// for an enum of commands.
#[proc_macro_derive(Command, attributes(command, aggregate_id))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_command(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `es_core::Query`.
#[proc_macro_derive(Query, attributes(query))]
pub fn derive_query(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_query(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// `#[apply]` outside an `#[es_core::handlers]` block: the block's macro
/// reads (and removes) the marker, so reaching here means it is missing.
#[proc_macro_attribute]
pub fn apply(_: TokenStream, item: TokenStream) -> TokenStream {
    fallback::marker_outside_handlers("apply", item.into()).into()
}

/// `#[handle]` outside an `#[es_core::handlers]` block; see [`apply`].
#[proc_macro_attribute]
pub fn handle(_: TokenStream, item: TokenStream) -> TokenStream {
    fallback::marker_outside_handlers("handle", item.into()).into()
}

/// Turns `#[apply]` and `#[handle]` methods of an impl block into
/// `es_core::Apply` and `es_core::Handle` impls.
#[proc_macro_attribute]
pub fn handlers(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item) = (args.into(), proc_macro2::TokenStream::from(item));
    expand::handlers(args, item.clone())
        .unwrap_or_else(|e| fallback::handlers_unparsed(item, e))
        .into()
}
