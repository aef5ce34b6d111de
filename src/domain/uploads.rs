//! Reference images uploaded by creators. Nothing of the upload is trusted:
//! the size is checked first, the pixel area is read from the header before
//! anything is decoded, the image is decoded with allocation limits and
//! re-encoded as a fresh PNG (dropping EXIF/GPS and anything appended to the
//! file), and it is stored under a name the server chooses.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use rusqlite::Connection;

use crate::config::Config;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, AssetKind, UserId};

use super::assets::{make_preview, new_public_id, write_file};

pub const MAX_REFERENCES: usize = 4;

/// Checks, cleans and stores one reference image.
pub fn ingest_reference(
    conn: &Connection,
    config: &Config,
    user: UserId,
    bytes: &[u8],
) -> AppResult<Asset> {
    super::bans::ensure(conn, user, super::bans::Action::Upload)?;
    let max = config.storage.max_upload_bytes;
    if bytes.len() as u64 > max {
        return Err(AppError::TooLarge(format!(
            "The image is larger than {} MB.",
            (max as f64 / 1_048_576.0 * 10.0).round() / 10.0
        )));
    }
    let not_image = || {
        AppError::invalid(
            "reference_images",
            "Reference images must be PNG, JPEG or WebP pictures.",
        )
    };
    let format = image::guess_format(bytes).map_err(|_| not_image())?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP
    ) {
        return Err(not_image());
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (w, h) = reader().into_dimensions().map_err(|_| {
        AppError::invalid(
            "reference_images",
            "The image could not be read: the file is damaged or incomplete.",
        )
    })?;
    let area = w as u64 * h as u64;
    if area > config.storage.max_upload_pixels || w == 0 || h == 0 {
        return Err(AppError::TooLarge(format!(
            "The image is {w}×{h} pixels; at most {} megapixels are accepted.",
            config.storage.max_upload_pixels / 1_000_000
        )));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(area.saturating_mul(8).max(1 << 20));
    let mut r = reader();
    r.limits(limits);
    let img = r.decode().map_err(|_| {
        AppError::invalid(
            "reference_images",
            "The image could not be read: the file is damaged or incomplete.",
        )
    })?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(AppError::internal)?;
    let preview = make_preview(&img).map_err(AppError::internal)?;

    let public_id = new_public_id("ref");
    let dir = config.assets_dir().join(user.0.to_string());
    let path = dir.join(format!("{public_id}.png"));
    let preview_path = dir.join(format!("{public_id}.preview.jpg"));
    write_file(config, &path, &png)?;
    write_file(config, &preview_path, &preview)?;
    let now = super::now();
    db::assets::insert(
        conn,
        &db::assets::NewAsset {
            public_id: &public_id,
            user_id: user,
            task_id: None,
            kind: AssetKind::Reference,
            path: &super::assets::rel(config, &path),
            preview_path: Some(&super::assets::rel(config, &preview_path)),
            mime: "image/png",
            width: img.width(),
            height: img.height(),
            bytes: png.len() as i64,
            now,
            expires_at: now + config.storage.reference_retention_hours as i64 * 3600,
        },
    )?;
    db::assets::by_public_id(conn, &public_id)?.ok_or(AppError::NotFound)
}

/// A reference image of this user that is still kept.
pub fn own_reference(conn: &Connection, user: UserId, public_id: &str) -> AppResult<Asset> {
    match db::assets::by_public_id(conn, public_id)? {
        Some(a)
            if a.user_id == user
                && a.kind == AssetKind::Reference
                && a.expires_at > super::now() =>
        {
            Ok(a)
        }
        _ => Err(AppError::invalid(
            "reference_images",
            format!(
                "No uploaded reference image {public_id:?} (uploads are kept for a limited time)."
            ),
        )),
    }
}
