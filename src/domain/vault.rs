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
pub fn check_at_start(conn: &mut crate::domain::Connection, config: &Config) -> Result<(), String> {
    let stored = crate::domain::db::meta::get(conn, CHECK).map_err(|e| e.to_string())?;
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
            crate::domain::db::meta::get_or_insert(conn, CHECK, &key_check(&k))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

// ---- large files (data exports): sealed in chunks, read as a stream ----
//
// `NVAE2`, then chunks of at most CHUNK plain bytes, each: its sealed length
// (u32, big-endian), a 24-byte nonce, the ciphertext and tag. The AAD binds
// each chunk to its position and says whether it is the last, so chunks
// cannot be reordered, and a truncated file is an error, not a shorter ZIP.

const MAGIC_STREAM: &[u8] = b"NVAE2";
const CHUNK: usize = 1 << 20;

fn chunk_aad(index: u64, last: bool) -> Vec<u8> {
    let mut aad = b"novart sealed stream".to_vec();
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(last as u8);
    aad
}

/// Moves the local file `src` into storage under `key`, sealing it chunk by
/// chunk when encryption is on (memory stays at one chunk whatever the
/// size).
pub fn store_large(config: &Config, src: &std::path::Path, key: &str) -> AppResult<()> {
    use std::io::{Read, Write};
    let e = |what: &str| {
        let what = what.to_string();
        move |err: std::io::Error| AppError::internal(format!("{what}: {err}"))
    };
    if !config.storage.encrypt_assets {
        return super::stored::put_file(config, key, src);
    }
    let c =
        cipher(config).ok_or_else(|| AppError::internal("storage.encryption_key is not usable"))?;
    let mut input = std::fs::File::open(src).map_err(e("reading a file to seal"))?;
    let tmp = src.with_extension("sealing");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(e("sealing a file"))?);
    out.write_all(MAGIC_STREAM).map_err(e("sealing a file"))?;
    let total = input.metadata().map_err(e("reading a file to seal"))?.len();
    let chunks = total.div_ceil(CHUNK as u64).max(1);
    let mut buf = vec![0u8; CHUNK];
    for index in 0..chunks {
        let want = (total - index * CHUNK as u64).min(CHUNK as u64) as usize;
        input
            .read_exact(&mut buf[..want])
            .map_err(e("reading a file to seal"))?;
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = chunk_aad(index, index + 1 == chunks);
        let sealed = c
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &buf[..want],
                    aad: &aad,
                },
            )
            .map_err(|_| AppError::internal("sealing a file failed"))?;
        out.write_all(&(sealed.len() as u32).to_be_bytes())
            .map_err(e("sealing a file"))?;
        out.write_all(&nonce).map_err(e("sealing a file"))?;
        out.write_all(&sealed).map_err(e("sealing a file"))?;
    }
    out.flush().map_err(e("sealing a file"))?;
    drop(out);
    let _ = std::fs::remove_file(src);
    super::stored::put_file(config, key, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Reads a file stored by `store_large`, decrypting chunk by chunk.
pub struct LargeReader {
    file: std::io::BufReader<Box<dyn std::io::Read + Send>>,
    cipher: Option<XChaCha20Poly1305>,
    index: u64,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
}

/// Opens what `store_large` stored under `key`.
pub fn open_large(config: &Config, key: &str) -> AppResult<LargeReader> {
    use std::io::Read;
    let mut file = std::io::BufReader::new(super::stored::reader(config, key)?);
    let mut head = [0u8; 5];
    let n = file.read(&mut head).map_err(AppError::internal)?;
    let sealed = n == 5 && head == *MAGIC_STREAM;
    let mut reader = LargeReader {
        file,
        cipher: None,
        index: 0,
        plain: Vec::new(),
        pos: 0,
        done: false,
    };
    if sealed {
        reader.cipher = Some(cipher(config).ok_or_else(|| {
            AppError::internal("a stored file is encrypted but storage.encryption_key is not set")
        })?);
    } else {
        reader.plain = head[..n].to_vec();
    }
    Ok(reader)
}

impl LargeReader {
    fn next_chunk(&mut self) -> std::io::Result<bool> {
        use std::io::{Error, ErrorKind, Read};
        let bad = |m: &str| Error::new(ErrorKind::InvalidData, m.to_string());
        let Some(c) = &self.cipher else {
            let mut buf = vec![0u8; 64 * 1024];
            let n = self.file.read(&mut buf)?;
            buf.truncate(n);
            self.plain = buf;
            self.pos = 0;
            return Ok(n > 0);
        };
        if self.done {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        if let Err(e) = self.file.read_exact(&mut len) {
            return Err(if e.kind() == ErrorKind::UnexpectedEof {
                bad("the sealed file is truncated")
            } else {
                e
            });
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > CHUNK + 16 {
            return Err(bad("the sealed file is damaged"));
        }
        let mut nonce = [0u8; NONCE];
        self.file.read_exact(&mut nonce)?;
        let mut sealed = vec![0u8; len];
        self.file.read_exact(&mut sealed)?;
        // The last chunk says so; anything else must be followed by more.
        let mut plain = None;
        for last in [false, true] {
            let aad = chunk_aad(self.index, last);
            if let Ok(p) = c.decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            ) {
                plain = Some(p);
                self.done = last;
                break;
            }
        }
        self.plain = plain
            .ok_or_else(|| bad("the sealed file does not decrypt with storage.encryption_key"))?;
        self.pos = 0;
        self.index += 1;
        Ok(true)
    }
}

impl std::io::Read for LargeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.plain.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
