//! `es audit`: seal the log, export its head, verify a store, prove one
//! event and check a proof offline.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use es_core::audit::{self, InclusionProof, PublicKey, Seal, SealKey, VerifyOptions};
use serde_json::json;

use crate::table::printable;
use crate::{CliError, Db, fail, on_store};

/// What `es audit` does.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every stream's hash chain, every seal and (with --head) that
    /// the log only grew since an exported head. Exits non-zero, naming
    /// the first broken places, if anything does not hold.
    Verify {
        /// A public key seals may be signed with (repeatable; without one,
        /// any key is accepted and the report says so).
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// A head exported earlier (`es audit head`), kept elsewhere.
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
    },
    /// Catch up with the log and append a seal of it now, signed with the
    /// key in --key-file (or in $ES_SEAL_KEY); prints the seal.
    Seal {
        /// A file holding the seal key (base64), as `keygen` writes it.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Print the latest seal: the head to keep elsewhere (a file, another
    /// system, a printout); `verify --head` checks the log against it.
    Head,
    /// Print an inclusion proof of the event at a position: anyone checks
    /// it with `es audit check` and the public key, without the store.
    Prove {
        /// The event's position in the log.
        position: u64,
    },
    /// Check an inclusion proof with the public key alone (no --db).
    Check {
        /// The proof, as `prove` printed it.
        proof: PathBuf,
        /// The public key the seal must be signed with.
        #[arg(long = "key", value_name = "HEX")]
        key: String,
    },
    /// Make a new seal key: writes it to --out (readable by its owner
    /// only) and prints its public key. No --db.
    Keygen {
        /// Where to write the key; an existing file is not overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

impl AuditCommand {
    /// Whether it runs without a store.
    pub(crate) fn offline(&self) -> bool {
        matches!(self, AuditCommand::Check { .. } | AuditCommand::Keygen { .. })
    }

    /// Whether it writes to the store.
    pub(crate) fn writes(&self) -> bool {
        matches!(self, AuditCommand::Seal { .. })
    }
}

fn audit_error(e: audit::AuditError) -> CliError {
    fail(e.to_string())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read the {what} {}: {}", path.display(), e.kind())))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("the {what} {} does not read: {e}", path.display())))
}

fn parse_key(text: &str) -> Result<PublicKey, CliError> {
    text.parse()
        .map_err(|e: audit::AuditError| fail(format!("--key `{}`: {e}", printable(text))))
}

/// The commands that need no store.
pub(crate) fn run_offline(
    command: &AuditCommand,
    json_out: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match command {
        AuditCommand::Check { proof, key } => {
            let key = parse_key(key)?;
            let proof: InclusionProof = read_json(proof, "proof")?;
            let link = audit::check_proof(&proof, &key).map_err(audit_error)?;
            let e = &proof.event;
            if json_out {
                writeln!(
                    out,
                    "{}",
                    json!({"holds": true, "link": link, "position": e.position, "seal_size": proof.seal.size})
                )?;
            } else {
                writeln!(
                    out,
                    "the proof holds: version {} of `{}` (position {}) is event {} of the {} the seal of {} signs",
                    e.version,
                    printable(&format!("{}/{}", e.aggregate_type, e.aggregate_id)),
                    e.position,
                    proof.index + 1,
                    proof.seal.size,
                    es_core::Timestamp::from_micros(proof.seal.sealed_at),
                )?;
            }
            Ok(())
        }
        AuditCommand::Keygen { out: path } => {
            let key = SealKey::generate();
            write_private(path, key.to_base64().as_bytes())?;
            if json_out {
                writeln!(
                    out,
                    "{}",
                    json!({"key_file": path.display().to_string(), "public_key": key.public_key()})
                )?;
            } else {
                writeln!(
                    out,
                    "wrote a seal key to {} (keep it secret); its public key:\n{}",
                    printable(&path.display().to_string()),
                    key.public_key()
                )?;
            }
            Ok(())
        }
        _ => unreachable!("only offline commands come here"),
    }
}

/// Writes a new file that only its owner reads.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| fail(format!("cannot create {}: {}", path.display(), e.kind())))?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| fail(format!("cannot write {}: {}", path.display(), e.kind())))
}

/// The commands on a store.
pub(crate) async fn run(
    db: &Db,
    command: &AuditCommand,
    json_out: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { keys, head } => verify(db, keys, head.as_deref(), json_out, out).await,
        AuditCommand::Seal { key_file } => {
            let key = match key_file {
                Some(path) => SealKey::from_file(path),
                None => SealKey::from_env("ES_SEAL_KEY"),
            }
            .map_err(audit_error)?;
            let sealed = on_store!(db, s => audit::Sealer::new(s.clone(), key).seal_now().await);
            let seal = match sealed.map_err(audit_error)? {
                Some(seal) => seal,
                None => on_store!(db, s => audit::latest_seal(s).await)
                    .map_err(audit_error)?
                    .1
                    .ok_or_else(|| fail("the log is empty: nothing to seal"))?,
            };
            write_seal(&seal, json_out, out)
        }
        AuditCommand::Head => {
            let (_, seal) = on_store!(db, s => audit::latest_seal(s).await).map_err(audit_error)?;
            let seal = seal.ok_or_else(|| fail("the store has no seal yet: `es audit seal` makes one"))?;
            write_seal(&seal, true, out)
        }
        AuditCommand::Prove { position } => {
            let proof = on_store!(db, s => audit::prove(s, *position, None).await).map_err(audit_error)?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&proof).map_err(|e| fail(e.to_string()))?
            )?;
            Ok(())
        }
        AuditCommand::Check { .. } | AuditCommand::Keygen { .. } => run_offline(command, json_out, out),
    }
}

fn write_seal(seal: &Seal, json_out: bool, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    if json_out {
        writeln!(out, "{}", serde_json::to_string(seal).map_err(|e| fail(e.to_string()))?)?;
    } else {
        writeln!(
            out,
            "sealed {} events (up to position {}): root {}, signed by {} at {}",
            seal.size,
            seal.position,
            seal.root,
            seal.key,
            es_core::Timestamp::from_micros(seal.sealed_at)
        )?;
    }
    Ok(())
}

async fn verify(
    db: &Db,
    keys: &[String],
    head: Option<&Path>,
    json_out: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let options = VerifyOptions {
        trusted: keys.iter().map(|k| parse_key(k)).collect::<Result<_, _>>()?,
        head: head.map(|path| read_json::<Seal>(path, "head")).transpose()?,
        ..VerifyOptions::default()
    };
    let last = on_store!(db, s => es_core::EventStore::last_position(s).await?);
    let bar = crate::commands::progress_bar(last, "verifying".to_owned(), "", json_out)?;
    let report =
        on_store!(db, s => audit::verify(s, &options, |_, position| bar.set_position(position.min(last))).await)
            .map_err(audit_error)?;
    bar.finish_and_clear();
    let problems: Vec<String> = report.problems.iter().map(|p| printable(&p.to_string())).collect();
    if json_out {
        writeln!(
            out,
            "{}",
            json!({
                "clean": report.is_clean(),
                "events": report.events,
                "streams": report.streams,
                "seals": report.seals,
                "unsealed": report.unsealed,
                "foreign": report.foreign,
                "last_seal": report.last_seal.as_ref().map(|s| json!({"size": s.size, "root": s.root, "position": s.position, "key": s.key})),
                "any_key": report.any_key,
                "head_checked": report.head_checked,
                "problems": problems,
                "more_problems": report.more_problems,
            })
        )?;
    } else {
        writeln!(
            out,
            "{} events in {} streams, {} seals{}",
            report.events,
            report.streams,
            report.seals,
            match &report.last_seal {
                Some(s) => format!("; the last covers {} events, {} came after it", s.size, report.unsealed),
                None => "; nothing is sealed (`es audit seal`)".to_owned(),
            }
        )?;
        if report.any_key {
            writeln!(
                out,
                "warning: no --key given: seals were checked against the keys they name, which proves they are intact, not who made them"
            )?;
        }
        if report.head_checked && report.is_clean() {
            writeln!(out, "the log extends the exported head")?;
        }
        for p in &problems {
            writeln!(out, "BROKEN: {p}")?;
        }
        if report.more_problems > 0 {
            writeln!(out, "... and {} more", report.more_problems)?;
        }
    }
    if !report.is_clean() {
        return Err(fail(format!(
            "the store does not verify: {} problems",
            report.problems.len() as u64 + report.more_problems
        )));
    }
    if !json_out {
        writeln!(out, "verified: every chain and seal holds")?;
    }
    Ok(())
}
