//! Methods of read model and process blocks
//! (`#[es_core::handlers(read_model)]`, `#[es_core::handlers(process, ..)]`).
//!
//! A read model's `#[apply]` comes in two shapes: in memory,
//! `fn(&mut self, event: &E[, context: &EventContext<'_>])`; in a database,
//! `[async] fn(&self, event: &E, context: &EventContext<'_>, tx: &mut Tx) ->
//! Result<(), Err>`. Its `#[handle]` answers a query:
//! `fn(&self, query: Q) -> Q::Output`. A process's `#[apply]` is
//! `fn(&self, event: &E[, context: &EventContext<'_>]) -> impl IntoIterator`.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{ImplItemFn, Pat, ReturnType, Type};

use super::handlers::{receiver, typed_args};
use crate::ast::type_name;
use crate::ctxt::Ctxt;

/// A read model's `#[apply]`.
pub(crate) struct ProjectFn {
    pub(crate) method: syn::Ident,
    pub(crate) event: Type,
    pub(crate) context: bool,
    /// Which fields of the context its body reads (`None`: it may use any).
    pub(crate) fields: Option<Vec<&'static str>>,
    /// The transaction type, for a database read model's handler.
    pub(crate) tx: Option<Type>,
    pub(crate) is_async: bool,
    pub(crate) callable: bool,
}

/// A read model's `#[handle]`, answering a query.
pub(crate) struct AnswerFn {
    pub(crate) method: syn::Ident,
    pub(crate) query: Type,
    pub(crate) output: Option<Type>,
    pub(crate) callable: bool,
}

/// A process's `#[apply]`, reacting with commands.
pub(crate) struct ReactFn {
    pub(crate) method: syn::Ident,
    pub(crate) event: Type,
    pub(crate) context: bool,
    pub(crate) callable: bool,
}

/// Reports a receiver other than `&self` (or `&mut self` when `mutable`).
fn require_receiver(cx: &Ctxt, f: &ImplItemFn, mutable: bool, message: &str) -> bool {
    match receiver(f) {
        Some(r) if r.reference.is_some() && r.mutability.is_some() == mutable => true,
        Some(r) => {
            cx.error_spanned_by(r, message);
            false
        }
        None => {
            cx.error_spanned_by(&f.sig, message);
            false
        }
    }
}

fn no_generics(cx: &Ctxt, f: &ImplItemFn, what: &str) -> bool {
    if f.sig.generics.params.is_empty() {
        return true;
    }
    cx.error_spanned_by(&f.sig.generics, format!("`#[{what}]` handlers cannot be generic"));
    false
}

/// The event type of `&E`, reporting other shapes.
fn event_ref(cx: &Ctxt, ty: &Type) -> (Type, bool) {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => ((*r.elem).clone(), true),
        Type::Reference(r) => {
            cx.error_spanned_by(
                r,
                format!("take the event by shared reference: `event: &{}`", type_name(&r.elem)),
            );
            ((*r.elem).clone(), false)
        }
        other => {
            cx.error_spanned_by(
                other,
                format!(
                    "`#[apply]` handlers take the event by reference: `event: &{}`",
                    type_name(other)
                ),
            );
            (other.clone(), false)
        }
    }
}

pub(crate) fn read_project(cx: &Ctxt, f: &ImplItemFn) -> Option<ProjectFn> {
    let name = &f.sig.ident;
    let mut callable = no_generics(cx, f, "apply");
    let args = typed_args(f);
    let Some(first) = args.first() else {
        cx.error_spanned_by(
            &f.sig,
            format!(
                "read model handler `{name}` needs the event: `fn {name}(&mut self, event: &EventType, context: &EventContext<'_>)`"
            ),
        );
        return None;
    };
    let (event, ok) = event_ref(cx, &first.ty);
    callable &= ok;
    // `(event, context)`, `(event, context, tx)`, or `(event, tx)`: the
    // context is optional, and a transaction is the argument by `&mut`.
    let second_is_tx = args.len() == 2 && matches!(&*args[1].ty, Type::Reference(r) if r.mutability.is_some());
    let tx_arg = if second_is_tx { args.get(1) } else { args.get(2) };
    let tx = match tx_arg {
        None => None,
        Some(arg) => match &*arg.ty {
            Type::Reference(r) if r.mutability.is_some() => Some((*r.elem).clone()),
            other => {
                cx.error_spanned_by(
                    other,
                    "the third argument of a read model handler is the transaction, by mutable reference: `tx: &mut sqlx::PgConnection`",
                );
                callable = false;
                None
            }
        },
    };
    if let Some(extra) = args.get(3) {
        cx.error_spanned_by(
            extra,
            "read model handlers take the event, its context and, for a database read model, the transaction",
        );
        callable = false;
    }
    callable &= match tx {
        None => require_receiver(
            cx,
            f,
            true,
            "an in-memory read model's `#[apply]` takes `&mut self`: it updates the read model",
        ),
        Some(_) => require_receiver(
            cx,
            f,
            false,
            "a database read model's `#[apply]` takes `&self`: it updates the database through the transaction",
        ),
    };
    let is_async = f.sig.asyncness.is_some();
    if tx.is_none() {
        if let Some(a) = &f.sig.asyncness {
            cx.error_spanned_by(
                a,
                "an in-memory read model's `#[apply]` is synchronous; only handlers that take a transaction may be `async`",
            );
            callable = false;
        }
        if let ReturnType::Type(_, ty) = &f.sig.output {
            cx.error_spanned_by(ty, "an in-memory read model's `#[apply]` returns nothing");
            callable = false;
        }
    } else if matches!(f.sig.output, ReturnType::Default) {
        cx.error_spanned_by(
            &f.sig,
            format!(
                "database read model handler `{name}` returns `Result<(), E>`, so a failure rolls its transaction back"
            ),
        );
        callable = false;
    }
    let context = args.len() >= 2 && !second_is_tx;
    let fields = if context {
        context_fields(args[1], &f.block)
    } else {
        Some(Vec::new())
    };
    Some(ProjectFn {
        method: name.clone(),
        event,
        context,
        fields,
        tx,
        is_async,
        callable,
    })
}

pub(crate) fn read_answer(cx: &Ctxt, f: &ImplItemFn) -> Option<AnswerFn> {
    let name = &f.sig.ident;
    let mut callable = no_generics(cx, f, "handle");
    if let Some(a) = &f.sig.asyncness {
        cx.error_spanned_by(a, "a read model's `#[handle]` answers from memory and is synchronous");
        callable = false;
    }
    callable &= require_receiver(
        cx,
        f,
        false,
        "a read model's `#[handle]` takes `&self`: answering a query never changes the read model",
    );
    let args = typed_args(f);
    let Some(first) = args.first() else {
        cx.error_spanned_by(
            &f.sig,
            format!("query handler `{name}` needs the query: `fn {name}(&self, query: QueryType) -> ..`"),
        );
        return None;
    };
    let query = match &*first.ty {
        Type::Reference(r) => {
            cx.error_spanned_by(
                r,
                format!(
                    "`#[handle]` handlers take the query by value: `query: {}`",
                    type_name(&r.elem)
                ),
            );
            callable = false;
            (*r.elem).clone()
        }
        ty => ty.clone(),
    };
    if let Some(extra) = args.get(1) {
        cx.error_spanned_by(extra, "a query handler takes `&self` and the query only");
        callable = false;
    }
    let output = match &f.sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            cx.error_spanned_by(&f.sig, format!("query handler `{name}` returns the query's output"));
            callable = false;
            None
        }
    };
    Some(AnswerFn {
        method: name.clone(),
        query,
        output,
        callable,
    })
}

pub(crate) fn read_react(cx: &Ctxt, f: &ImplItemFn) -> Option<ReactFn> {
    let name = &f.sig.ident;
    let mut callable = no_generics(cx, f, "apply");
    if let Some(a) = &f.sig.asyncness {
        cx.error_spanned_by(
            a,
            "a process's `#[apply]` decides which commands to send and is synchronous; the process manager sends them",
        );
        callable = false;
    }
    if !matches!(receiver(f), Some(r) if r.reference.is_some() && r.mutability.is_none()) {
        let message =
            "a process's `#[apply]` takes `&self`: a process keeps no state of its own (keep it in aggregates)";
        match receiver(f) {
            Some(r) => cx.error_spanned_by(r, message),
            None => cx.error_spanned_by(&f.sig, message),
        }
        callable = false;
    }
    let args = typed_args(f);
    let Some(first) = args.first() else {
        cx.error_spanned_by(
            &f.sig,
            format!(
                "process handler `{name}` needs the event: `fn {name}(&self, event: &EventType) -> Option<Command>`"
            ),
        );
        return None;
    };
    let (event, ok) = event_ref(cx, &first.ty);
    callable &= ok;
    if let Some(extra) = args.get(2) {
        cx.error_spanned_by(extra, "a process handler takes the event and, optionally, its context");
        callable = false;
    }
    if matches!(f.sig.output, ReturnType::Default) {
        cx.error_spanned_by(
            &f.sig,
            format!("process handler `{name}` returns the commands to send: an `Option`, a `Vec`, ..."),
        );
        callable = false;
    }
    Some(ReactFn {
        method: name.clone(),
        event,
        context: args.len() >= 2,
        callable,
    })
}

/// The fields of its context argument `arg` that a handler's `body` reads,
/// as names of `ContextFields` constants (a name may repeat); `None` when
/// it may use any (the context is passed on, bound again, printed, or
/// matched). Read from the tokens, so it errs towards `None`: every use of
/// the argument's name must be `name.field` or `name.metadata()` /
/// `name.stream()`.
pub(crate) fn context_fields(arg: &syn::PatType, body: &syn::Block) -> Option<Vec<&'static str>> {
    let name = match &*arg.pat {
        Pat::Wild(_) => return Some(Vec::new()),
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.to_string(),
        _ => return None,
    };
    let mut used = Vec::new();
    scan_context_uses(body.to_token_stream(), &name, &mut used).then_some(used)
}

fn scan_context_uses(tokens: TokenStream, name: &str, used: &mut Vec<&'static str>) -> bool {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_dot = |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == '.');
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(g) if !scan_context_uses(g.stream(), name, used) => return false,
            TokenTree::Group(_) => {}
            // `other.name` is a field of something else.
            TokenTree::Ident(id) if id == name && !(i > 0 && is_dot(tokens.get(i - 1))) => {
                let dot = matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '.' && p.spacing() == Spacing::Alone);
                let Some(TokenTree::Ident(field)) = tokens.get(i + 2).filter(|_| dot) else {
                    return false;
                };
                let call =
                    matches!(tokens.get(i + 3), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                let needs: &[&'static str] = match (field.to_string().as_str(), call) {
                    ("event_id", false) => &["EVENT_ID"],
                    ("aggregate_type", false) => &["AGGREGATE_TYPE"],
                    ("aggregate_id", false) => &["AGGREGATE_ID"],
                    ("version", false) => &["VERSION"],
                    ("recorded_at", false) => &["RECORDED_AT"],
                    ("position", false) => &["POSITION"],
                    ("metadata", true) => &["METADATA"],
                    ("stream", true) => &["AGGREGATE_TYPE", "AGGREGATE_ID"],
                    _ => return false,
                };
                used.extend_from_slice(needs);
            }
            // `format!("{name}")` captures it whole.
            TokenTree::Literal(l) => {
                let text = l.to_string();
                if text.contains(&format!("{{{name}}}")) || text.contains(&format!("{{{name}:")) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}
