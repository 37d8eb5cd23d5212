//! The model of an `#[es_core::handlers]` impl block.
//!
//! Each `#[apply]` and `#[handle]` method is read into an [`ApplyFn`] or
//! [`HandleFn`], its marker attribute removed. A method with the wrong shape
//! is reported and marked `broken`, so the expansion emits a stub impl for it
//! and the mistake gives one error instead of a second "missing handler" one.

use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Path, ReturnType, Type};

use super::read_side::{AnswerFn, ProjectFn, ReactFn, read_answer, read_project, read_react};
use crate::attr::{self, HandlerKind, suggest};
use crate::ctxt::Ctxt;

pub(crate) struct HandlersInput {
    /// The impl block with the marker attributes removed.
    pub(crate) item: ItemImpl,
    /// What the block is, holding only the handlers that kind has.
    pub(crate) block: Block,
    pub(crate) krate: Path,
}

/// The kinds of handler block, each with its handlers: a mix the attribute
/// arguments do not allow cannot be built.
pub(crate) enum Block {
    /// `#[es_core::handlers]`: `#[apply]` evolves state on events,
    /// `#[handle]` decides commands.
    Aggregate {
        applies: Vec<ApplyFn>,
        handles: Vec<HandleFn>,
    },
    /// `#[es_core::handlers(read_model)]`: `#[apply]` projects events,
    /// `#[handle]` answers queries.
    ReadModel {
        projections: Vec<ProjectFn>,
        answers: Vec<AnswerFn>,
    },
    /// `#[es_core::handlers(process, command = C)]`: `#[apply]` reacts to
    /// events with commands (`command` is `None` when missing, reported).
    Process {
        command: Option<Box<Type>>,
        reactions: Vec<ReactFn>,
    },
}

/// `#[apply] fn method(&mut self, event: &Event)`.
pub(crate) struct ApplyFn {
    pub(crate) method: Ident,
    pub(crate) event: Type,
    /// Whether the method takes the event by reference and `&mut self`, so
    /// the generated impl can call it.
    pub(crate) callable: bool,
}

/// `#[handle] fn method(&self, command: Command[, services: &Services]) -> Result<..>`.
pub(crate) struct HandleFn {
    pub(crate) method: Ident,
    pub(crate) command: Type,
    /// Whether the handler takes the command by reference (`&Deposit`);
    /// one taking it by value gets a copy.
    pub(crate) command_by_ref: bool,
    pub(crate) services: Option<Type>,
    pub(crate) output: Option<Type>,
    pub(crate) callable: bool,
}

enum Marker {
    Apply,
    Handle,
}

const MARKERS: &[&str] = &["apply", "handle"];

/// Removes our marker attributes from `f`, reporting misuse and likely typos
/// (`#[aply]`), and says which marker it had.
fn take_marker(cx: &Ctxt, f: &mut ImplItemFn) -> Option<Marker> {
    let mut found: Option<Marker> = None;
    let mut keep = Vec::with_capacity(f.attrs.len());
    for a in f.attrs.drain(..) {
        let Some(ident) = a.path().get_ident().map(ToString::to_string) else {
            keep.push(a);
            continue;
        };
        let marker = match ident.as_str() {
            "apply" => Marker::Apply,
            "handle" => Marker::Handle,
            other => match suggest(other, MARKERS).filter(|_| other.len() > 3) {
                // Reported, then read as the marker it is close to, so the
                // typo does not also cost a "missing handler" error.
                Some(m) => {
                    cx.error_spanned_by(
                        a.path(),
                        format!("unknown attribute `#[{other}]` on a handler; did you mean `#[{m}]`?"),
                    );
                    if m == "apply" { Marker::Apply } else { Marker::Handle }
                }
                None => {
                    keep.push(a);
                    continue;
                }
            },
        };
        if !matches!(a.meta, syn::Meta::Path(_)) {
            cx.error_spanned_by(&a, format!("`#[{ident}]` takes no arguments"));
        }
        if found.is_some() {
            cx.error_spanned_by(
                &a,
                "a method is either `#[apply]` (evolve on an event) or `#[handle]` (decide a command), not both",
            );
            continue;
        }
        found = Some(marker);
    }
    f.attrs = keep;
    found
}

pub(crate) fn receiver(f: &ImplItemFn) -> Option<&syn::Receiver> {
    match f.sig.inputs.first() {
        Some(FnArg::Receiver(r)) => Some(r),
        _ => None,
    }
}

/// The typed (non-receiver) arguments.
pub(crate) fn typed_args(f: &ImplItemFn) -> Vec<&syn::PatType> {
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

pub(crate) fn common_checks(cx: &Ctxt, f: &ImplItemFn, kind: &str) -> bool {
    let mut ok = true;
    if let Some(a) = &f.sig.asyncness {
        cx.error_spanned_by(
            a,
            format!(
                "`#[{kind}]` handlers are synchronous and pure: do I/O in the dispatcher, a store or a process manager, and pass what a handler needs in the command or its services"
            ),
        );
        ok = false;
    }
    if !f.sig.generics.params.is_empty() {
        cx.error_spanned_by(&f.sig.generics, format!("`#[{kind}]` handlers cannot be generic"));
        ok = false;
    }
    ok
}

fn read_apply(cx: &Ctxt, f: &ImplItemFn) -> Option<ApplyFn> {
    let mut callable = common_checks(cx, f, "apply");
    let name = &f.sig.ident;
    match receiver(f) {
        Some(r) if r.reference.is_some() && r.mutability.is_some() => {}
        Some(r) if r.reference.is_some() => {
            // `&self` can still be called from the generated `&mut self` impl.
            cx.error_spanned_by(
                r,
                "`#[apply]` handlers take `&mut self`: applying an event is the one place state changes",
            );
        }
        other => {
            let at: &dyn quote::ToTokens = match other {
                Some(r) => r,
                None => &f.sig,
            };
            cx.error_spanned_by(
                at,
                "`#[apply]` handlers take `&mut self`: applying an event is the one place state changes",
            );
            callable = false;
        }
    }
    let args = typed_args(f);
    let event = match args.as_slice() {
        [arg] => match &*arg.ty {
            Type::Reference(r) if r.mutability.is_none() => (*r.elem).clone(),
            Type::Reference(r) => {
                cx.error_spanned_by(
                    r,
                    format!(
                        "take the event by shared reference: `event: &{}`",
                        crate::ast::type_name(&r.elem)
                    ),
                );
                callable = false;
                (*r.elem).clone()
            }
            ty => {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "`#[apply]` handlers take the event by reference: `event: &{}`",
                        crate::ast::type_name(ty)
                    ),
                );
                callable = false;
                ty.clone()
            }
        },
        [] => {
            cx.error_spanned_by(
                &f.sig,
                format!(
                    "`#[apply]` handler `{name}` needs the event it applies: `fn {name}(&mut self, event: &EventType)`"
                ),
            );
            return None;
        }
        [_, extra, ..] => {
            // An event context (or a transaction) after the event is how a
            // read model's handler looks: say so instead of refusing it.
            let read_model =
                matches!(&*extra.ty, Type::Reference(r) if crate::ast::type_name(&r.elem).starts_with("EventContext"));
            let message = if read_model {
                "this `#[apply]` takes an event context, as a read model's handlers do: if this is a read model, write `#[es_core::handlers(read_model)]` on its block (an aggregate's `#[apply]` takes only `&mut self` and the event)"
            } else {
                "`#[apply]` handlers take only `&mut self` and the event: applying must not depend on anything else"
            };
            cx.error_spanned_by(extra, message);
            callable = false;
            match &*args[0].ty {
                Type::Reference(r) => (*r.elem).clone(),
                ty => ty.clone(),
            }
        }
    };
    if let ReturnType::Type(_, ty) = &f.sig.output {
        let unit = matches!(&**ty, Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            cx.error_spanned_by(
                ty,
                "`#[apply]` handlers return nothing: an event is a fact, and applying it cannot fail",
            );
            callable = false;
        }
    }
    Some(ApplyFn {
        method: name.clone(),
        event,
        callable,
    })
}

fn read_handle(cx: &Ctxt, f: &ImplItemFn) -> Option<HandleFn> {
    let mut callable = common_checks(cx, f, "handle");
    let name = &f.sig.ident;
    let takes_ref_self = matches!(receiver(f), Some(r) if r.reference.is_some() && r.mutability.is_none());
    if !takes_ref_self {
        let message = "`#[handle]` handlers take `&self`: deciding never mutates; state changes in `#[apply]` handlers";
        match receiver(f) {
            Some(r) => cx.error_spanned_by(r, message),
            None => cx.error_spanned_by(&f.sig, message),
        }
        callable = false;
    }
    let args = typed_args(f);
    let Some(command_arg) = args.first() else {
        cx.error_spanned_by(
            &f.sig,
            format!(
                "`#[handle]` handler `{name}` needs the command it decides: `fn {name}(&self, command: CommandType)`"
            ),
        );
        return None;
    };
    let (command, command_by_ref) = match &*command_arg.ty {
        Type::Reference(r) if r.mutability.is_some() => {
            cx.error_spanned_by(
                r,
                format!(
                    "`#[handle]` handlers decide without changing the command: take it by shared reference, `command: &{}`, or by value",
                    crate::ast::type_name(&r.elem)
                ),
            );
            callable = false;
            ((*r.elem).clone(), true)
        }
        Type::Reference(r) => ((*r.elem).clone(), true),
        ty => (ty.clone(), false),
    };
    let services = match args.get(1) {
        None => None,
        Some(arg) => match &*arg.ty {
            Type::Reference(r) if r.mutability.is_none() => Some((*r.elem).clone()),
            ty => {
                cx.error_spanned_by(
                    ty,
                    "the third argument of a `#[handle]` handler is the aggregate's services, by shared reference: `services: &Services`",
                );
                callable = false;
                None
            }
        },
    };
    if let Some(extra) = args.get(2) {
        cx.error_spanned_by(
            extra,
            "`#[handle]` handlers take `&self`, the command and optionally `&Services`; put anything else in the services",
        );
        callable = false;
    }
    let output = match &f.sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            cx.error_spanned_by(
                &f.sig,
                format!(
                    "`#[handle]` handler `{name}` must return `Result<events, error>`, such as `-> Result<MoneyDeposited, AccountError>`"
                ),
            );
            callable = false;
            None
        }
    };
    Some(HandleFn {
        method: name.clone(),
        command,
        command_by_ref,
        services,
        output,
        callable,
    })
}

impl HandlersInput {
    pub(crate) fn from_syn(cx: &Ctxt, args: proc_macro2::TokenStream, mut item: ItemImpl) -> Self {
        let args = attr::handlers_args(cx, args);
        let krate = attr::crate_path(args.krate);
        if let Some((_, trait_path, _)) = &item.trait_ {
            cx.error_spanned_by(
                trait_path,
                "`#[es_core::handlers]` goes on an inherent `impl` block (`impl Account { .. }`), not on a trait impl",
            );
        }
        let mut block = match args.kind {
            HandlerKind::Aggregate => Block::Aggregate {
                applies: Vec::new(),
                handles: Vec::new(),
            },
            HandlerKind::ReadModel => Block::ReadModel {
                projections: Vec::new(),
                answers: Vec::new(),
            },
            HandlerKind::Process(command) => Block::Process {
                command,
                reactions: Vec::new(),
            },
        };
        for it in &mut item.items {
            let ImplItem::Fn(f) = it else { continue };
            match (take_marker(cx, f), &mut block) {
                (Some(Marker::Apply), Block::Aggregate { applies, .. }) => applies.extend(read_apply(cx, f)),
                (Some(Marker::Handle), Block::Aggregate { handles, .. }) => handles.extend(read_handle(cx, f)),
                (Some(Marker::Apply), Block::ReadModel { projections, .. }) => projections.extend(read_project(cx, f)),
                (Some(Marker::Handle), Block::ReadModel { answers, .. }) => answers.extend(read_answer(cx, f)),
                (Some(Marker::Apply), Block::Process { reactions, .. }) => reactions.extend(read_react(cx, f)),
                (Some(Marker::Handle), Block::Process { .. }) => cx.error_spanned_by(
                    &f.sig.ident,
                    "a process reacts to events with `#[apply]` methods; it handles no commands or queries itself",
                ),
                (None, _) => continue,
            }
            // The generated trait impl is the method's one caller, often in
            // another crate (the dispatcher's); without the hint, folding
            // events would pay a call per event there.
            if !f.attrs.iter().any(|a| a.path().is_ident("inline")) {
                f.attrs.push(syn::parse_quote!(#[inline]));
            }
        }
        HandlersInput { item, block, krate }
    }
}
