//! Commands: requests to change one aggregate, and enums of them.

use std::future::Future;

use crate::aggregate::{Aggregate, Handle};
use crate::codec::Codec;
use crate::dispatcher::{AnyCommitted, Committed, Dispatcher};
use crate::envelope::Metadata;
use crate::error::DispatchError;
use crate::store::EventStore;

/// A request to change one aggregate: `Self::Aggregate`, at the id in the
/// command's `#[aggregate_id]` field.
///
/// Derive it with `#[derive(Command)]` and `#[command(aggregate = A)]`. The
/// bound `Aggregate: Handle<Self>` makes a command without a handler a
/// compile error at the command's definition. Commands are cloned when a
/// version conflict makes the dispatcher decide them again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    label = "`{Self}` does not implement `Command`",
    note = "add `#[derive(Command)]` and `#[command(aggregate = ..)]` to `{Self}`, and mark its id field `#[aggregate_id]`"
)]
pub trait Command: Sized + Send + Sync + 'static {
    /// The command's name in logs and errors (its type name).
    const NAME: &'static str;

    /// The aggregate that decides it.
    type Aggregate: Handle<Self>;

    /// The id of the aggregate instance it targets.
    fn aggregate_id(&self) -> &<Self::Aggregate as Aggregate>::Id;

    /// A fingerprint of the command's content, recorded beside its command
    /// id: a later command under the same id on the same stream whose
    /// fingerprint differs is refused
    /// ([`DispatchError::CommandIdReused`](crate::DispatchError::CommandIdReused))
    /// instead of being answered with the first one's outcome — an
    /// `Idempotency-Key` reused with other parameters is an error.
    ///
    /// `#[derive(Command)]` implements it for a command that is
    /// `Serialize` (see [`command_fingerprint`](crate::command_fingerprint) for
    /// how it is derived); `None`, the default, leaves only the command's
    /// type name compared.
    fn fingerprint(&self) -> Option<Fingerprint> {
        None
    }
}

/// A command's content fingerprint: see [`Command::fingerprint`].
pub type Fingerprint = [u8; 16];

/// The fingerprint of a command named `name` with content `command`: the
/// first 128 bits of SHA-256 over the name's length (8 bytes, little
/// endian), the name, and the command's JSON (serde_json) with every
/// object's keys in byte order and no white space. It is the same on every
/// platform and release as long as the command serializes to the same
/// JSON; `None` if it cannot be serialized.
pub fn command_fingerprint<T: serde::Serialize + ?Sized>(name: &str, command: &T) -> Option<Fingerprint> {
    use sha2::Digest;
    let value = serde_json::to_value(command).ok()?;
    let mut canonical = Vec::with_capacity(64);
    write_canonical(&value, &mut canonical);
    let mut hasher = sha2::Sha256::new();
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&canonical);
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    Some(out)
}

/// JSON with object keys sorted, whatever map type serde_json was built
/// with (its `preserve_order` feature keeps insertion order).
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // A string always serializes.
                out.extend(serde_json::to_vec(key).unwrap_or_default());
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

/// Lower-case hex of a fingerprint, as it is stored in metadata.
pub(crate) fn fingerprint_hex(fingerprint: &Fingerprint) -> String {
    crate::util::hex(fingerprint)
}

/// Anything [`Dispatcher::dispatch`] accepts: every [`Command`], and enums of
/// commands of different aggregates (`#[derive(Command)]` on an enum), which
/// route each variant to its aggregate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be dispatched",
    label = "not a command",
    note = "derive `Command` on `{Self}`: on a struct with `#[command(aggregate = ..)]`, or on an enum whose variants each hold one command"
)]
pub trait Dispatchable: Sized + Send + 'static {
    /// What a successful dispatch returns: [`Committed`] for one command,
    /// [`AnyCommitted`] for a command enum.
    type Output: Into<AnyCommitted> + Send;

    /// The handler's error type.
    type Rejection: std::error::Error + Send + Sync + 'static;

    /// Dispatches `self` through `dispatcher`.
    fn dispatch_on<S: EventStore, C: Codec>(
        self,
        dispatcher: &Dispatcher<S, C>,
        metadata: Metadata,
    ) -> impl Future<Output = Result<Self::Output, DispatchError<Self::Rejection>>> + Send + '_;
}

#[diagnostic::do_not_recommend]
impl<T: Command> Dispatchable for T {
    type Output = Committed<T::Aggregate>;
    type Rejection = <T::Aggregate as Aggregate>::Error;

    #[inline]
    fn dispatch_on<S: EventStore, C: Codec>(
        self,
        dispatcher: &Dispatcher<S, C>,
        metadata: Metadata,
    ) -> impl Future<Output = Result<Self::Output, DispatchError<Self::Rejection>>> + Send + '_ {
        dispatcher.execute(self, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Deposit {
        account: String,
        amount: u64,
    }

    #[test]
    fn a_fingerprint_is_pinned_across_releases() {
        let deposit = Deposit {
            account: "ada".into(),
            amount: 500,
        };
        // SHA-256 of 7u64 (LE) ++ "Deposit" ++ {"account":"ada","amount":500},
        // first 16 bytes. Changing this breaks every stored command id.
        let hex = fingerprint_hex(&command_fingerprint("Deposit", &deposit).unwrap());
        use sha2::Digest;
        let mut expected = sha2::Sha256::new();
        expected.update(7u64.to_le_bytes());
        expected.update(b"Deposit");
        expected.update(br#"{"account":"ada","amount":500}"#);
        assert_eq!(hex, fingerprint_hex(&expected.finalize()[..16].try_into().unwrap()));
        assert_eq!(hex, "1b326e8561c6359241ea546bc0d4d52b");
    }

    #[test]
    fn fingerprints_tell_content_and_names_apart_and_ignore_map_order() {
        let a = command_fingerprint(
            "Deposit",
            &Deposit {
                account: "ada".into(),
                amount: 5,
            },
        );
        let b = command_fingerprint(
            "Deposit",
            &Deposit {
                account: "ada".into(),
                amount: 500,
            },
        );
        let c = command_fingerprint(
            "Withdraw",
            &Deposit {
                account: "ada".into(),
                amount: 5,
            },
        );
        assert!(a.is_some() && a != b && a != c);
        let mut one = std::collections::HashMap::new();
        let mut two = std::collections::HashMap::new();
        for i in 0..50 {
            one.insert(format!("k{i}"), i);
        }
        for i in (0..50).rev() {
            two.insert(format!("k{i}"), i);
        }
        assert_eq!(command_fingerprint("M", &one), command_fingerprint("M", &two));
    }
}
