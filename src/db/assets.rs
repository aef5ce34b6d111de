//! SQL for `assets` (stored images) and `task_references`.

use super::sql::{params, Connection, OptionalExtension, Row};

use crate::error::AppResult;
use crate::model::{Asset, AssetId, AssetKind, TaskId, UserId};

const COLUMNS: &str = "a.id, a.public_id, a.user_id, a.task_id, a.kind, a.path, a.preview_path, a.mime, a.width, a.height, \
     a.bytes, a.created_at, a.expires_at, a.downloads, a.published_at, a.share_id";

fn from_row(r: &Row<'_>) -> super::sql::Result<Asset> {
    let kind: String = r.get(4)?;
    Ok(Asset {
        id: r.get(0)?,
        public_id: r.get(1)?,
        user_id: r.get(2)?,
        task_id: r.get(3)?,
        kind: if kind == "reference" {
            AssetKind::Reference
        } else {
            AssetKind::Result
        },
        path: r.get(5)?,
        preview_path: r.get(6)?,
        mime: r.get(7)?,
        width: r.get(8)?,
        height: r.get(9)?,
        bytes: r.get(10)?,
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        downloads: r.get(13)?,
        published_at: r.get(14)?,
        share_id: r.get(15)?,
    })
}

pub struct NewAsset<'a> {
    pub public_id: &'a str,
    pub user_id: UserId,
    pub task_id: Option<TaskId>,
    pub kind: AssetKind,
    pub path: &'a str,
    pub preview_path: Option<&'a str>,
    pub mime: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: i64,
    pub now: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &Connection, a: &NewAsset<'_>) -> AppResult<AssetId> {
    conn.prepare_cached("INSERT INTO assets (public_id, user_id, task_id, kind, path, preview_path, mime, width, height, bytes,
                             created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")?
            .execute(params![
            a.public_id, a.user_id, a.task_id, a.kind.as_str(), a.path, a.preview_path, a.mime, a.width, a.height,
            a.bytes, a.now, a.expires_at
        ],
    )?;
    Ok(AssetId(conn.last_insert_rowid()?))
}

pub fn by_public_id(conn: &Connection, public_id: &str) -> AppResult<Option<Asset>> {
    let sql = format!("SELECT {COLUMNS} FROM assets a WHERE a.public_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([public_id], from_row)
        .optional()?)
}

/// The results of the given tasks, in id order: one query for a page of
/// tasks instead of one per task.
pub fn results_of_tasks(conn: &Connection, tasks: &[TaskId]) -> AppResult<Vec<Asset>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; tasks.len()].join(", ");
    let sql = format!(
        "SELECT {COLUMNS} FROM assets a WHERE a.task_id IN ({marks}) AND a.kind = 'result' ORDER BY a.id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(super::sql::params_from_iter(tasks), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn references_of_task(conn: &Connection, task: TaskId) -> AppResult<Vec<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM task_references tr JOIN assets a ON a.id = tr.asset_id
         WHERE tr.task_id = ?1 AND tr.role = 'image' ORDER BY tr.position"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([task], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The reference images of several tasks in one query, in each task's
/// order, with the task each belongs to.
pub fn references_of_tasks(conn: &Connection, tasks: &[TaskId]) -> AppResult<Vec<(TaskId, Asset)>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; tasks.len()].join(", ");
    let sql = format!(
        "SELECT {COLUMNS}, tr.task_id FROM task_references tr JOIN assets a ON a.id = tr.asset_id
         WHERE tr.task_id IN ({marks}) AND tr.role = 'image' ORDER BY tr.task_id, tr.position"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(super::sql::params_from_iter(tasks), |r| {
        Ok((r.get(16)?, from_row(r)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The mask given with an edit, if any.
pub fn mask_of_task(conn: &Connection, task: TaskId) -> AppResult<Option<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM task_references tr JOIN assets a ON a.id = tr.asset_id
         WHERE tr.task_id = ?1 AND tr.role = 'mask'"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([task], from_row)
        .optional()?)
}

pub fn attach_mask(conn: &Connection, task: TaskId, asset: AssetId) -> AppResult<()> {
    conn.prepare_cached("INSERT INTO task_references (task_id, asset_id, position, role) VALUES (?1, ?2, 1000, 'mask')")?
            .execute(params![task, asset],
    )?;
    Ok(())
}

pub fn attach_reference(
    conn: &Connection,
    task: TaskId,
    asset: AssetId,
    position: u32,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO task_references (task_id, asset_id, position) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![task, asset, position])?;
    Ok(())
}

/// A library row: the image with its task's model, prompt and public id.
#[derive(Debug, Hash)]
pub struct LibraryItem {
    pub asset: Asset,
    pub model: String,
    pub prompt: String,
    pub task_public_id: String,
}

/// A user's results (with their task's model and prompt), newest first.
/// Which of a user's images a library page shows.
#[derive(Debug, Clone, Default)]
pub struct LibraryFilter {
    pub model: Option<String>,
    /// Made at or after (unix seconds).
    pub since: Option<i64>,
    /// Words the prompt contains (case-insensitive for ASCII letters).
    pub text: Option<String>,
}

pub fn results_for_user(
    conn: &Connection,
    user: UserId,
    f: &LibraryFilter,
    before: Option<AssetId>,
    limit: u32,
) -> AppResult<Vec<LibraryItem>> {
    let sql = format!(
        "SELECT {COLUMNS}, t.model, t.prompt, t.public_id FROM assets a JOIN tasks t ON t.id = a.task_id
         WHERE a.user_id = ?1 AND a.kind = 'result' AND (CAST(?2 AS TEXT) IS NULL OR t.model = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR a.id < ?3)
           AND (CAST(?5 AS BIGINT) IS NULL OR a.created_at >= ?5) AND (CAST(?6 AS TEXT) IS NULL OR instr(lower(t.prompt), lower(CAST(?6 AS TEXT))) > 0)
         ORDER BY a.id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![user, f.model, before, limit, f.since, f.text],
        |r| {
            Ok(LibraryItem {
                asset: from_row(r)?,
                model: r.get(16)?,
                prompt: r.get(17)?,
                task_public_id: r.get(18)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many images a filter matches, and when the first of them expires.
pub fn results_summary(
    conn: &Connection,
    user: UserId,
    f: &LibraryFilter,
) -> AppResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), min(a.expires_at) FROM assets a JOIN tasks t ON t.id = a.task_id
             WHERE a.user_id = ?1 AND a.kind = 'result' AND (CAST(?2 AS TEXT) IS NULL OR t.model = ?2)
               AND (CAST(?3 AS BIGINT) IS NULL OR a.created_at >= ?3) AND (CAST(?4 AS TEXT) IS NULL OR instr(lower(t.prompt), lower(CAST(?4 AS TEXT))) > 0)",
        )?
        .query_row(params![user, f.model, f.since, f.text], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

pub fn count_download(conn: &Connection, id: AssetId) -> AppResult<()> {
    conn.prepare_cached("UPDATE assets SET downloads = downloads + 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: AssetId) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM assets WHERE id = ?1")?
        .execute([id])?
        == 1)
}

/// Assets whose retention ended at `now`.
pub fn expired(conn: &Connection, now: i64, limit: u32) -> AppResult<Vec<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM assets a WHERE a.expires_at <= ?1 ORDER BY a.expires_at LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![now, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every asset row (for the sweep's consistency pass).
pub fn all(conn: &Connection) -> AppResult<Vec<Asset>> {
    let sql = format!("SELECT {COLUMNS} FROM assets a ORDER BY a.id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map((), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Publishes or withdraws an image (and its retention); false if not found.
pub fn set_published(
    conn: &Connection,
    id: AssetId,
    published_at: Option<i64>,
    expires_at: i64,
) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("UPDATE assets SET published_at = ?2, expires_at = ?3 WHERE id = ?1")?
        .execute(params![id, published_at, expires_at])?
        == 1)
}

pub fn set_share(conn: &Connection, id: AssetId, share_id: Option<&str>) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("UPDATE assets SET share_id = ?2 WHERE id = ?1")?
        .execute(params![id, share_id])?
        == 1)
}

pub fn by_share_id(conn: &Connection, share_id: &str) -> AppResult<Option<Asset>> {
    let sql = format!("SELECT {COLUMNS} FROM assets a WHERE a.share_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([share_id], from_row)
        .optional()?)
}

/// Published images still kept, newest first.
pub fn published(
    conn: &Connection,
    now: i64,
    before: Option<i64>,
    limit: u32,
) -> AppResult<Vec<(Asset, String)>> {
    let sql = format!(
        "SELECT {COLUMNS}, coalesce(t.model, '') FROM assets a LEFT JOIN tasks t ON t.id = a.task_id
         WHERE a.published_at IS NOT NULL AND a.expires_at > ?1 AND (CAST(?2 AS BIGINT) IS NULL OR a.published_at < ?2)
         ORDER BY a.published_at DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![now, before, limit], |r| {
        Ok((from_row(r)?, r.get(16)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every stored file the database points to: (key, table, row id), images
/// and previews first, then prepared exports.
pub fn stored_keys(conn: &Connection) -> AppResult<Vec<(String, &'static str, i64)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare("SELECT id, path, preview_path FROM assets ORDER BY id")?;
    let rows = stmt.query_map((), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, path, preview) = row?;
        out.push((path, "assets", id));
        if let Some(p) = preview {
            out.push((p, "assets", id));
        }
    }
    let mut stmt = conn.prepare("SELECT id, file FROM exports WHERE file IS NOT NULL")?;
    let rows = stmt.query_map((), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (id, file) = row?;
        out.push((file, "exports", id));
    }
    Ok(out)
}

/// Deletes the row that named a stored file (one of `stored_keys`'s
/// tables), for a backup whose copy of the file is gone.
pub fn forget_stored(conn: &Connection, table: &str, id: i64) -> AppResult<usize> {
    let sql = match table {
        "assets" => "DELETE FROM assets WHERE id = ?1",
        "exports" => "DELETE FROM exports WHERE id = ?1",
        other => {
            return Err(crate::error::AppError::internal(format!(
                "no stored files in table {other}"
            )))
        }
    };
    Ok(conn.execute(sql, [id])?)
}
