//! From syn's syntax tree to our model of each macro input.
//!
//! Shape errors (a variant that is not a one-field tuple, a command without
//! an `#[aggregate_id]` field, a missing required key) are reported here;
//! cross-checks between items live in `valid.rs`.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, LitInt, LitStr, Member, Path, Type};

use crate::attr::{self, Given};

pub(crate) mod handlers;
pub(crate) mod personal;
pub(crate) mod read_side;
use crate::ctxt::Ctxt;

/// One variant of an event or command enum: `Name(Payload)`.
pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
}

/// The input of `#[derive(Event)]`.
pub(crate) enum EventInput<'a> {
    Struct(Box<EventStruct<'a>>),
    Enum(EventEnum<'a>),
}

pub(crate) struct EventStruct<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) version: u32,
    /// Older stored names it still decodes (`aliases = [..]`).
    pub(crate) aliases: Vec<LitStr>,
    /// Its older versions, version 1 first (`older = [..]`).
    pub(crate) older: Vec<Type>,
    /// For an older version: the next version (`next = ..`), and whether
    /// the user implements `Upcast` (`custom_upcast`).
    pub(crate) next: Option<Type>,
    pub(crate) custom_upcast: bool,
    /// Its personal fields, each with the field naming its subject.
    pub(crate) personal: Vec<personal::PersonalField>,
    pub(crate) krate: Path,
}

pub(crate) struct EventEnum<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) variants: Vec<Variant<'a>>,
    /// Variants already reported as wrong; matches cover them with
    /// `unreachable!()` so they cause no second error.
    pub(crate) skipped: Vec<&'a Ident>,
    pub(crate) krate: Path,
}

/// The input of `#[derive(Aggregate)]`.
pub(crate) struct AggregateInput<'a> {
    pub(crate) ident: &'a Ident,
    /// Its generics, with `Send + Sync + 'static` added to a type parameter
    /// that had no bounds (reported).
    pub(crate) generics: Generics,
    pub(crate) name: String,
    pub(crate) id: Option<Type>,
    pub(crate) event: Option<Type>,
    pub(crate) error: Option<Type>,
    pub(crate) services: Option<Type>,
    pub(crate) snapshot_every: Option<LitInt>,
    pub(crate) snapshot_version: Option<LitInt>,
    /// `snapshot_untraced`: the state's shape cannot be traced, and the
    /// user bumps `snapshot_version` when it changes.
    pub(crate) snapshot_untraced: bool,
    pub(crate) krate: Path,
}

/// The input of `#[derive(Query)]`.
pub(crate) struct QueryInput<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) output: Option<Type>,
    pub(crate) krate: Path,
}

impl<'a> QueryInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        if !no_unions(cx, input, "Query") {
            return None;
        }
        let attrs = attr::query_attrs(cx, &input.attrs);
        if attrs.output.is_none() {
            cx.error_spanned_by(
                &input.ident,
                format!(
                    "query `{}` needs `#[query(output = ..)]`: the type of its answer",
                    input.ident
                ),
            );
        }
        Some(QueryInput {
            ident: &input.ident,
            generics: &input.generics,
            output: attrs.output.map(|g| g.value),
            krate: attr::crate_path(attrs.krate),
        })
    }
}

/// The input of `#[derive(Command)]`.
#[allow(clippy::large_enum_variant)] // built once per macro call
pub(crate) enum CommandInput<'a> {
    Struct(CommandStruct<'a>),
    Enum(CommandEnum<'a>),
}

pub(crate) struct CommandStruct<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) aggregate: Option<Type>,
    /// The `#[aggregate_id]` field and its type, if exactly one was found.
    pub(crate) id_field: Option<(Member, &'a Type)>,
    pub(crate) krate: Path,
}

pub(crate) struct CommandEnum<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) variants: Vec<Variant<'a>>,
    /// Variants already reported as wrong.
    pub(crate) skipped: Vec<&'a Ident>,
    pub(crate) krate: Path,
}

fn no_unions(cx: &Ctxt, input: &DeriveInput, derive: &str) -> bool {
    if let Data::Union(u) = &input.data {
        cx.error_spanned_by(
            u.union_token,
            format!("`#[derive({derive})]` works on structs and enums, not unions"),
        );
        return false;
    }
    true
}

/// Reads `V(T)` variants, reporting every other shape and listing it in
/// `skipped`.
fn tuple_variants<'a>(
    cx: &Ctxt,
    data: &'a syn::DataEnum,
    what: &str,
    example: &str,
    skipped: &mut Vec<&'a Ident>,
) -> Vec<Variant<'a>> {
    let mut out = Vec::new();
    for v in &data.variants {
        match &v.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => out.push(Variant {
                ident: &v.ident,
                ty: &f.unnamed[0].ty,
            }),
            _ => {
                cx.error_spanned_by(
                    v,
                    format!(
                        "variant `{}` must hold exactly one {what}, as a one-field tuple: `{}({example})`",
                        v.ident, v.ident
                    ),
                );
                skipped.push(&v.ident);
            }
        }
        if let Some(d) = &v.discriminant {
            cx.error_spanned_by(&d.1, "variants of this enum cannot have discriminants");
        }
    }
    out
}

/// Refuses `#[name(..)]` on places where it has no meaning.
fn refuse_attr(cx: &Ctxt, attrs: &[Attribute], name: &str, why: impl Fn() -> String) {
    for a in attrs.iter().filter(|a| a.path().is_ident(name)) {
        cx.error_spanned_by(a, why());
    }
}

impl<'a> EventInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        if !no_unions(cx, input, "Event") {
            return None;
        }
        let attrs = attr::event_attrs(cx, &input.attrs);
        let krate = attr::crate_path(attrs.krate);
        match &input.data {
            Data::Struct(data) => {
                let personal = personal::personal_fields(cx, &input.ident, data);
                let (name, name_span) = match attrs.name {
                    Some(Given { value, .. }) => (value.value(), value.span()),
                    None => (input.ident.to_string(), input.ident.span()),
                };
                let version = attrs
                    .version
                    .as_ref()
                    .and_then(|v| v.value.base10_parse::<u32>().ok())
                    .unwrap_or(1);
                let ident = &input.ident;
                let aliases = attrs.aliases.map(|g| g.value).unwrap_or_default();
                for (i, alias) in aliases.iter().enumerate() {
                    let value = alias.value();
                    if value.trim().is_empty() {
                        cx.error_spanned_by(alias, "an alias cannot be empty");
                    } else if value == name || aliases[..i].iter().any(|a| a.value() == value) {
                        cx.error_spanned_by(alias, format!("`{value}` is already a name of `{ident}`"));
                    }
                }
                let older = attrs.older.map(|g| (g.key, g.value));
                if let Some((key, list)) = &older {
                    if !input.generics.params.is_empty() {
                        cx.error_spanned_by(
                            key,
                            format!("`{ident}` is generic: older versions are for plain event structs"),
                        );
                    }
                    if list.is_empty() {
                        cx.error_spanned_by(
                            key,
                            "`older` lists the older versions, version 1 first; leave it out when there are none",
                        );
                    } else if version as usize != list.len() + 1 {
                        let at: &dyn quote::ToTokens = match &attrs.version {
                            Some(v) => &v.value,
                            None => key,
                        };
                        cx.error_spanned_by(
                            at,
                            format!(
                                "`{ident}` lists {} older version{} in `older = [..]`, so it is version {}: write `version = {}`",
                                list.len(),
                                if list.len() == 1 { "" } else { "s" },
                                list.len() + 1,
                                list.len() + 1
                            ),
                        );
                    }
                }
                let next = attrs.next.map(|g| (g.key, g.value));
                if let (Some((older_key, _)), Some(_)) = (&older, &next) {
                    cx.error_spanned_by(
                        older_key,
                        format!("`{ident}` has both `older` and `next`: `older` goes on the current version, `next` on each older one"),
                    );
                }
                if let (Some(flag), None) = (&attrs.custom_upcast, &next) {
                    cx.error_spanned_by(
                        &flag.key,
                        "`custom_upcast` goes with `next = ..`: it says that you implement `Upcast` for this older version yourself",
                    );
                }
                Some(EventInput::Struct(Box::new(EventStruct {
                    ident,
                    generics: &input.generics,
                    name,
                    name_span,
                    version,
                    aliases,
                    older: older.map(|(_, list)| list).unwrap_or_default(),
                    next: next.map(|(_, ty)| ty),
                    custom_upcast: attrs.custom_upcast.is_some(),
                    personal,
                    krate,
                })))
            }
            Data::Enum(data) => {
                for given in [
                    attrs.name.map(|g| g.key),
                    attrs.version.map(|g| g.key),
                    attrs.aliases.map(|g| g.key),
                    attrs.older.map(|g| g.key),
                    attrs.next.map(|g| g.key),
                    attrs.custom_upcast.map(|g| g.key),
                ]
                .into_iter()
                .flatten()
                {
                    let key = given.get_ident().map(ToString::to_string).unwrap_or_default();
                    cx.error_spanned_by(
                        &given,
                        format!(
                            "`{key}` belongs on each event struct, not on the enum `{}`: each variant's payload carries its own stored {key}",
                            input.ident
                        ),
                    );
                }
                if data.variants.is_empty() {
                    cx.error_spanned_by(
                        &input.ident,
                        format!(
                            "`{}` has no variants; add one per event, such as `Opened(AccountOpened)`",
                            input.ident
                        ),
                    );
                }
                for v in &data.variants {
                    refuse_attr(cx, &v.attrs, "event", || {
                        format!(
                            "put `#[event(..)]` on the payload struct of `{}`, not on the variant",
                            v.ident
                        )
                    });
                }
                let mut skipped = Vec::new();
                let variants = tuple_variants(cx, data, "event", "EventStruct", &mut skipped);
                Some(EventInput::Enum(EventEnum {
                    ident: &input.ident,
                    generics: &input.generics,
                    variants,
                    skipped,
                    krate,
                }))
            }
            Data::Union(_) => None,
        }
    }
}

impl<'a> AggregateInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        if !no_unions(cx, input, "Aggregate") {
            return None;
        }
        let attrs = attr::aggregate_attrs(cx, &input.attrs);
        let ident = &input.ident;
        let anchor = input
            .attrs
            .iter()
            .find(|a| a.path().is_ident("aggregate"))
            .map_or_else(|| ident.span(), Spanned::span);
        let mut missing = Vec::new();
        if attrs.id.is_none() {
            missing.push("`id = ..` (the type of its id)");
        }
        if attrs.event.is_none() {
            missing.push("`event = ..` (the enum or struct of its events)");
        }
        if attrs.error.is_none() {
            missing.push("`error = ..` (the error its handlers return)");
        }
        if !missing.is_empty() {
            cx.syn_error(syn::Error::new(
                anchor,
                format!("aggregate `{ident}` needs {} in `#[aggregate(..)]`", join_and(&missing)),
            ));
        }
        for param in unbounded_type_params(&input.generics) {
            cx.error_spanned_by(
                param,
                format!(
                    "aggregate `{ident}` has a type parameter `{param}` without bounds: an aggregate is shared \
                     between tasks and threads for as long as the program runs, so write at least \
                     `{param}: Send + Sync + 'static` (with `Default` if the state derives `Default`, and what its fields, events and commands need of it)"
                ),
            );
        }
        // The impl is emitted as if they were written, so the uses of the
        // aggregate with a fitting parameter do not fail too.
        let (generics, _) = with_aggregate_bounds(&input.generics);
        Some(AggregateInput {
            ident,
            generics,
            name: attrs.name.map_or_else(|| ident.to_string(), |g| g.value.value()),
            id: attrs.id.map(|g| g.value),
            event: attrs.event.map(|g| g.value),
            error: attrs.error.map(|g| g.value),
            services: attrs.services.map(|g| g.value),
            snapshot_every: attrs.snapshot_every.map(|g| g.value),
            snapshot_version: attrs.snapshot_version.map(|g| g.value),
            snapshot_untraced: attrs.snapshot_untraced.is_some(),
            krate: attr::crate_path(attrs.krate),
        })
    }
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn is_id_attr(a: &Attribute) -> bool {
    a.path().is_ident("aggregate_id")
}

impl<'a> CommandInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        if !no_unions(cx, input, "Command") {
            return None;
        }
        let attrs = attr::command_attrs(cx, &input.attrs);
        let ident = &input.ident;
        let krate = attr::crate_path(attrs.krate);
        match &input.data {
            Data::Struct(data) => {
                if attrs.aggregate.is_none() {
                    cx.error_spanned_by(
                        ident,
                        format!("command `{ident}` needs `#[command(aggregate = ..)]`: the aggregate that handles it"),
                    );
                }
                let mut id_field: Option<(Member, &syn::Field)> = None;
                for (i, field) in data.fields.iter().enumerate() {
                    for a in field.attrs.iter().filter(|a| is_id_attr(a)) {
                        if !matches!(a.meta, syn::Meta::Path(_)) {
                            cx.error_spanned_by(a, "`#[aggregate_id]` takes no arguments");
                        }
                    }
                    if !field.attrs.iter().any(is_id_attr) {
                        continue;
                    }
                    let member = match &field.ident {
                        Some(name) => Member::Named(name.clone()),
                        None => Member::Unnamed(i.into()),
                    };
                    match &id_field {
                        Some((first, _)) => cx.error_spanned_by(
                            field,
                            format!(
                                "command `{ident}` has two `#[aggregate_id]` fields; keep it on one (`{}` has it already)",
                                member_name(first)
                            ),
                        ),
                        None => id_field = Some((member, field)),
                    }
                }
                if id_field.is_none() {
                    let what = attrs
                        .aggregate
                        .as_ref()
                        .map_or_else(|| "aggregate".to_owned(), |g| type_name(&g.value));
                    cx.error_spanned_by(
                        ident,
                        format!(
                            "command `{ident}` needs one field marked `#[aggregate_id]`: the id of the `{what}` it targets"
                        ),
                    );
                }
                Some(CommandInput::Struct(CommandStruct {
                    ident,
                    generics: &input.generics,
                    aggregate: attrs.aggregate.map(|g| g.value),
                    id_field: id_field.map(|(m, f)| (m, &f.ty)),
                    krate,
                }))
            }
            Data::Enum(data) => {
                if let Some(g) = attrs.aggregate {
                    cx.error_spanned_by(
                        &g.key,
                        format!(
                            "a command enum routes each variant to its own command's aggregate; remove `aggregate` from `{ident}`"
                        ),
                    );
                }
                if data.variants.is_empty() {
                    cx.error_spanned_by(
                        ident,
                        format!("`{ident}` has no variants; add one per command, such as `Deposit(Deposit)`"),
                    );
                }
                for v in &data.variants {
                    for f in &v.fields {
                        refuse_attr(cx, &f.attrs, "aggregate_id", || {
                            format!(
                                "mark the id in the command struct held by `{}`, not in the enum variant",
                                v.ident
                            )
                        });
                    }
                }
                let mut skipped = Vec::new();
                let variants = tuple_variants(cx, data, "command", "CommandStruct", &mut skipped);
                Some(CommandInput::Enum(CommandEnum {
                    ident,
                    generics: &input.generics,
                    variants,
                    skipped,
                    krate,
                }))
            }
            Data::Union(_) => None,
        }
    }
}

fn member_name(m: &Member) -> String {
    match m {
        Member::Named(i) => i.to_string(),
        Member::Unnamed(i) => i.index.to_string(),
    }
}

/// A type as the user wrote it, for messages.
pub(crate) fn type_name(ty: &Type) -> String {
    let s = quote::quote!(#ty).to_string();
    // `quote` puts spaces around `<`, `::` and `,`; messages read better without.
    s.replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
}

/// A string literal in generated code, spanned at the user's token.
pub(crate) fn lit_str(value: &str, span: Span) -> LitStr {
    LitStr::new(value, span)
}

/// The type parameters with no bounds, neither where they are declared nor
/// in the where clause: an aggregate's parameters must at least be `Send +
/// Sync + 'static`, so such a parameter is always a mistake.
fn unbounded_type_params(generics: &syn::Generics) -> Vec<&syn::Ident> {
    generics
        .type_params()
        .filter(|p| p.bounds.is_empty())
        .map(|p| &p.ident)
        .filter(|&ident| {
            !generics.where_clause.iter().flat_map(|w| &w.predicates).any(|p| {
                matches!(p, syn::WherePredicate::Type(t)
                    if matches!(&t.bounded_ty, syn::Type::Path(tp) if tp.qself.is_none() && tp.path.is_ident(ident)))
            })
        })
        .collect()
}

/// `generics` with `Send + Sync + 'static + Default` added to each
/// unbounded type parameter, and whether there was one. For an aggregate's
/// impls: its derive reports such a parameter once, and the impls written
/// as if the bounds were there add no errors of their own (`Default`: a
/// derived `Default` of the state asks it of every parameter).
pub(crate) fn with_aggregate_bounds(generics: &syn::Generics) -> (syn::Generics, bool) {
    let unbounded: Vec<syn::Ident> = unbounded_type_params(generics).into_iter().cloned().collect();
    let mut bounded = generics.clone();
    for p in bounded.type_params_mut().filter(|p| unbounded.contains(&p.ident)) {
        p.bounds.push(syn::parse_quote!(::core::marker::Send));
        p.bounds.push(syn::parse_quote!(::core::marker::Sync));
        p.bounds.push(syn::parse_quote!('static));
        p.bounds.push(syn::parse_quote!(::core::default::Default));
    }
    (bounded, !unbounded.is_empty())
}
