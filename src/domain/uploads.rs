//! Reference images uploaded by creators. Nothing of the upload is trusted,
//! and the work is done in the order of its cost:
//!
//! 1. `inspect` (cheap, no decoding): the size, the format from the magic
//!    bytes, and the pixel area read from the header;
//! 2. `clean` (costly, never inside a database connection, at most
//!    `storage.max_parallel_decodes` at once through a `DecodeGate`): the
//!    image is decoded with allocation limits and re-encoded as a fresh PNG,
//!    dropping EXIF/GPS and anything appended to the file, and its preview
//!    is made;
//! 3. `write` then `record`: the files under names the server chooses, then
//!    the row, in the caller's transaction (`unwrite` takes the files back
//!    when that transaction fails).

use std::io::Cursor;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::domain::Connection;
use image::{ImageFormat, ImageReader, Limits};

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, AssetId, AssetKind, UserId};

use super::assets::{make_preview, Prepared, Written};

pub const MAX_REFERENCES: usize = 4;

/// The largest JSON body a valid task request can be: every reference and
/// the mask at `storage.max_upload_bytes`, base64-encoded (with a `data:`
/// prefix and the JSON around each), plus the prompts and the other fields
/// (64 KiB: the longest prompts, every character escaped as `\uXXXX`).
pub fn max_task_body_bytes(config: &Config) -> u64 {
    let image = config.storage.max_upload_bytes.div_ceil(3) * 4 + 128;
    image * (MAX_REFERENCES as u64 + 1) + 64 * 1024
}

/// What the header of an upload says, read without decoding it.
#[derive(Debug, Clone, Copy)]
pub struct Inspected {
    format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// The cheap checks of one upload: its size, its format and its pixel area
/// (from the header). `field` names the parameter in the errors.
pub fn inspect(config: &Config, field: &'static str, bytes: &[u8]) -> AppResult<Inspected> {
    let max = config.storage.max_upload_bytes;
    if bytes.len() as u64 > max {
        return Err(AppError::TooLarge(format!(
            "The image is larger than {} MB.",
            (max as f64 / 1_048_576.0 * 10.0).round() / 10.0
        )));
    }
    let not_image = || {
        AppError::invalid(
            field,
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
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| damaged(field))?;
    let area = width as u64 * height as u64;
    if area > config.storage.max_upload_pixels || width == 0 || height == 0 {
        return Err(AppError::TooLarge(format!(
            "The image is {width}×{height} pixels; at most {} megapixels are accepted.",
            config.storage.max_upload_pixels / 1_000_000
        )));
    }
    Ok(Inspected {
        format,
        width,
        height,
    })
}

fn damaged(field: &'static str) -> AppError {
    AppError::invalid(
        field,
        "The image could not be read: the file is damaged or incomplete.",
    )
}

/// Decodes an inspected upload within its declared size and re-encodes it
/// as a fresh PNG with a preview. CPU-heavy: call it outside any database
/// connection, holding a `DecodeGate` permit.
pub fn clean(field: &'static str, bytes: &[u8], ins: &Inspected) -> AppResult<Prepared> {
    let area = ins.width as u64 * ins.height as u64;
    let mut limits = Limits::default();
    limits.max_image_width = Some(ins.width);
    limits.max_image_height = Some(ins.height);
    limits.max_alloc = Some(area.saturating_mul(8).max(1 << 20));
    let mut r = ImageReader::with_format(Cursor::new(bytes), ins.format);
    r.limits(limits);
    let img = r.decode().map_err(|_| damaged(field))?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(AppError::internal)?;
    let preview = make_preview(&img).map_err(AppError::internal)?;
    Ok(Prepared {
        bytes: png,
        mime: "image/png",
        ext: "png",
        width: img.width(),
        height: img.height(),
        preview,
    })
}

/// Writes a cleaned upload's files (no database involved).
pub fn write(config: &Config, user: UserId, p: &Prepared) -> AppResult<Written> {
    super::assets::write_image(config, user, "ref", p)
}

/// Records written upload files as the user's reference image (in the
/// caller's transaction), kept for `retention_hours`.
pub fn record(
    conn: &Connection,
    user: UserId,
    p: &Prepared,
    w: &Written,
    now: i64,
    retention_hours: u32,
) -> AppResult<AssetId> {
    let expires_at = now + retention_hours as i64 * 3600;
    super::assets::record(
        conn,
        user,
        None,
        AssetKind::Reference,
        p,
        w,
        (now, expires_at),
    )
}

/// Refuses when the account may not upload (a restriction in force).
pub fn may_upload(conn: &Connection, user: UserId) -> AppResult<()> {
    super::bans::ensure(conn, user, super::bans::Action::Upload)
}

/// Writes a cleaned stand-alone upload and records it; the files are taken
/// back when the row cannot be written (a restriction imposed meanwhile).
pub fn store(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    p: &Prepared,
) -> AppResult<Asset> {
    let w = write(config, user, p)?;
    let now = super::now();
    let stored = db::write(conn, |tx| {
        super::bans::ensure(tx, user, super::bans::Action::Upload)?;
        record(
            tx,
            user,
            p,
            &w,
            now,
            config.storage.reference_retention_hours,
        )
    });
    match stored {
        Ok(_) => db::assets::by_public_id(conn, &w.public_id)?.ok_or(AppError::NotFound),
        Err(e) => {
            super::assets::unwrite(config, std::slice::from_ref(&w));
            Err(e)
        }
    }
}

/// Checks, cleans and stores one reference image in one go, holding `conn`
/// throughout (the CLI and tests; request handlers use `may_upload` and `inspect`, `clean`
/// outside the connection, then `store`).
pub fn ingest_reference(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    bytes: &[u8],
) -> AppResult<Asset> {
    may_upload(conn, user)?;
    let ins = inspect(config, "reference_images", bytes)?;
    let p = clean("reference_images", bytes, &ins)?;
    store(conn, config, user, &p)
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

/// Bounds how many uploads decode at once (`storage.max_parallel_decodes`),
/// so that a burst of large images cannot take every core or gigabytes of
/// memory: each decode holds a permit. A caller that cannot get one within
/// the gate's wait is told to come back (503 with Retry-After).
pub struct DecodeGate {
    limit: usize,
    wait: Duration,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One decode's place in the gate, given back when dropped.
pub struct DecodePermit<'a>(&'a DecodeGate);

impl DecodeGate {
    pub fn new(limit: usize, wait: Duration) -> DecodeGate {
        DecodeGate {
            limit: limit.max(1),
            wait,
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    pub fn from_config(config: &Config) -> DecodeGate {
        DecodeGate::new(
            config.storage.max_parallel_decodes as usize,
            Duration::from_millis(config.storage.decode_wait_ms),
        )
    }

    /// Waits up to the gate's wait for a permit.
    pub fn enter(&self) -> AppResult<DecodePermit<'_>> {
        let deadline = Instant::now() + self.wait;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= self.limit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AppError::Busy {
                    message: "The server is busy reading other images; please try again in a few seconds.".into(),
                    retry_after_secs: 2,
                });
            }
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy += 1;
        Ok(DecodePermit(self))
    }

    /// Permits in use now.
    pub fn in_use(&self) -> usize {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DecodePermit<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        drop(busy);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_gate_admits_at_most_its_limit_and_turns_away_after_its_wait() {
        let gate = Arc::new(DecodeGate::new(2, Duration::from_millis(300)));
        let (inside, most, refused) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gate, inside, most, refused) =
                    (gate.clone(), inside.clone(), most.clone(), refused.clone());
                std::thread::spawn(move || match gate.enter() {
                    Ok(_permit) => {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(AppError::Busy { .. }) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("{e}"),
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // 16 decodes of 100 ms through 2 places, 300 ms of patience: some
        // were turned away, and those that waited got in.
        let turned_away = refused.load(Ordering::SeqCst);
        assert!((1..=12).contains(&turned_away), "{turned_away}");
        assert_eq!(gate.in_use(), 0);
    }
}
