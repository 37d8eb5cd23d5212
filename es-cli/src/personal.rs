//! Personal data as the operator sees it: sealed values shown as whose
//! they are (or `<forgotten>`), never opened; and forgetting a subject.

use std::collections::HashMap;

use es_core::personal::{KeyBackend, StoredKey, sealed_text_subject};
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
