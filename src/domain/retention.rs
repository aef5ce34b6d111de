//! The retention sweep: results are deleted `result_retention_hours` after
//! they were made, references `reference_retention_hours` after upload. The
//! file and its row go together; the sweep also mends what a crash between
//! the two could leave (rows whose file is gone, files with no row).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::domain::db;
use crate::error::AppResult;
use crate::model::AssetKind;

/// Files younger than this are never treated as orphans: a worker may be
/// between writing a file and committing its row.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub results_deleted: usize,
    pub references_deleted: usize,
    pub dangling_rows_deleted: usize,
    pub orphan_files_deleted: usize,
    pub request_logs_deleted: usize,
    pub idempotency_keys_deleted: usize,
    pub webhook_deliveries_deleted: usize,
    pub blocked_attempts_deleted: usize,
    pub exports_deleted: usize,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Runs the sweep as of `now` (unix seconds; tests pass a fake clock).
pub fn sweep(conn: &Connection, config: &Config, now: i64) -> AppResult<SweepReport> {
    let mut report = SweepReport::default();
    loop {
        let batch = db::assets::expired(conn, now, 500)?;
        if batch.is_empty() {
            break;
        }
        for a in &batch {
            super::assets::delete(conn, config, a)?;
            match a.kind {
                AssetKind::Result => report.results_deleted += 1,
                AssetKind::Reference => report.references_deleted += 1,
            }
        }
    }
    // Rows whose file is gone (a crash after deleting the file).
    let mut known: HashSet<PathBuf> = HashSet::new();
    for a in db::assets::all(conn)? {
        let file = super::assets::file_path(config, &a.path);
        if !file.exists() {
            super::assets::delete(conn, config, &a)?;
            report.dangling_rows_deleted += 1;
            continue;
        }
        known.insert(file);
        if let Some(p) = &a.preview_path {
            known.insert(super::assets::file_path(config, p));
        }
    }
    // Files with no row (a crash before the row was written, or after the
    // row was deleted), once they are old enough to be certain.
    let mut files = Vec::new();
    walk(&config.assets_dir(), &mut files);
    let cutoff = SystemTime::now() - ORPHAN_GRACE;
    for f in files {
        if known.contains(&f) {
            continue;
        }
        let old = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .map(|t| t < cutoff)
            .unwrap_or(false);
        if old && std::fs::remove_file(&f).is_ok() {
            report.orphan_files_deleted += 1;
        }
    }
    report.request_logs_deleted = db::api_requests::sweep(
        conn,
        now - config.api.request_log_retention_days as i64 * 86_400,
    )?;
    report.idempotency_keys_deleted =
        db::tasks::idempotency_sweep(conn, now - config.api.idempotency_hours as i64 * 3600)?;
    // Finished webhook deliveries (their payloads hold prompts) go with the
    // request log.
    report.webhook_deliveries_deleted = db::webhooks::sweep(
        conn,
        now - config.api.request_log_retention_days as i64 * 86_400,
    )?;
    report.blocked_attempts_deleted = db::risk::sweep_blocks(
        conn,
        now - config.moderation.blocked_log_retention_days as i64 * 86_400,
    )?;
    report.exports_deleted = super::export::sweep(conn, config, now)?;
    if report != SweepReport::default() {
        tracing::info!(?report, "retention sweep");
    }
    Ok(report)
}
