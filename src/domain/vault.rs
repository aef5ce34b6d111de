//! Encryption at rest for stored images and uploads
//! (`storage.encrypt_assets`). A sealed file is `NVAE1`, a 24-byte random
//! nonce, then the XChaCha20-Poly1305 ciphertext and tag of the image. Files
//! written before encryption was switched on stay readable as they are; a
//! sealed file needs the key, and a wrong key is refused at start-up (a
//! check value in `meta`), never turned into garbage.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::Config;
use crate::error::{AppError, AppResult};

const MAGIC: &[u8] = b"NVAE1";
const NONCE: usize = 24;
const AAD: &[u8] = b"novart stored asset";

pub use crate::config::parse_asset_key as parse_key;

fn cipher(config: &Config) -> Option<XChaCha20Poly1305> {
    parse_key(&config.storage.encryption_key).map(|k| XChaCha20Poly1305::new(&k.into()))
}

pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// What to write to disk: sealed when encryption is on.
pub fn seal(config: &Config, plain: &[u8]) -> AppResult<Vec<u8>> {
    if !config.storage.encrypt_assets {
        return Ok(plain.to_vec());
    }
    let c =
        cipher(config).ok_or_else(|| AppError::internal("storage.encryption_key is not usable"))?;
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = c
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: AAD,
            },
        )
        .map_err(|_| AppError::internal("encrypting a stored file failed"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The image inside what was read from disk.
pub fn open(config: &Config, stored: Vec<u8>) -> AppResult<Vec<u8>> {
    if !is_sealed(&stored) {
        return Ok(stored);
    }
    let c = cipher(config).ok_or_else(|| {
        AppError::internal("a stored file is encrypted but storage.encryption_key is not set")
    })?;
    if stored.len() < MAGIC.len() + NONCE + 16 {
        return Err(AppError::internal("a stored encrypted file is truncated"));
    }
    let (nonce, body) = stored[MAGIC.len()..].split_at(NONCE);
    c.decrypt(
        XNonce::from_slice(nonce),
        Payload {
            msg: body,
            aad: AAD,
        },
    )
    .map_err(|_| AppError::internal("a stored file does not decrypt with storage.encryption_key"))
}

/// The value kept in `meta` to recognise the key at the next start.
fn key_check(key: &[u8; 32]) -> String {
    super::secrets::hmac_hex(key, "novart asset key check")
}

const CHECK: &str = "asset_key_check";

/// At start-up: a configured key must be the one the stored files were
/// sealed with, and sealed files need a key. Errors name the config key.
pub fn check_at_start(conn: &mut rusqlite::Connection, config: &Config) -> Result<(), String> {
    let stored = crate::db::meta::get(conn, CHECK).map_err(|e| e.to_string())?;
    let key = parse_key(&config.storage.encryption_key);
    match (stored, key) {
        (Some(check), Some(k)) if check != key_check(&k) => Err(
            "storage.encryption_key: this is not the key the stored images were encrypted with; \
             start with the original key (a lost key means the encrypted images cannot be read)"
                .into(),
        ),
        (Some(_), None) => Err(
            "storage.encryption_key: stored images are encrypted; set the key they were encrypted with \
             (storage.encrypt_assets may be false to stop encrypting new ones)"
                .into(),
        ),
        (None, Some(k)) if config.storage.encrypt_assets => {
            crate::db::meta::get_or_insert(conn, CHECK, &key_check(&k))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}
