//! Stored files, on whichever backend the instance uses: the one place that
//! writes (sealing when `storage.encrypt_assets` is on), reads (finding,
//! reading and opening), and deletes them. Keys are the relative paths rows
//! keep (`assets/7/img_x.png`).

use std::time::Duration;

use crate::config::{Backend, Config};
use crate::error::{AppError, AppResult};

pub use super::blobs::Listed;
use super::blobs::{self, BlobError, Store};

fn app_error(key: &str, e: BlobError) -> AppError {
    match e {
        BlobError::NotFound => {
            tracing::error!(key, "stored file missing");
            AppError::NotFound
        }
        BlobError::Unavailable(m) => {
            tracing::error!(key, "storage unavailable: {m}");
            AppError::Unavailable(
                "The image storage is not answering right now. Please try again in a moment."
                    .into(),
            )
        }
    }
}

/// Writes `bytes` under `key`, sealed when encryption at rest is on.
pub fn put(config: &Config, key: &str, bytes: &[u8]) -> AppResult<()> {
    let sealed = super::vault::seal(config, bytes)?;
    blobs::of(config)
        .put(key, &sealed)
        .map_err(|e| app_error(key, e))
}

/// Moves a finished local file (already sealed if need be) into the store.
pub fn put_file(config: &Config, key: &str, path: &std::path::Path) -> AppResult<()> {
    blobs::of(config)
        .put_file(key, path)
        .map_err(|e| app_error(key, e))
}

/// The plain bytes stored under `key`: 404 when there is no such object.
pub fn read(config: &Config, key: &str) -> AppResult<Vec<u8>> {
    let stored = blobs::of(config).get(key).map_err(|e| app_error(key, e))?;
    super::vault::open(config, stored)
}

/// An object's length, and the chosen range's first and last byte and
/// bytes (None: the range cannot be satisfied).
pub type Ranged = (u64, Option<(u64, u64, Vec<u8>)>);

/// Part of the stored bytes under `key`, read as such (a range request to
/// the bucket, a seek on disk): the object's length, and bytes
/// `start..=end` when `pick` (given the length) chooses a range. Only for
/// unsealed objects: a sealed one's plain length is not its stored length.
pub fn read_range(
    config: &Config,
    key: &str,
    pick: impl FnOnce(u64) -> Option<(u64, u64)>,
) -> AppResult<Ranged> {
    let store = blobs::of(config);
    let len = store
        .size(key)
        .map_err(|e| app_error(key, e))?
        .ok_or_else(|| app_error(key, BlobError::NotFound))?;
    let Some((start, end)) = pick(len) else {
        return Ok((len, None));
    };
    let part = store
        .get_range(key, start, end)
        .map_err(|e| app_error(key, e))?;
    Ok((len, Some((start, end, part))))
}

/// Deletes the objects; the first failure is returned after trying all
/// (what is left is an orphan the retention sweep deletes later).
pub fn delete(config: &Config, keys: &[&str]) -> Result<(), String> {
    let store = blobs::of(config);
    let mut first = None;
    for key in keys {
        if let Err(e) = store.delete(key) {
            tracing::warn!(key, "could not delete a stored file: {e}");
            first.get_or_insert(format!("{key}: {e}"));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Every stored object under `prefix` (`assets/`, `exports/`).
pub fn list(config: &Config, prefix: &str) -> Result<Vec<Listed>, String> {
    blobs::of(config).list(prefix).map_err(|e| e.to_string())
}

/// Whether an object exists under `key` (None: the store did not answer).
pub fn exists(config: &Config, key: &str) -> Option<bool> {
    blobs::of(config).size(key).ok().map(|s| s.is_some())
}

/// Streams the stored bytes (exports; not sealed ones, which are read with
/// the vault's own reader).
pub fn reader(config: &Config, key: &str) -> AppResult<Box<dyn std::io::Read + Send>> {
    blobs::of(config).reader(key).map_err(|e| app_error(key, e))
}

/// A presigned address for `key` when the instance serves downloads that
/// way (`storage.s3.presign_downloads`), valid `api.signed_url_ttl_secs`.
pub fn presigned(config: &Config, key: &str) -> Option<String> {
    let s = &config.storage;
    if s.backend != Backend::S3 || !s.s3.presign_downloads {
        return None;
    }
    blobs::of(config).presign_get(
        key,
        Duration::from_secs(config.api.signed_url_ttl_secs as u64),
    )
}

/// Start-up: with `backend = "s3"`, writes, reads and deletes a probe
/// object; the message names the key to look at.
pub fn check_at_start(config: &Config) -> Result<(), String> {
    if config.storage.backend != Backend::S3 {
        return Ok(());
    }
    blobs::probe(blobs::of(config).as_ref()).map_err(|e| {
        // Name the key most likely wrong, from the S3 error code.
        let key = if e.contains("SignatureDoesNotMatch") {
            "storage.s3.secret_access_key"
        } else if e.contains("InvalidAccessKeyId") {
            "storage.s3.access_key_id"
        } else if e.contains("NoSuchBucket") {
            "storage.s3.bucket"
        } else {
            "storage.s3.endpoint"
        };
        format!("config error: {key}: the storage check failed: {e}")
    })
}

/// Where the bytes are, for `doctor` and `stats` (never a secret).
pub fn describe(config: &Config) -> String {
    blobs::of(config).describe()
}

/// The store of the other backend than the configured one, for
/// `novart storage migrate`.
pub(crate) fn store_for(config: &Config, backend: Backend) -> std::sync::Arc<dyn Store> {
    match backend {
        Backend::Local => blobs::local_of(config),
        Backend::S3 => blobs::s3_of(config),
    }
}
