//! The in-memory store's data keys: a map by subject. A forgotten key's
//! bytes are overwritten before they are dropped.

use std::collections::btree_map::Entry;
use std::ops::Bound;

use zeroize::Zeroize;

use super::InMemoryStore;
use crate::personal::{KeyBackend, KeyFuture, KeyWrite, StoredKey};

impl KeyBackend for InMemoryStore {
    fn store_name(&self) -> &'static str {
        "memory"
    }

    fn read_key<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, Option<StoredKey>> {
        let result = super::validate_subject("memory", subject).map(|()| {
            let keys = self.shared.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.get(subject).cloned()
        });
        Box::pin(std::future::ready(result))
    }

    fn write_key<'a>(&'a self, subject: &'a str, write: KeyWrite<'a>) -> KeyFuture<'a, StoredKey> {
        let result = super::validate_subject("memory", subject).map(|()| {
            let mut keys = self.shared.keys.lock().unwrap_or_else(|e| e.into_inner());
            let entry = keys.entry(subject.to_owned());
            match (write, entry) {
                (KeyWrite::Create { master_key, wrapped }, Entry::Vacant(v)) => v
                    .insert(StoredKey::Wrapped {
                        master_key: master_key.to_owned(),
                        wrapped: wrapped.to_vec(),
                    })
                    .clone(),
                (KeyWrite::Create { .. }, Entry::Occupied(o)) => o.get().clone(),
                (
                    KeyWrite::Rewrap {
                        from,
                        master_key,
                        wrapped,
                    },
                    Entry::Occupied(mut o),
                ) => {
                    if matches!(o.get(), StoredKey::Wrapped { wrapped: now, .. } if now.as_slice() == from) {
                        if let StoredKey::Wrapped { wrapped: old, .. } = o.get_mut() {
                            old.zeroize();
                        }
                        o.insert(StoredKey::Wrapped {
                            master_key: master_key.to_owned(),
                            wrapped: wrapped.to_vec(),
                        });
                    }
                    o.get().clone()
                }
                (KeyWrite::Rewrap { .. }, Entry::Vacant(_)) => StoredKey::Forgotten {
                    at: crate::Timestamp::from_micros(0),
                },
                (KeyWrite::Forget { at }, Entry::Occupied(mut o)) => {
                    if let StoredKey::Wrapped { wrapped, .. } = o.get_mut() {
                        wrapped.zeroize();
                    }
                    if !matches!(o.get(), StoredKey::Forgotten { .. }) {
                        o.insert(StoredKey::Forgotten { at });
                    }
                    o.get().clone()
                }
                (KeyWrite::Forget { at }, Entry::Vacant(v)) => v.insert(StoredKey::Forgotten { at }).clone(),
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn read_keys<'a>(&'a self, after: &'a str, limit: usize) -> KeyFuture<'a, Vec<(String, StoredKey)>> {
        let keys = self.shared.keys.lock().unwrap_or_else(|e| e.into_inner());
        let page = keys
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(subject, key)| (subject.clone(), key.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(page)))
    }
}
