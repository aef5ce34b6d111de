//! Stored images: results from providers and their previews. Files live under
//! `<data_dir>/assets/<user>/`, named by the server (never by the upload),
//! written to a temporary name and renamed so a crash never leaves half a file
//! under a real name.

use crate::domain::Connection;
use image::{ImageFormat, RgbImage};

use crate::config::Config;
use crate::domain::db;
pub use crate::domain::db::assets::{LibraryFilter, LibraryItem};
use crate::error::{AppError, AppResult};
use crate::model::{Asset, AssetKind, TaskId, UserId};

use super::secrets::random_token;

/// Longest side of a preview, in pixels.
pub const PREVIEW_SIZE: u32 = 384;

pub fn new_public_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_token(12))
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

/// A JPEG no larger than PREVIEW_SIZE on its longer side (see `shrink`).
pub fn make_preview(img: &image::DynamicImage) -> Result<Vec<u8>, String> {
    let converted;
    let rgb = match img.as_rgb8() {
        Some(rgb) => rgb,
        None => {
            converted = img.to_rgb8();
            &converted
        }
    };
    let small;
    let preview = if rgb.width().max(rgb.height()) > PREVIEW_SIZE {
        small = shrink(rgb, PREVIEW_SIZE);
        &small
    } else {
        rgb
    };
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82);
    preview
        .write_with_encoder(encoder)
        .map_err(|e| format!("preview: {e}"))?;
    Ok(out)
}

/// `img` scaled down to fit `max`×`max` (aspect kept, as `image`'s resize
/// rounds it), each new pixel the average of the source pixels it covers,
/// in integer sums. For a 1024² result this is a few milliseconds where
/// `image`'s triangle filter took 14 ms and its `thumbnail` 11 ms: most of
/// the CPU a result costs the queue.
fn shrink(img: &RgbImage, max: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let ratio = f64::from(max) / f64::from(w.max(h));
    let fit = |n: u32| ((f64::from(n) * ratio).round() as u32).clamp(1, n);
    let (ow, oh) = (fit(w), fit(h));
    // The source pixels [start, end) behind each new column or row: never
    // empty, as the image only shrinks.
    let spans = |n: u32, new: u32| -> Vec<(usize, usize)> {
        let at = |i: u32| (u64::from(i) * u64::from(n) / u64::from(new)) as usize;
        (0..new).map(|i| (at(i), at(i + 1))).collect()
    };
    let (cols, rows) = (spans(w, ow), spans(h, oh));
    let (src, stride) = (img.as_raw(), w as usize * 3);
    let mut out = RgbImage::new(ow, oh);
    let mut sums = vec![0u32; ow as usize * 3];
    for (oy, &(y0, y1)) in rows.iter().enumerate() {
        sums.fill(0);
        for row in src[y0 * stride..y1 * stride].chunks_exact(stride) {
            for (sum, &(x0, x1)) in sums.chunks_exact_mut(3).zip(&cols) {
                for px in row[x0 * 3..x1 * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
        }
        for (ox, (sum, &(x0, x1))) in sums.chunks_exact(3).zip(&cols).enumerate() {
            let n = ((x1 - x0) * (y1 - y0)) as u32;
            let avg = |s: u32| ((s + n / 2) / n) as u8;
            out.put_pixel(
                ox as u32,
                oy as u32,
                image::Rgb([avg(sum[0]), avg(sum[1]), avg(sum[2])]),
            );
        }
    }
    out
}

/// The key of a creator's stored file `name`.
fn user_key(user: UserId, name: &str) -> String {
    format!("assets/{}/{name}", user.0)
}

/// A result image written to disk but not yet recorded.
#[derive(Debug, Clone)]
pub struct Written {
    pub public_id: String,
    pub path: String,
    pub preview_path: String,
}

/// Writes a result's file and preview (outside any transaction, so the
/// database's write lock is not held during file I/O).
pub fn write_result(config: &Config, user: UserId, p: &Prepared) -> AppResult<Written> {
    write_image(config, user, "img", p)
}

/// Writes an image and its preview under a new public id with `prefix`
/// (`img` results, `ref` uploads).
pub fn write_image(
    config: &Config,
    user: UserId,
    prefix: &str,
    p: &Prepared,
) -> AppResult<Written> {
    let public_id = new_public_id(prefix);
    let path = user_key(user, &format!("{public_id}.{}", p.ext));
    let preview_path = user_key(user, &format!("{public_id}.preview.jpg"));
    super::stored::put(config, &path, &p.bytes)?;
    if let Err(e) = super::stored::put(config, &preview_path, &p.preview) {
        let _ = super::stored::delete(config, &[&path]);
        return Err(e);
    }
    Ok(Written {
        public_id,
        path,
        preview_path,
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
    let expires_at = now + config.storage.result_retention_hours as i64 * 3600;
    record(
        conn,
        user,
        Some(task),
        AssetKind::Result,
        p,
        w,
        (now, expires_at),
    )?;
    Ok(())
}

/// The row of a written image (a result of `task`, or an upload), kept from
/// `now` until `expires_at`.
pub fn record(
    conn: &Connection,
    user: UserId,
    task: Option<TaskId>,
    kind: AssetKind,
    p: &Prepared,
    w: &Written,
    (now, expires_at): (i64, i64),
) -> AppResult<crate::model::AssetId> {
    db::assets::insert(
        conn,
        &db::assets::NewAsset {
            public_id: &w.public_id,
            user_id: user,
            task_id: task,
            kind,
            path: &w.path,
            preview_path: Some(&w.preview_path),
            mime: p.mime,
            width: p.width,
            height: p.height,
            bytes: p.bytes.len() as i64,
            now,
            expires_at,
        },
    )
}

/// Removes written files that were never recorded (the task was canceled).
pub fn unwrite(config: &Config, written: &[Written]) {
    for w in written {
        let _ = super::stored::delete(config, &[&w.path, &w.preview_path]);
    }
}

/// Removes an asset's files, then its row. A file the store fails to
/// delete is left as an orphan: the retention sweep deletes it later and
/// `doctor` reports it meanwhile.
pub fn delete(conn: &Connection, config: &Config, asset: &Asset) -> AppResult<()> {
    delete_files(config, asset);
    db::assets::delete(conn, asset.id)?;
    Ok(())
}

/// Removes an asset's image and preview from the store, leaving its row
/// (the caller deletes it next). A failed delete leaves an orphan for the
/// sweep.
pub fn delete_files(config: &Config, asset: &Asset) {
    let mut keys = vec![asset.path.as_str()];
    keys.extend(asset.preview_path.as_deref());
    let _ = super::stored::delete(config, &keys);
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

/// The image `public_id` if this viewer may see it: its owner, anyone with
/// a valid signed link (`by_link`, checked by the caller), or anyone when
/// it is in the public gallery or shared by `share`. Expired images are
/// gone. A stranger without a session is asked to sign in; one with a
/// session is told it does not exist (its existence is not confirmed).
pub fn viewable(
    conn: &Connection,
    public_id: &str,
    viewer: Option<UserId>,
    by_link: bool,
    share: Option<&str>,
) -> AppResult<Asset> {
    let a = db::assets::by_public_id(conn, public_id)?
        .filter(|a| a.expires_at > super::now())
        .ok_or(AppError::NotFound)?;
    if by_link || viewer == Some(a.user_id) || super::gallery::visible_to_public(&a, share) {
        return Ok(a);
    }
    Err(if viewer.is_none() {
        AppError::Unauthenticated
    } else {
        AppError::NotFound
    })
}

/// A library page's images, and (count of all matching, soonest expiry).
pub type LibraryPage = (Vec<LibraryItem>, (i64, Option<i64>));

/// One page of a creator's library (newest first, older than `before`),
/// with the count of all matching images and the soonest expiry among them.
pub fn library(
    conn: &Connection,
    user: UserId,
    filter: &LibraryFilter,
    before: Option<crate::model::AssetId>,
    limit: u32,
) -> AppResult<LibraryPage> {
    Ok((
        db::assets::results_for_user(conn, user, filter, before, limit)?,
        db::assets::results_summary(conn, user, filter)?,
    ))
}

/// The object key of an image or its preview (the full image when it has
/// none).
fn stored_key(asset: &Asset, preview: bool) -> &str {
    match (&asset.preview_path, preview) {
        (Some(p), true) => p,
        _ => &asset.path,
    }
}

/// A stored image's plain bytes: the full image, or its preview (the full
/// image when it has none). Reads from the store, so call it without a
/// database connection held.
pub fn read_image(config: &Config, asset: &Asset, preview: bool) -> AppResult<Vec<u8>> {
    let key = stored_key(asset, preview);
    super::stored::read(config, key)
}

/// Where a client may fetch the image directly from the bucket, when the
/// instance serves downloads by presigned redirects.
pub fn presigned(config: &Config, asset: &Asset, preview: bool) -> Option<String> {
    let key = stored_key(asset, preview);
    super::stored::presigned(config, key)
}

/// A byte range of a stored image read without the rest (see
/// `stored::read_range`); None when images are sealed at rest, where the
/// caller reads the whole image instead.
pub fn read_image_range(
    config: &Config,
    asset: &Asset,
    preview: bool,
    pick: impl FnOnce(u64) -> Option<(u64, u64)>,
) -> AppResult<Option<super::stored::Ranged>> {
    if config.storage.encrypt_assets {
        return Ok(None);
    }
    let key = stored_key(asset, preview);
    super::stored::read_range(config, key, pick).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_averages_what_each_pixel_covers_and_keeps_the_aspect() {
        // Black and white columns, two pixels each way into one: mid-grey.
        let stripes = RgbImage::from_fn(1024, 576, |x, _| {
            image::Rgb(if x % 2 == 0 {
                [0, 0, 0]
            } else {
                [255, 255, 255]
            })
        });
        let small = shrink(&stripes, 512);
        assert_eq!(small.dimensions(), (512, 288));
        assert!(small.pixels().all(|p| p.0 == [128, 128, 128]));
        // The same sizes as `image`'s resize, at odd ratios too.
        let odd = RgbImage::new(1000, 333);
        let theirs = image::DynamicImage::ImageRgb8(odd.clone()).resize(
            384,
            384,
            image::imageops::FilterType::Nearest,
        );
        assert_eq!(
            shrink(&odd, 384).dimensions(),
            (theirs.width(), theirs.height())
        );
        // A colour stays that colour; a sliver keeps one pixel.
        let red = RgbImage::from_pixel(1024, 1024, image::Rgb([200, 10, 30]));
        assert!(shrink(&red, 384).pixels().all(|p| p.0 == [200, 10, 30]));
        assert_eq!(shrink(&RgbImage::new(5000, 1), 384).dimensions(), (384, 1));
    }

    #[test]
    fn a_preview_is_a_jpeg_within_the_preview_size() {
        let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::new(1536, 1024));
        let jpeg = make_preview(&rgba).unwrap();
        let back = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (PREVIEW_SIZE, 256));
        let tiny = image::DynamicImage::ImageRgb8(RgbImage::new(100, 60));
        let back = image::load_from_memory(&make_preview(&tiny).unwrap()).unwrap();
        assert_eq!((back.width(), back.height()), (100, 60));
    }
}
