//! Stored bytes by key: result images, previews, uploaded references and
//! prepared exports. Keys are relative paths (`assets/7/img_x.png`); rows
//! keep keys, never file paths. Two stores: a local directory (the default)
//! and an S3-compatible bucket. Sealing (`storage.encrypt_assets`) is done
//! by the caller around either one.

mod local;
mod s3;

use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::{Backend, Config};

pub use local::LocalStore;
pub use s3::S3Store;

/// What can go wrong with stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// No object under this key.
    NotFound,
    /// The store did not do it (down, slow, refused, full): try later.
    Unavailable(String),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::NotFound => write!(f, "no such object"),
            BlobError::Unavailable(e) => write!(f, "{e}"),
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Last written (unix seconds), when the store says.
    pub modified: Option<i64>,
}

/// A store of bytes by key.
pub trait Store: Send + Sync {
    /// Writes the whole object; a reader never sees half of it.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    /// Moves a finished local file into the store under `key` (large files
    /// built on disk first: data exports). The file is gone afterwards.
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), BlobError>;
    /// Reads the whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    /// Reads bytes `start..=end` (clamped to the object's end).
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, BlobError>;
    /// Streams the object.
    fn reader(&self, key: &str) -> Result<Box<dyn Read + Send>, BlobError>;
    /// Removes the object; one already gone is not an error.
    fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BlobError>;
    /// The object's size, None if there is none.
    fn size(&self, key: &str) -> Result<Option<u64>, BlobError>;
    /// A URL that reads the object without credentials until `ttl` passes,
    /// where the store can make one.
    fn presign_get(&self, key: &str, ttl: Duration) -> Option<String>;
    /// Where the bytes are, for messages (never a secret).
    fn describe(&self) -> String;
}

/// Keys are made by the server, but a key that could leave the store's
/// root is refused all the same.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(BlobError::Unavailable(format!("refused key {key:?}")));
    }
    Ok(())
}

/// The store `config` names. The local store is only a path; S3 stores are
/// kept per bucket and prefix, so connections are reused across calls.
pub fn of(config: &Config) -> Arc<dyn Store> {
    match config.storage.backend {
        Backend::Local => Arc::new(LocalStore::new(config.storage.data_dir.clone())),
        Backend::S3 => s3_of(config),
    }
}

/// The S3 store of `config`'s `[storage.s3]`, whatever the backend says
/// (the migration reads one backend and writes the other).
pub fn s3_of(config: &Config) -> Arc<dyn Store> {
    type Kept = Mutex<Vec<(crate::config::S3Config, Arc<S3Store>)>>;
    static STORES: OnceLock<Kept> = OnceLock::new();
    let s3 = &config.storage.s3;
    let mut all = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = all.iter().find(|(c, _)| c == s3) {
        return s.clone();
    }
    let store = Arc::new(S3Store::new(s3));
    all.push((s3.clone(), store.clone()));
    store
}

/// The local store of `config`'s data directory, whatever the backend says.
pub fn local_of(config: &Config) -> Arc<dyn Store> {
    Arc::new(LocalStore::new(config.storage.data_dir.clone()))
}

/// Writes, reads back, lists and deletes a probe object: start-up refuses a
/// store that cannot do all four, naming what failed.
pub fn probe(store: &dyn Store) -> Result<(), String> {
    let key = format!(
        ".novart-probe/{}-{}",
        std::process::id(),
        crate::domain::now()
    );
    let body = b"novart storage probe";
    store
        .put(&key, body)
        .map_err(|e| format!("cannot write to {}: {e}", store.describe()))?;
    match store.get(&key) {
        Ok(b) if b == body => {}
        Ok(_) => {
            return Err(format!(
                "{} returned other bytes than written",
                store.describe()
            ))
        }
        Err(e) => return Err(format!("cannot read from {}: {e}", store.describe())),
    }
    store
        .delete(&key)
        .map_err(|e| format!("cannot delete in {}: {e}", store.describe()))?;
    Ok(())
}
