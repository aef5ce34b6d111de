//! Sharing: every image is private to its owner until they publish it to
//! the public gallery or share it by an unguessable link; both can be taken
//! back at any time. Published images follow `storage.public_retention_hours`
//! when the operator sets it, else the normal retention.

use crate::domain::Connection;

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, AssetKind, UserId};

/// One of the user's own generated images (uploads cannot be shared).
fn own_result(conn: &Connection, user: UserId, public_id: &str) -> AppResult<Asset> {
    let a = super::assets::for_owner(conn, user, public_id)?;
    if a.kind != AssetKind::Result {
        return Err(AppError::NotFound);
    }
    Ok(a)
}

/// When an image is deleted if it is (or is not) public.
fn expiry(config: &Config, a: &Asset, public: bool) -> i64 {
    let normal = a.created_at + config.storage.result_retention_hours as i64 * 3600;
    let public_hours = config.storage.public_retention_hours as i64;
    if public && public_hours > 0 {
        a.created_at + public_hours * 3600
    } else {
        normal
    }
}

pub fn publish(conn: &mut Connection, config: &Config, user: UserId, id: &str) -> AppResult<Asset> {
    let a = own_result(conn, user, id)?;
    let now = super::now();
    let expires = expiry(config, &a, true);
    db::write(conn, |tx| {
        db::assets::set_published(tx, a.id, Some(a.published_at.unwrap_or(now)), expires)
    })?;
    own_result(conn, user, id)
}

pub fn unpublish(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    id: &str,
) -> AppResult<Asset> {
    let a = own_result(conn, user, id)?;
    let expires = expiry(config, &a, false);
    db::write(conn, |tx| {
        db::assets::set_published(tx, a.id, None, expires)
    })?;
    // Past its normal retention it is gone at the next sweep; meanwhile
    // only its owner sees it.
    Ok(a)
}

/// Creates the image's share link (or returns the existing one).
pub fn share(conn: &mut Connection, user: UserId, id: &str) -> AppResult<String> {
    let a = own_result(conn, user, id)?;
    if let Some(s) = a.share_id {
        return Ok(s);
    }
    let share_id = super::secrets::random_token(16);
    db::write(conn, |tx| db::assets::set_share(tx, a.id, Some(&share_id)))?;
    Ok(share_id)
}

pub fn unshare(conn: &mut Connection, user: UserId, id: &str) -> AppResult<()> {
    let a = own_result(conn, user, id)?;
    db::write(conn, |tx| db::assets::set_share(tx, a.id, None))?;
    Ok(())
}

/// The image behind a share link, while it is kept.
pub fn by_share(conn: &Connection, share_id: &str) -> AppResult<Asset> {
    db::assets::by_share_id(conn, share_id)?
        .filter(|a| a.expires_at > super::now())
        .ok_or(AppError::NotFound)
}

/// The public gallery, newest first: (image, model id).
pub fn public(
    conn: &Connection,
    before: Option<i64>,
    limit: u32,
) -> AppResult<Vec<(Asset, String)>> {
    db::assets::published(conn, super::now(), before, limit)
}

/// Whether someone other than the owner may see the image: it is in the
/// gallery, or they came with its share link.
pub fn visible_to_public(a: &Asset, share: Option<&str>) -> bool {
    a.published_at.is_some()
        || matches!((&a.share_id, share), (Some(s), Some(given)) if super::secrets::constant_time_eq(s, given))
}
