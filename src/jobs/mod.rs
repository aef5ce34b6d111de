//! Background work that runs inside the server process: the queue workers
//! and the scheduler's periodic sweeps.

pub mod queue;
pub mod webhooks;

use std::time::Duration;

use crate::config::Config;
use crate::db::Db;
use crate::domain;

/// How often the housekeeping sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// One housekeeping pass: deletes sessions past their idle or absolute
/// lifetime and e-mail links long expired or used. Returns sessions removed.
pub fn sweep(db: &Db, config: &Config) -> crate::AppResult<usize> {
    let conn = db.get()?;
    domain::sessions::sweep(&conn, config, domain::now())
}

/// The retention sweep now (also `novart cleanup`).
pub fn cleanup(db: &Db, config: &Config) -> crate::AppResult<domain::retention::SweepReport> {
    let conn = db.get()?;
    domain::retention::sweep(&conn, config, domain::now())
}

/// How often expired task leases are looked for.
pub const LEASE_CHECK_EVERY: Duration = Duration::from_secs(15);

/// Gives tasks of a dead worker back to the queue (or fails them).
pub fn recover(engine: &queue::Engine, cutoff: i64) -> crate::AppResult<usize> {
    let mut conn = engine.db.get()?;
    let touched = domain::tasks::recover_leases(&mut conn, &engine.config, cutoff)?;
    for (id, status) in &touched {
        if let Some(t) = crate::db::tasks::by_id(&conn, *id)? {
            engine.hub.publish(t.user_id, &t.public_id);
        }
        tracing::warn!(task = %id, now = status.as_str(), "recovered a task whose worker stopped");
    }
    if !touched.is_empty() {
        engine.hub.wake();
    }
    Ok(touched.len())
}

/// Starts the queue: recovers tasks left running by a previous process,
/// then the workers and the lease watcher.
pub fn start_queue(engine: queue::Engine) {
    let e = engine.clone();
    rocket::tokio::spawn(async move {
        let first = e.clone();
        let _ = rocket::tokio::task::spawn_blocking(move || {
            if let Err(err) = recover(&first, i64::MAX) {
                tracing::error!("start-up task recovery failed: {err}");
            }
        })
        .await;
        tracing::info!(workers = e.config.queue.workers, "task queue started");
        e.spawn_workers();
        let mut tick = rocket::tokio::time::interval(LEASE_CHECK_EVERY);
        loop {
            tick.tick().await;
            let e2 = e.clone();
            let r = rocket::tokio::task::spawn_blocking(move || recover(&e2, domain::now())).await;
            if let Ok(Err(err)) = r {
                tracing::error!("lease recovery failed: {err}");
            }
        }
    });
}

/// How often ended bans are closed (and their users told).
pub const BAN_CHECK_EVERY: Duration = Duration::from_secs(20);

/// Lifts bans whose time is up; returns how many.
pub fn lift_bans(db: &Db) -> crate::AppResult<usize> {
    let mut conn = db.get()?;
    domain::bans::lift_expired(&mut conn, domain::now())
}

/// How often waiting data exports are looked for.
pub const EXPORT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Builds waiting data exports; returns how many.
pub fn build_exports(db: &Db, config: &Config) -> crate::AppResult<usize> {
    let mut conn = db.get()?;
    domain::export::build_pending(&mut conn, config)
}

/// Starts the periodic sweep on the server's runtime; it ends with the server.
pub fn spawn_scheduler(db: Db, config: Config) {
    let (export_db, export_config) = (db.clone(), config.clone());
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(EXPORT_CHECK_EVERY);
        loop {
            tick.tick().await;
            let (db, config) = (export_db.clone(), export_config.clone());
            match rocket::tokio::task::spawn_blocking(move || build_exports(&db, &config)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(exports = n, "built data exports"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("building data exports failed: {e}"),
                Err(e) => tracing::error!("export task failed: {e}"),
            }
        }
    });
    let bans_db = db.clone();
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(BAN_CHECK_EVERY);
        loop {
            tick.tick().await;
            let db = bans_db.clone();
            match rocket::tokio::task::spawn_blocking(move || lift_bans(&db)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(bans = n, "lifted ended bans"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("lifting ended bans failed: {e}"),
                Err(e) => tracing::error!("ban lifting task failed: {e}"),
            }
        }
    });
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let (db2, config2) = (db.clone(), config.clone());
            let result = rocket::tokio::task::spawn_blocking(move || {
                if let Err(e) = cleanup(&db2, &config2) {
                    tracing::error!("retention sweep failed: {e}");
                }
                sweep(&db2, &config2)
            })
            .await;
            match result {
                Ok(Ok(n)) if n > 0 => tracing::info!(sessions = n, "swept expired sessions"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("sweep failed: {e}"),
                Err(e) => tracing::error!("sweep task failed: {e}"),
            }
        }
    });
}
