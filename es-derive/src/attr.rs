//! Attribute parsing: `#[event(..)]`, `#[aggregate(..)]`, `#[command(..)]`,
//! `#[aggregate_id]` and the arguments of `#[handlers(..)]`.
//!
//! Unknown keys are reported with the closest known key and the list of
//! valid ones, and parsing goes on, so one pass reports every mistake.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

/// A value given in an attribute, with the key's tokens for error spans.
pub(crate) struct Given<T> {
    pub(crate) key: Path,
    pub(crate) value: T,
}

/// Records `value` under `slot`, refusing a second one.
fn set<T>(cx: &Ctxt, slot: &mut Option<Given<T>>, meta: &ParseNestedMeta<'_>, value: T, attr: &str) {
    if slot.is_some() {
        cx.error_spanned_by(
            &meta.path,
            format!("duplicate `{}` in `#[{attr}(..)]`", key_name(&meta.path)),
        );
    } else {
        *slot = Some(Given {
            key: meta.path.clone(),
            value,
        });
    }
}

fn key_name(path: &Path) -> String {
    path.get_ident()
        .map_or_else(|| quote::quote!(#path).to_string(), ToString::to_string)
}

/// The closest of `known` to `given`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(given, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Reports an unknown key and skips its value so parsing can go on.
fn unknown_key(cx: &Ctxt, meta: &ParseNestedMeta<'_>, attr: &str, known: &[&str]) -> syn::Result<()> {
    let given = key_name(&meta.path);
    let hint = match suggest(&given, known) {
        Some(k) => format!("; did you mean `{k}`?"),
        None => String::new(),
    };
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown key `{given}` in `#[{attr}(..)]`{hint} Expected one of: {}",
            known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
    );
    if meta.input.peek(Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|inner| {
            if inner.input.peek(Token![=]) {
                let _: syn::Expr = inner.value()?.parse()?;
            }
            Ok(())
        });
    }
    Ok(())
}

fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let lit: LitStr = meta.value()?.parse()?;
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            "`crate` takes a path in a string, such as `crate = \"::es_core\"`",
        )
    })
}

fn parse_name(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let lit: LitStr = meta.value()?.parse()?;
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new(lit.span(), "a stored name cannot be empty"));
    }
    Ok(lit)
}

fn parse_positive(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Result<LitInt> {
    let lit: LitInt = meta.value()?.parse()?;
    match lit.base10_parse::<u32>() {
        Ok(0) | Err(_) => Err(syn::Error::new(
            lit.span(),
            format!("`{what}` must be a whole number from 1 to {}", u32::MAX),
        )),
        Ok(_) => Ok(lit),
    }
}

/// A type; a type written as a string is reported and still read, so the
/// rest of the expansion goes on with it.
fn parse_type(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<Type> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        cx.syn_error(syn::Error::new(
            lit.span(),
            format!("`{key}` takes a type, not a string: write `{key} = {}`", lit.value()),
        ));
        return lit.parse();
    }
    value.parse()
}

/// Runs `f` on each `#[name(..)]` attribute's keys; a bare `#[name]` or
/// `#[name = ..]` is an error.
fn each_key(cx: &Ctxt, attrs: &[Attribute], name: &str, mut f: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<()>) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        if let syn::Meta::Path(_) = attr.meta {
            cx.error_spanned_by(attr, format!("expected `#[{name}(key = value, ..)]`"));
            continue;
        }
        if let Err(e) = attr.parse_nested_meta(|meta| f(&meta)) {
            cx.syn_error(e);
        }
    }
}

/// `#[event(..)]` on an event struct or enum.
#[derive(Default)]
pub(crate) struct EventAttrs {
    pub(crate) name: Option<Given<LitStr>>,
    pub(crate) version: Option<Given<LitInt>>,
    pub(crate) aliases: Option<Given<Vec<LitStr>>>,
    pub(crate) older: Option<Given<Vec<Type>>>,
    pub(crate) next: Option<Given<Type>>,
    pub(crate) custom_upcast: Option<Given<()>>,
    pub(crate) krate: Option<Given<Path>>,
}

pub(crate) const EVENT_KEYS: &[&str] = &["name", "version", "aliases", "older", "next", "custom_upcast", "crate"];

/// `[a, b, ..]`: a bracketed, comma-separated list.
fn parse_list<T: syn::parse::Parse>(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<Vec<T>> {
    let value = meta.value()?;
    if !value.peek(syn::token::Bracket) {
        return Err(value.error(format!("`{key}` takes a list in brackets: `{key} = [{example}]`")));
    }
    let content;
    syn::bracketed!(content in value);
    let items = syn::punctuated::Punctuated::<T, Token![,]>::parse_terminated(&content)?;
    Ok(items.into_iter().collect())
}

pub(crate) fn event_attrs(cx: &Ctxt, attrs: &[Attribute]) -> EventAttrs {
    let mut out = EventAttrs::default();
    each_key(cx, attrs, "event", |meta| {
        if meta.path.is_ident("name") {
            let v = parse_name(meta)?;
            set(cx, &mut out.name, meta, v, "event");
        } else if meta.path.is_ident("version") {
            let v = parse_positive(meta, "version")?;
            set(cx, &mut out.version, meta, v, "event");
        } else if meta.path.is_ident("aliases") {
            let v = parse_list::<LitStr>(meta, "aliases", "\"old.name\"")?;
            set(cx, &mut out.aliases, meta, v, "event");
        } else if meta.path.is_ident("older") {
            let v = parse_list::<Type>(meta, "older", "EventV1, EventV2")?;
            set(cx, &mut out.older, meta, v, "event");
        } else if meta.path.is_ident("next") {
            let v = parse_type(cx, meta, "next")?;
            set(cx, &mut out.next, meta, v, "event");
        } else if meta.path.is_ident("custom_upcast") {
            if meta.input.peek(Token![=]) {
                return Err(meta.error("`custom_upcast` takes no value: write `custom_upcast`"));
            }
            set(cx, &mut out.custom_upcast, meta, (), "event");
        } else if meta.path.is_ident("crate") {
            let v = parse_crate(meta)?;
            set(cx, &mut out.krate, meta, v, "event");
        } else {
            unknown_key(cx, meta, "event", EVENT_KEYS)?;
        }
        Ok(())
    });
    out
}

/// `#[aggregate(..)]` on an aggregate.
#[derive(Default)]
pub(crate) struct AggregateAttrs {
    pub(crate) name: Option<Given<LitStr>>,
    pub(crate) id: Option<Given<Type>>,
    pub(crate) event: Option<Given<Type>>,
    pub(crate) error: Option<Given<Type>>,
    pub(crate) services: Option<Given<Type>>,
    pub(crate) snapshot_every: Option<Given<LitInt>>,
    pub(crate) snapshot_version: Option<Given<LitInt>>,
    pub(crate) snapshot_untraced: Option<Given<()>>,
    pub(crate) krate: Option<Given<Path>>,
}

pub(crate) const AGGREGATE_KEYS: &[&str] = &[
    "name",
    "id",
    "event",
    "error",
    "services",
    "snapshot_every",
    "snapshot_version",
    "snapshot_untraced",
    "crate",
];

pub(crate) fn aggregate_attrs(cx: &Ctxt, attrs: &[Attribute]) -> AggregateAttrs {
    let mut out = AggregateAttrs::default();
    each_key(cx, attrs, "aggregate", |meta| {
        let p = &meta.path;
        if p.is_ident("name") {
            let v = parse_name(meta)?;
            set(cx, &mut out.name, meta, v, "aggregate");
        } else if p.is_ident("id") {
            let v = parse_type(cx, meta, "id")?;
            set(cx, &mut out.id, meta, v, "aggregate");
        } else if p.is_ident("event") {
            let v = parse_type(cx, meta, "event")?;
            set(cx, &mut out.event, meta, v, "aggregate");
        } else if p.is_ident("error") {
            let v = parse_type(cx, meta, "error")?;
            set(cx, &mut out.error, meta, v, "aggregate");
        } else if p.is_ident("services") {
            let v = parse_type(cx, meta, "services")?;
            set(cx, &mut out.services, meta, v, "aggregate");
        } else if p.is_ident("snapshot_every") {
            let v = parse_positive(meta, "snapshot_every")?;
            set(cx, &mut out.snapshot_every, meta, v, "aggregate");
        } else if p.is_ident("snapshot_version") {
            let v = parse_positive(meta, "snapshot_version")?;
            set(cx, &mut out.snapshot_version, meta, v, "aggregate");
        } else if p.is_ident("snapshot_untraced") {
            if meta.input.peek(Token![=]) {
                return Err(meta.error("`snapshot_untraced` takes no value: write `snapshot_untraced`"));
            }
            set(cx, &mut out.snapshot_untraced, meta, (), "aggregate");
        } else if p.is_ident("crate") {
            let v = parse_crate(meta)?;
            set(cx, &mut out.krate, meta, v, "aggregate");
        } else {
            unknown_key(cx, meta, "aggregate", AGGREGATE_KEYS)?;
        }
        Ok(())
    });
    out
}

/// `#[query(..)]` on a query.
#[derive(Default)]
pub(crate) struct QueryAttrs {
    pub(crate) output: Option<Given<Type>>,
    pub(crate) krate: Option<Given<Path>>,
}

pub(crate) const QUERY_KEYS: &[&str] = &["output", "crate"];

pub(crate) fn query_attrs(cx: &Ctxt, attrs: &[Attribute]) -> QueryAttrs {
    let mut out = QueryAttrs::default();
    each_key(cx, attrs, "query", |meta| {
        if meta.path.is_ident("output") {
            let v = parse_type(cx, meta, "output")?;
            set(cx, &mut out.output, meta, v, "query");
        } else if meta.path.is_ident("crate") {
            let v = parse_crate(meta)?;
            set(cx, &mut out.krate, meta, v, "query");
        } else {
            unknown_key(cx, meta, "query", QUERY_KEYS)?;
        }
        Ok(())
    });
    out
}

/// `#[command(..)]` on a command struct or enum.
#[derive(Default)]
pub(crate) struct CommandAttrs {
    pub(crate) aggregate: Option<Given<Type>>,
    pub(crate) krate: Option<Given<Path>>,
}

pub(crate) const COMMAND_KEYS: &[&str] = &["aggregate", "crate"];

pub(crate) fn command_attrs(cx: &Ctxt, attrs: &[Attribute]) -> CommandAttrs {
    let mut out = CommandAttrs::default();
    each_key(cx, attrs, "command", |meta| {
        if meta.path.is_ident("aggregate") {
            let v = parse_type(cx, meta, "aggregate")?;
            set(cx, &mut out.aggregate, meta, v, "command");
        } else if meta.path.is_ident("crate") {
            let v = parse_crate(meta)?;
            set(cx, &mut out.krate, meta, v, "command");
        } else {
            unknown_key(cx, meta, "command", COMMAND_KEYS)?;
        }
        Ok(())
    });
    out
}

/// What an `#[es_core::handlers(..)]` block belongs to.
pub(crate) enum HandlerKind {
    /// An aggregate (no argument): `#[handle]` decides commands.
    Aggregate,
    /// `read_model`: `#[apply]` projects events, `#[handle]` answers queries.
    ReadModel,
    /// `process, command = C`: `#[apply]` reacts to events with commands.
    /// (`None` when `command` is missing, which is reported.)
    Process(Option<Box<Type>>),
}

/// The arguments of `#[es_core::handlers(..)]`.
pub(crate) struct HandlersArgs {
    pub(crate) krate: Option<Given<Path>>,
    pub(crate) kind: HandlerKind,
}

pub(crate) const HANDLERS_KEYS: &[&str] = &["read_model", "process", "command", "crate"];

pub(crate) fn handlers_args(cx: &Ctxt, args: TokenStream) -> HandlersArgs {
    let mut krate = None;
    let mut read_model: Option<Given<()>> = None;
    let mut process: Option<Given<()>> = None;
    let mut command: Option<Given<Type>> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let v = parse_crate(&meta)?;
            set(cx, &mut krate, &meta, v, "handlers");
        } else if meta.path.is_ident("read_model") {
            set(cx, &mut read_model, &meta, (), "handlers");
        } else if meta.path.is_ident("process") {
            set(cx, &mut process, &meta, (), "handlers");
        } else if meta.path.is_ident("command") {
            let v = parse_type(cx, &meta, "command")?;
            set(cx, &mut command, &meta, v, "handlers");
        } else {
            unknown_key(cx, &meta, "handlers", HANDLERS_KEYS)?;
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        cx.syn_error(e);
    }
    let kind = match (read_model, process, command) {
        (Some(r), Some(_), _) => {
            cx.error_spanned_by(
                &r.key,
                "a block is either `read_model` or `process`, not both: give each its own type",
            );
            HandlerKind::ReadModel
        }
        (Some(_), None, Some(c)) => {
            cx.error_spanned_by(
                &c.key,
                "`command = ..` belongs to a process (`#[es_core::handlers(process, command = ..)]`); a read model sends no commands",
            );
            HandlerKind::ReadModel
        }
        (Some(_), None, None) => HandlerKind::ReadModel,
        (None, Some(p), None) => {
            cx.error_spanned_by(
                &p.key,
                "a process needs the type of the commands it sends: `#[es_core::handlers(process, command = MyCommands)]`",
            );
            HandlerKind::Process(None)
        }
        (None, Some(_), Some(c)) => HandlerKind::Process(Some(Box::new(c.value))),
        (None, None, Some(c)) => {
            cx.error_spanned_by(
                &c.key,
                "`command = ..` needs `process`: `#[es_core::handlers(process, command = ..)]`",
            );
            HandlerKind::Aggregate
        }
        (None, None, None) => HandlerKind::Aggregate,
    };
    HandlersArgs { krate, kind }
}

/// The path to es-core in generated code: `crate = ".."` or `::es_core`.
pub(crate) fn crate_path(given: Option<Given<Path>>) -> Path {
    given.map_or_else(|| syn::parse_quote!(::es_core), |g| g.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("nmae", AGGREGATE_KEYS), Some("name"));
        assert_eq!(suggest("evnet", AGGREGATE_KEYS), Some("event"));
        assert_eq!(suggest("snapshot", AGGREGATE_KEYS), None);
        assert_eq!(suggest("snapshot_evry", AGGREGATE_KEYS), Some("snapshot_every"));
        assert_eq!(suggest("colour", AGGREGATE_KEYS), None);
    }

    #[test]
    fn aggregate_keys_are_read_and_unknown_ones_reported() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[aggregate(name = "acc", id = u64, evnt = E, event = E)])];
        let a = aggregate_attrs(&cx, &attrs);
        assert_eq!(a.name.unwrap().value.value(), "acc");
        assert!(a.id.is_some() && a.event.is_some() && a.error.is_none());
        let err = cx.check().unwrap_err().to_string();
        assert!(
            err.starts_with("unknown key `evnt` in `#[aggregate(..)]`; did you mean `event`?"),
            "{err}"
        );
    }

    #[test]
    fn a_string_where_a_type_belongs_says_how_to_write_it() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[command(aggregate = "Account")])];
        let a = command_attrs(&cx, &attrs);
        assert!(a.aggregate.is_some());
        assert_eq!(
            cx.check().unwrap_err().to_string(),
            "`aggregate` takes a type, not a string: write `aggregate = Account`"
        );
        // ...and the type is still read.
    }
}
