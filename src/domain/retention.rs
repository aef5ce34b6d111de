//! The retention sweep: results are deleted `result_retention_hours` after
//! they were made, references `reference_retention_hours` after upload. The
//! file and its row go together; the sweep also mends what a crash between
//! the two could leave (rows whose file is gone, files with no row).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::domain::db::{self, Db};
use crate::error::AppResult;
use crate::model::{Asset, AssetKind};

use super::stored::Listed;

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

/// Rows whose file is gone (a crash after deleting the file, or an object
/// lost in the bucket), and files with no row older than the grace period
/// (a crash between writing a file and recording it, or a delete the store
/// refused).
pub fn compare<'a>(
    rows: &'a [Asset],
    listed: &'a [Listed],
    now: i64,
) -> (Vec<&'a Asset>, Vec<&'a Listed>) {
    let present: HashSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    let mut known: HashSet<&str> = HashSet::new();
    let mut dangling = Vec::new();
    for a in rows {
        if !present.contains(a.path.as_str()) {
            dangling.push(a);
            continue;
        }
        known.insert(&a.path);
        if let Some(p) = &a.preview_path {
            known.insert(p);
        }
    }
    let cutoff = now - ORPHAN_GRACE.as_secs() as i64;
    let orphans = listed
        .iter()
        .filter(|l| !known.contains(l.key.as_str()))
        .filter(|l| l.modified.is_some_and(|m| m < cutoff))
        .collect();
    (dangling, orphans)
}

/// Runs the sweep as of `now` (unix seconds; tests pass a fake clock).
/// A connection is taken for each database step and given back before the
/// store is called: deleting thousands of objects in a bucket holds no
/// connection other requests wait for.
pub fn sweep(db: &Db, config: &Config, now: i64) -> AppResult<SweepReport> {
    let mut report = SweepReport::default();
    loop {
        let batch = db::assets::expired(&*db.get()?, now, 500)?;
        if batch.is_empty() {
            break;
        }
        for a in &batch {
            super::assets::delete_files(config, a);
            db::assets::delete(&*db.get()?, a.id)?;
            match a.kind {
                AssetKind::Result => report.results_deleted += 1,
                AssetKind::Reference => report.references_deleted += 1,
            }
        }
    }
    // Rows are read before the store is listed: a row is written only
    // after its file, so every row read here has its file in the listing
    // unless the file is really gone.
    let rows = db::assets::all(&*db.get()?)?;
    match super::stored::list(config, "assets/") {
        Ok(listed) => {
            // The grace is counted on the wall clock, not the sweep's `now`.
            let (dangling, orphans) = compare(&rows, &listed, super::now());
            for a in dangling {
                super::assets::delete_files(config, a);
                db::assets::delete(&*db.get()?, a.id)?;
                report.dangling_rows_deleted += 1;
            }
            let keys: Vec<&str> = orphans.iter().map(|l| l.key.as_str()).collect();
            for key in keys {
                if super::stored::delete(config, &[key]).is_ok() {
                    report.orphan_files_deleted += 1;
                }
            }
        }
        // The store did not answer: no row is taken for dangling on that.
        Err(e) => tracing::warn!("retention sweep: cannot list stored files: {e}"),
    }
    report.exports_deleted = super::export::sweep(db, config, now)?;
    let conn = db.get()?;
    let conn = &*conn;
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
    if report != SweepReport::default() {
        tracing::info!(?report, "retention sweep");
    }
    Ok(report)
}
