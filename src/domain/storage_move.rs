//! `novart storage migrate --to s3|local`: copies every stored file the
//! database names to the other backend, verifies each copy (size and
//! SHA-256), then records the new backend. Run again after an interruption
//! it copies only what is missing or different; after a success it changes
//! nothing. The files on the old backend are left in place for the
//! operator to remove once the instance runs on the new one.

use crate::domain::Connection;
use sha2::{Digest, Sha256};

use crate::config::{Backend, Config};
use crate::domain::db;
use crate::error::{AppError, AppResult};

use super::blobs::{self, BlobError, Store};

/// The meta key that records where this instance's files are.
const RECORDED: &str = "storage_backend";

fn name(b: Backend) -> &'static str {
    match b {
        Backend::Local => "local",
        Backend::S3 => "s3",
    }
}

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    /// Files written to the new backend and verified.
    pub copied: u64,
    /// Files already there with the same size and SHA-256 (an earlier,
    /// interrupted run copied them).
    pub already_there: u64,
    /// Files the database names that the old backend does not have
    /// (`doctor` lists their rows).
    pub missing: Vec<String>,
    pub bytes: u64,
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Where the instance's files are: the backend recorded by the last
/// migration or first start, else the configured one.
pub fn recorded(conn: &Connection, config: &Config) -> AppResult<Backend> {
    Ok(match db::meta::get(conn, RECORDED)?.as_deref() {
        Some("s3") => Backend::S3,
        Some("local") => Backend::Local,
        _ => config.storage.backend,
    })
}

/// Records that the instance's files are on `b` (after a restore put them
/// there).
pub(super) fn record(conn: &Connection, b: Backend) -> AppResult<()> {
    db::meta::set(conn, RECORDED, name(b))
}

/// Start-up: refuses a backend other than the one holding the files (a
/// server pointed at an empty bucket would show every image as gone). An
/// instance with no stored files may switch freely.
pub fn check_at_start(conn: &Connection, config: &Config) -> Result<(), String> {
    let e = |x: AppError| x.to_string();
    let configured = config.storage.backend;
    let holding = recorded(conn, config).map_err(e)?;
    if holding != configured && !db::assets::stored_keys(conn).map_err(e)?.is_empty() {
        return Err(format!(
            "config error: storage.backend: is \"{}\" but this instance's files are on \"{}\"; move them with `novart storage migrate --to {}` (with the server stopped), or set storage.backend = \"{}\"",
            name(configured),
            name(holding),
            name(configured),
            name(holding)
        ));
    }
    record(conn, configured).map_err(e)
}

/// Copies every file to `to`, verifying each, then records `to` as the
/// backend. `progress` hears each key as it is done. Refuses to start if
/// the files are already on `to` and the database says so.
pub fn migrate(
    conn: &Connection,
    config: &Config,
    to: Backend,
    mut progress: impl FnMut(&str, u64, u64),
) -> AppResult<Moved> {
    let from = recorded(conn, config)?;
    if from == to {
        return Err(AppError::invalid(
            "--to",
            format!(
                "The files are already on \"{}\"; nothing to migrate.",
                name(to)
            ),
        ));
    }
    let (source, target) = (store(config, from)?, store(config, to)?);
    blobs::probe(target.as_ref()).map_err(AppError::Unavailable)?;
    let keys = db::assets::stored_keys(conn)?;
    let there: std::collections::HashMap<String, u64> = target
        .list("")
        .map_err(|e| AppError::Unavailable(format!("listing {}: {e}", target.describe())))?
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    let mut out = Moved::default();
    let total = keys.len() as u64;
    for (i, (key, _, _)) in keys.iter().enumerate() {
        let fail = |what: &str, e: BlobError| {
            AppError::Unavailable(format!(
                "{what} {key}: {e} (run the command again to go on)"
            ))
        };
        let bytes = match source.get(key) {
            Ok(b) => b,
            Err(BlobError::NotFound) => {
                out.missing.push(key.clone());
                continue;
            }
            Err(e) => return Err(fail("reading", e)),
        };
        let want = digest(&bytes);
        let same = there.get(key) == Some(&(bytes.len() as u64))
            && target.get(key).is_ok_and(|b| digest(&b) == want);
        if same {
            out.already_there += 1;
        } else {
            target.put(key, &bytes).map_err(|e| fail("writing", e))?;
            let back = target.get(key).map_err(|e| fail("verifying", e))?;
            if back.len() != bytes.len() || digest(&back) != want {
                return Err(AppError::Unavailable(format!(
                    "{key}: the copy on {} does not match (size or SHA-256); run the command again",
                    target.describe()
                )));
            }
            out.copied += 1;
        }
        out.bytes += bytes.len() as u64;
        progress(key, i as u64 + 1, total);
    }
    record(conn, to)?;
    Ok(out)
}

fn store(config: &Config, b: Backend) -> AppResult<std::sync::Arc<dyn Store>> {
    if b == Backend::S3 {
        let mut c = config.clone();
        c.storage.backend = Backend::S3;
        c.validate()
            .map_err(|e| AppError::invalid("storage.s3", e.to_string()))?;
    }
    Ok(super::stored::store_for(config, b))
}
