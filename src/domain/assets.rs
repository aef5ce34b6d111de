//! Stored images: results from providers and their previews. Files live under
//! `<data_dir>/assets/<user>/`, named by the server (never by the upload),
//! written to a temporary name and renamed so a crash never leaves half a file
//! under a real name.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, ImageFormat};
use rusqlite::Connection;

use crate::config::Config;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, AssetKind, TaskId, UserId};

use super::secrets::random_token;

/// Longest side of a preview, in pixels.
pub const PREVIEW_SIZE: u32 = 384;

pub fn new_public_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_token(12))
}

/// Writes a stored file atomically (temporary file, then rename), sealed
/// when `storage.encrypt_assets` is on.
pub fn write_file(config: &Config, path: &Path, bytes: &[u8]) -> AppResult<()> {
    let sealed = super::vault::seal(config, bytes)?;
    let bytes = sealed.as_slice();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AppError::internal(format!("creating {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| AppError::internal(format!("writing {}: {e}", path.display())))
}

/// A decoded, checked image ready to store.
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
    pub preview: Vec<u8>,
}

/// Checks that provider output is a PNG or JPEG image and makes its preview.
/// The stored file is the provider's bytes when PNG or JPEG; anything else
/// (WebP, GIF...) is refused by the decoder features this build has.
pub fn prepare_result(bytes: &[u8]) -> Result<Prepared, String> {
    let format = image::guess_format(bytes).map_err(|_| "not an image".to_string())?;
    let (mime, ext) = match format {
        ImageFormat::Png => ("image/png", "png"),
        ImageFormat::Jpeg => ("image/jpeg", "jpg"),
        other => return Err(format!("unsupported image format {other:?}")),
    };
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| format!("cannot decode: {e}"))?;
    let preview = make_preview(&img)?;
    Ok(Prepared {
        bytes: bytes.to_vec(),
        mime,
        ext,
        width: img.width(),
        height: img.height(),
        preview,
    })
}

/// A JPEG no larger than PREVIEW_SIZE on its longer side.
pub fn make_preview(img: &image::DynamicImage) -> Result<Vec<u8>, String> {
    let small = if img.width().max(img.height()) > PREVIEW_SIZE {
        img.resize(PREVIEW_SIZE, PREVIEW_SIZE, FilterType::Triangle)
    } else {
        img.clone()
    };
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82);
    small
        .to_rgb8()
        .write_with_encoder(encoder)
        .map_err(|e| format!("preview: {e}"))?;
    Ok(out)
}

fn user_dir(config: &Config, user: UserId) -> PathBuf {
    config.assets_dir().join(user.0.to_string())
}

/// A result image written to disk but not yet recorded.
pub struct Written {
    pub public_id: String,
    pub path: String,
    pub preview_path: String,
}

/// A stored file's path relative to the data directory (as kept in rows).
pub fn rel(config: &Config, p: &Path) -> String {
    p.strip_prefix(&config.storage.data_dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Writes a result's file and preview (outside any transaction, so the
/// database's write lock is not held during file I/O).
pub fn write_result(config: &Config, user: UserId, p: &Prepared) -> AppResult<Written> {
    let public_id = new_public_id("img");
    let dir = user_dir(config, user);
    let path = dir.join(format!("{public_id}.{}", p.ext));
    let preview_path = dir.join(format!("{public_id}.preview.jpg"));
    write_file(config, &path, &p.bytes)?;
    if let Err(e) = write_file(config, &preview_path, &p.preview) {
        remove_files_at(config, &[rel(config, &path)]);
        return Err(e);
    }
    Ok(Written {
        public_id,
        path: rel(config, &path),
        preview_path: rel(config, &preview_path),
    })
}

/// Records a written result (inside the caller's transaction).
pub fn record_result(
    conn: &Connection,
    config: &Config,
    user: UserId,
    task: TaskId,
    p: &Prepared,
    w: &Written,
    now: i64,
) -> AppResult<()> {
    db::assets::insert(
        conn,
        &db::assets::NewAsset {
            public_id: &w.public_id,
            user_id: user,
            task_id: Some(task),
            kind: AssetKind::Result,
            path: &w.path,
            preview_path: Some(&w.preview_path),
            mime: p.mime,
            width: p.width,
            height: p.height,
            bytes: p.bytes.len() as i64,
            now,
            expires_at: now + config.storage.result_retention_hours as i64 * 3600,
        },
    )?;
    Ok(())
}

/// Removes written files that were never recorded (the task was canceled).
pub fn unwrite(config: &Config, written: &[Written]) {
    for w in written {
        remove_files_at(config, &[w.path.clone(), w.preview_path.clone()]);
    }
}

/// A stored file's contents (decrypted when sealed).
pub fn read_file(config: &Config, path: &Path) -> AppResult<Vec<u8>> {
    let stored = std::fs::read(path)
        .map_err(|e| AppError::internal(format!("reading {}: {e}", path.display())))?;
    super::vault::open(config, stored)
}

/// The absolute path of a stored file.
pub fn file_path(config: &Config, rel: &str) -> PathBuf {
    config.storage.data_dir.join(rel)
}

fn remove_files_at(config: &Config, rels: &[String]) {
    for rel in rels {
        let p = file_path(config, rel);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %p.display(), "could not delete: {e}");
            }
        }
    }
}

/// Removes an asset's files, then its row.
pub fn delete(conn: &Connection, config: &Config, asset: &Asset) -> AppResult<()> {
    let mut rels = vec![asset.path.clone()];
    rels.extend(asset.preview_path.clone());
    remove_files_at(config, &rels);
    db::assets::delete(conn, asset.id)?;
    Ok(())
}

/// One of the user's own stored images (anything else is "not found").
pub fn for_owner(conn: &Connection, user: UserId, public_id: &str) -> AppResult<Asset> {
    match db::assets::by_public_id(conn, public_id)? {
        Some(a) if a.user_id == user && a.expires_at > super::now() => Ok(a),
        _ => Err(AppError::NotFound),
    }
}

/// Records that the owner downloaded an image.
pub fn record_download(conn: &Connection, asset: &Asset) -> AppResult<()> {
    db::assets::count_download(conn, asset.id)
}

/// Deletes one of the user's images (file, preview and row).
pub fn delete_own(
    conn: &Connection,
    config: &Config,
    user: UserId,
    public_id: &str,
) -> AppResult<()> {
    let asset = for_owner(conn, user, public_id)?;
    delete(conn, config, &asset)
}
