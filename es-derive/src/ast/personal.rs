//! `#[personal(subject = ..)]` on the fields of an event struct: which
//! fields hold personal data, and whose.

use syn::{DataStruct, Fields, Ident, Type};

use crate::ctxt::Ctxt;

/// A personal field and the field naming its data subject.
pub(crate) struct PersonalField {
    pub(crate) field: Ident,
    pub(crate) subject: Ident,
}

fn is_personal_attr(a: &syn::Attribute) -> bool {
    a.path().is_ident("personal")
}

/// Whether `ty` is written as `Personal<..>` (any path ending so).
fn is_personal_type(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Personal" && matches!(s.arguments, syn::PathArguments::AngleBracketed(_))),
        Type::Group(g) => is_personal_type(&g.elem),
        Type::Paren(p) => is_personal_type(&p.elem),
        _ => false,
    }
}

/// The subject named by one `#[personal(..)]` attribute, reported when the
/// attribute is malformed.
fn subject_of(cx: &Ctxt, attr: &syn::Attribute, field: &Ident) -> Option<Ident> {
    let fix = format!(
        "write `#[personal(subject = <field>)]` on `{field}`, naming the field that identifies whose data it is"
    );
    if let syn::Meta::Path(_) = attr.meta {
        cx.error_spanned_by(attr, format!("personal field `{field}` names no data subject: {fix}"));
        return None;
    }
    let mut subject = None;
    let parsed = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("subject") {
            let value: Ident = meta.value()?.parse()?;
            if subject.replace(value).is_some() {
                return Err(meta.error("`subject` is given twice; a personal field has one subject"));
            }
            Ok(())
        } else {
            let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            Err(meta.error(format!(
                "unknown key `{key}` in `#[personal(..)]`: the only one is `subject`"
            )))
        }
    });
    if let Err(e) = parsed {
        cx.syn_error(e);
        return None;
    }
    if subject.is_none() {
        cx.error_spanned_by(attr, format!("personal field `{field}` names no data subject: {fix}"));
    }
    subject
}

/// Reads and checks the personal fields of event struct `ident`.
pub(crate) fn personal_fields(cx: &Ctxt, ident: &Ident, data: &DataStruct) -> Vec<PersonalField> {
    let named = matches!(data.fields, Fields::Named(_));
    let mut marked: Vec<(Ident, Option<Ident>)> = Vec::new();
    for field in &data.fields {
        let attrs: Vec<_> = field.attrs.iter().filter(|a| is_personal_attr(a)).collect();
        let personal_type = is_personal_type(&field.ty);
        let Some(name) = &field.ident else {
            if let Some(attr) = attrs.first() {
                cx.error_spanned_by(
                    attr,
                    format!("`{ident}` is a tuple struct: personal fields need names, so that each sealed value is bound to its field"),
                );
            }
            continue;
        };
        if attrs.len() > 1 {
            cx.error_spanned_by(
                attrs[1],
                format!("field `{name}` is marked `#[personal]` twice; keep one"),
            );
        }
        match (attrs.first(), personal_type) {
            (Some(attr), true) => marked.push((name.clone(), subject_of(cx, attr, name))),
            (Some(_), false) => cx.error_spanned_by(
                &field.ty,
                format!(
                    "field `{name}` is marked `#[personal]` but its type is not `Personal<..>`: make it `Personal<{}>`, so that code reading it must handle a forgotten value",
                    quote::ToTokens::to_token_stream(&field.ty)
                ),
            ),
            (None, true) => cx.error_spanned_by(
                &field.ty,
                format!(
                    "field `{name}` is `Personal<..>` but not marked personal: add `#[personal(subject = <field>)]`, naming the field that identifies whose data it is"
                ),
            ),
            (None, false) => {}
        }
    }
    let field_names: Vec<String> = data
        .fields
        .iter()
        .filter_map(|f| f.ident.as_ref().map(ToString::to_string))
        .collect();
    let mut out = Vec::new();
    for (field, subject) in &marked {
        let Some(subject) = subject else {
            continue;
        };
        if !named || !field_names.iter().any(|n| subject == n) {
            cx.error_spanned_by(
                subject,
                format!(
                    "`{subject}` is not a field of `{ident}`: the subject of personal field `{field}` is another field of the event, one of: {}",
                    field_names.join(", ")
                ),
            );
            continue;
        }
        if marked.iter().any(|(f, _)| f == subject) {
            cx.error_spanned_by(
                subject,
                format!(
                    "the subject of `{field}` is `{subject}`, which is itself personal: name the field that identifies the person (an id, stored in clear)"
                ),
            );
            continue;
        }
        out.push(PersonalField {
            field: field.clone(),
            subject: subject.clone(),
        });
    }
    out
}
