//! Background work that runs inside the server process: the queue workers
//! and the scheduler's periodic sweeps.

pub mod cluster;
pub mod fleet;
pub mod hub;
pub mod queue;
mod watch;
pub mod webhooks;

use std::time::Duration;

use crate::config::Config;
use crate::domain;
use crate::domain::Db;

/// How often the housekeeping sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// One housekeeping pass: deletes sessions past their idle or absolute
/// lifetime and e-mail links long expired or used. Returns sessions removed.
pub fn sweep(db: &Db, config: &Config) -> crate::AppResult<usize> {
    let conn = db.get()?;
    domain::ratelimit::sweep_shared(&conn)?;
    domain::sessions::sweep(&conn, config, domain::now())
}

/// The retention sweep now (also `novart cleanup`).
pub fn cleanup(db: &Db, config: &Config) -> crate::AppResult<domain::retention::SweepReport> {
    domain::retention::sweep(db, config, domain::now())
}

/// How often expired task leases are looked for.
pub const LEASE_CHECK_EVERY: Duration = Duration::from_secs(15);

/// Gives tasks of a dead worker back to the queue (or fails them).
pub fn recover(engine: &queue::Engine, cutoff: i64) -> crate::AppResult<usize> {
    let mut conn = engine.db.get()?;
    let touched = domain::tasks::recover_leases(&mut conn, &engine.config, cutoff)?;
    for (t, status) in &touched {
        engine.hub.publish(t.user_id, &t.public_id);
        tracing::warn!(task = %t.public_id, now = status.as_str(), "recovered a task whose worker stopped");
    }
    if !touched.is_empty() {
        engine.hub.wake();
    }
    Ok(touched.len())
}

/// Gives back the tasks this node left running when it stopped: all of
/// them on SQLite (one node, and the data directory's lock says the last
/// process is gone); on a shared database those of this node's earlier
/// process and any whose lease has ended (other nodes' tasks are theirs).
pub fn recover_at_start(engine: &queue::Engine) -> crate::AppResult<usize> {
    if !engine.config.database.is_postgres() {
        return recover(engine, i64::MAX);
    }
    let mut conn = engine.db.get()?;
    let touched = domain::tasks::recover_node(
        &mut conn,
        &engine.config,
        &cluster::worker_prefix(&engine.config),
    )?;
    for (t, _) in &touched {
        engine.hub.publish(t.user_id, &t.public_id);
    }
    drop(conn);
    Ok(touched.len() + recover(engine, domain::now())?)
}

/// Starts the queue: recovers tasks left running by a previous process,
/// then the workers and the lease watcher.
pub fn start_queue(engine: queue::Engine) {
    let e = engine.clone();
    rocket::tokio::spawn(async move {
        let first = e.clone();
        let _ = rocket::tokio::task::spawn_blocking(move || {
            if let Err(err) = recover_at_start(&first) {
                tracing::error!("start-up task recovery failed: {err}");
            }
        })
        .await;
        tracing::info!(workers = e.config.queue.workers, "task queue started");
        e.spawn_workers();
        let turn = Turn::new(&e.db, &e.config, "lease_recovery");
        let mut tick = rocket::tokio::time::interval(LEASE_CHECK_EVERY);
        loop {
            tick.tick().await;
            let (e2, turn) = (e.clone(), turn.clone());
            let r = rocket::tokio::task::spawn_blocking(move || {
                if !turn.take(LEASE_CHECK_EVERY)? {
                    return Ok(0);
                }
                recover(&e2, domain::now())
            })
            .await;
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

/// How often the scheduled backup looks whether one is due.
pub const BACKUP_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Runs `job` on the blocking pool every `period`, logging what it did
/// (`Some(n)` with n > 0) or why it failed. Each round runs on one node of
/// the cluster: the one that takes the job's turn (`domain::cluster`).
fn every<F>(turn: Turn, period: Duration, what: &'static str, job: F)
where
    F: Fn() -> crate::AppResult<usize> + Send + Sync + Clone + 'static,
{
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(period);
        loop {
            tick.tick().await;
            let (job, turn) = (job.clone(), turn.clone());
            let run = move || -> crate::AppResult<usize> {
                if !turn.take(period)? {
                    return Ok(0);
                }
                job()
            };
            match rocket::tokio::task::spawn_blocking(run).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(count = n, "{what}"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("{what} failed: {e}"),
                Err(e) => tracing::error!("{what}: task failed: {e}"),
            }
        }
    });
}

/// A periodic job's name and this node, for taking the job's turn.
#[derive(Clone)]
struct Turn {
    db: Db,
    job: &'static str,
    node: String,
}

impl Turn {
    fn new(db: &Db, config: &Config, job: &'static str) -> Turn {
        Turn {
            db: db.clone(),
            job,
            node: config.node_id(),
        }
    }

    fn take(&self, period: Duration) -> crate::AppResult<bool> {
        domain::cluster::take_turn(&self.db, self.job, &self.node, period)
    }
}

/// Starts the periodic sweep on the server's runtime; it ends with the server.
pub fn spawn_scheduler(db: Db, config: Config) {
    let (d, c) = (db.clone(), config.clone());
    every(
        Turn::new(&db, &config, "exports"),
        EXPORT_CHECK_EVERY,
        "built data exports",
        move || build_exports(&d, &c),
    );
    let d = db.clone();
    every(
        Turn::new(&db, &config, "bans"),
        BAN_CHECK_EVERY,
        "lifted ended bans",
        move || lift_bans(&d),
    );
    let c = config.clone();
    every(
        Turn::new(&db, &config, "backup"),
        BACKUP_CHECK_EVERY,
        "scheduled backup written",
        move || Ok(domain::backup::scheduled(&c)?.map_or(0, |_| 1)),
    );
    let (d, c) = (db.clone(), config.clone());
    every(
        Turn::new(&db, &config, "sweep"),
        SWEEP_EVERY,
        "swept expired sessions",
        move || {
            if let Err(e) = cleanup(&d, &c) {
                tracing::error!("retention sweep failed: {e}");
            }
            sweep(&d, &c)
        },
    );
}
