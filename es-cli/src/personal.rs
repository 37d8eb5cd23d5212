//! Personal data as the operator sees it: sealed values shown as whose
//! they are (or `<forgotten>`), never opened; and forgetting a subject.

use std::collections::HashMap;
use std::ops::ControlFlow;

use es_core::EventStore;
use es_core::personal::{KeyBackend, StoredKey, sealed_text_subject};
use es_core::store::{ContextFields, RecordedEvent};
use serde_json::Value;

use crate::{CliError, Db, on_store};

/// What the store says of each subject met so far.
#[derive(Default)]
pub(crate) struct Subjects {
    forgotten: HashMap<String, bool>,
}

impl Subjects {
    /// Replaces each sealed value in `value` by `<forgotten>` (its subject
    /// was forgotten) or `<sealed: <subject>>`: the tool has no master key
    /// and never opens them.
    pub(crate) async fn mask(&mut self, db: &Db, value: &mut Value) -> Result<(), CliError> {
        let mut found = Vec::new();
        collect(value, &mut found);
        for subject in found {
            if !self.forgotten.contains_key(&subject) {
                let key = on_store!(db, s => KeyBackend::read_key(s, &subject).await?);
                self.forgotten
                    .insert(subject.clone(), matches!(key, Some(StoredKey::Forgotten { .. })));
            }
        }
        replace(value, &self.forgotten);
        Ok(())
    }
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if let Some((subject, _)) = sealed_text_subject(text) {
                out.push(subject);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn replace(value: &mut Value, forgotten: &HashMap<String, bool>) {
    match value {
        Value::String(text) => {
            if let Some((subject, _)) = sealed_text_subject(text) {
                *text = if forgotten.get(&subject).copied().unwrap_or(false) {
                    "<forgotten>".to_owned()
                } else {
                    format!("<sealed: {subject}>")
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace(v, forgotten)),
        Value::Object(fields) => fields.values_mut().for_each(|v| replace(v, forgotten)),
        _ => {}
    }
}

/// Forgets `subject`: erases its key and records the forget in the log.
pub(crate) async fn forget(db: &Db, subject: &str) -> Result<(), CliError> {
    on_store!(db, s => es_core::forget_subject(s, s, subject).await?);
    Ok(())
}

/// A personal field stored in clear: an event written before the field
/// was made personal (or by code that did not seal it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unsealed {
    /// The event's position in the log.
    pub position: u64,
    /// Its stream, as `aggregate_type/aggregate_id`.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored name.
    pub name: String,
    /// The field that holds a value in clear (the value is not shown).
    pub field: String,
}

/// What `es unsealed` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct UnsealedReport {
    /// The personal fields looked at, as `event.name:field`: those some
    /// event stores sealed, and those the operator named.
    pub fields: Vec<String>,
    /// The events holding one of them in clear.
    pub found: Vec<Unsealed>,
    /// Events whose payload is not JSON (a binary codec), not looked into.
    pub not_json: u64,
}

const PAGE: usize = 1000;

/// Lists the events that hold a personal field in clear. A field is
/// personal when some event of its name stores it sealed (so the fields of
/// events written before a field became personal are found by themselves),
/// or when the operator names it (`declared`, `(event name, field)`: for a
/// field made personal that no event has been written with since). Only
/// top-level fields of JSON payloads are looked at; a field holding `null`
/// is forgotten or absent, not in clear.
pub(crate) async fn unsealed(db: &Db, declared: &[(String, String)]) -> Result<UnsealedReport, CliError> {
    let mut personal: std::collections::BTreeSet<(String, String)> = declared.iter().cloned().collect();
    let mut not_json = 0u64;
    // Pass 1: the fields some event stores sealed.
    scan(db, |e| match serde_json::from_slice::<Value>(e.payload) {
        Ok(Value::Object(fields)) => {
            for (field, value) in &fields {
                if value.as_str().and_then(sealed_text_subject).is_some() {
                    personal.insert((e.name.to_owned(), field.clone()));
                }
            }
        }
        Ok(_) => {}
        Err(_) => not_json += 1,
    })
    .await?;
    // Pass 2: the events holding one of them in clear.
    let names: std::collections::BTreeSet<&str> = personal.iter().map(|(n, _)| n.as_str()).collect();
    let mut found = Vec::new();
    scan(db, |e| {
        if !names.contains(e.name) {
            return;
        }
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(e.payload) else {
            return;
        };
        for (field, value) in &fields {
            let in_clear = !value.is_null() && value.as_str().and_then(sealed_text_subject).is_none();
            if in_clear && personal.contains(&(e.name.to_owned(), field.clone())) {
                found.push(Unsealed {
                    position: e.position,
                    stream: format!("{}/{}", e.aggregate_type, e.aggregate_id),
                    version: e.version,
                    name: e.name.to_owned(),
                    field: field.clone(),
                });
            }
        }
    })
    .await?;
    Ok(UnsealedReport {
        fields: personal.into_iter().map(|(n, f)| format!("{n}:{f}")).collect(),
        found,
        not_json,
    })
}

/// Visits every event of the log, page by page.
async fn scan(db: &Db, mut visit: impl FnMut(&RecordedEvent<'_>) + Send) -> Result<(), CliError> {
    let fields = ContextFields::AGGREGATE_TYPE
        .union(ContextFields::AGGREGATE_ID)
        .union(ContextFields::VERSION)
        .union(ContextFields::POSITION);
    let mut after = 0;
    loop {
        let mut seen = 0usize;
        let mut last = after;
        on_store!(db, s => s.read_all(after, PAGE, fields, |e: &RecordedEvent<'_>| {
            seen += 1;
            last = e.position;
            if e.name != es_core::store::FOREIGN {
                visit(e);
            }
            ControlFlow::Continue(())
        }).await?);
        if seen < PAGE {
            return Ok(());
        }
        after = last;
    }
}
