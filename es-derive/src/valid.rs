//! Cross-checks between the parts of one input: the same event twice in an
//! enum, two handlers for one event or command.
//!
//! Types are compared as written (after normalizing spaces): `Deposited` and
//! `crate::Deposited` are different here, and the compiler's own
//! "conflicting implementations" error catches what slips through.

use std::collections::HashMap;

use syn::{Ident, Type};

use crate::ast::handlers::{Block, HandlersInput};
use crate::ast::{Variant, type_name};
use crate::ctxt::Ctxt;

/// Reports a payload type held by two variants, and drops the later one so
/// the expansion does not add "conflicting implementations" errors.
pub(crate) fn unique_payloads<'a>(
    cx: &Ctxt,
    enum_ident: &Ident,
    variants: &mut Vec<Variant<'a>>,
    skipped: &mut Vec<&'a Ident>,
    what: &str,
) {
    let mut seen: HashMap<String, &'a Ident> = HashMap::new();
    variants.retain(|v| {
        let key = type_name(v.ty);
        match seen.get(&key) {
            Some(first) => {
                cx.error_spanned_by(
                    v.ty,
                    format!(
                        "`{key}` is already the {what} of variant `{enum_ident}::{first}`; each {what} type appears once in `{enum_ident}`"
                    ),
                );
                skipped.push(v.ident);
                false
            }
            None => {
                seen.insert(key, v.ident);
                true
            }
        }
    });
}

/// Reports a second `#[apply]` for one event or `#[handle]` for one command,
/// and drops it so the expansion does not add a "conflicting
/// implementations" error.
pub(crate) fn unique_handlers(cx: &Ctxt, input: &mut HandlersInput) {
    let self_ty = type_name(&input.item.self_ty);
    let mut seen: HashMap<String, Ident> = HashMap::new();
    let mut answered: HashMap<String, Ident> = HashMap::new();
    match &mut input.block {
        Block::Aggregate { applies, handles } => {
            applies.retain(|a| first(cx, &mut seen, &a.event, &a.method, &self_ty, "#[apply]", "event"));
            handles.retain(|h| {
                first(
                    cx,
                    &mut answered,
                    &h.command,
                    &h.method,
                    &self_ty,
                    "#[handle]",
                    "command",
                )
            });
        }
        Block::ReadModel { projections, answers } => {
            // A read model in a database has one transaction type.
            let mut tx: Option<String> = None;
            for t in projections.iter().filter_map(|p| p.tx.as_ref()) {
                let name = type_name(t);
                match &tx {
                    Some(first) if *first != name => cx.error_spanned_by(
                        t,
                        format!(
                            "every handler of `{self_ty}` takes the same transaction type; the first takes `&mut {first}`"
                        ),
                    ),
                    _ => tx = Some(name),
                }
            }
            projections.retain(|p| first(cx, &mut seen, &p.event, &p.method, &self_ty, "#[apply]", "event"));
            answers.retain(|a| first(cx, &mut answered, &a.query, &a.method, &self_ty, "#[handle]", "query"));
        }
        Block::Process { reactions, .. } => {
            reactions.retain(|r| first(cx, &mut seen, &r.event, &r.method, &self_ty, "#[apply]", "event"));
        }
    }
}

fn first(
    cx: &Ctxt,
    seen: &mut HashMap<String, Ident>,
    ty: &Type,
    method: &Ident,
    self_ty: &str,
    marker: &str,
    what: &str,
) -> bool {
    let key = type_name(ty);
    match seen.get(&key) {
        Some(first) => {
            cx.error_spanned_by(
                method,
                format!(
                    "`{self_ty}` already has a `{marker}` handler for {what} `{key}` (`{first}`); keep one of the two"
                ),
            );
            false
        }
        None => {
            seen.insert(key, method.clone());
            true
        }
    }
}
