//! Background work that runs inside the server process.

use std::time::Duration;

use crate::config::Config;
use crate::db::Db;
use crate::domain;

/// How often the housekeeping sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// One housekeeping pass: deletes sessions past their idle or absolute
/// lifetime and e-mail links long expired or used. Returns sessions removed.
pub fn sweep(db: &Db, config: &Config) -> crate::AppResult<usize> {
    let conn = db.get()?;
    domain::sessions::sweep(&conn, config, domain::now())
}

/// Starts the periodic sweep on the server's runtime; it ends with the server.
pub fn spawn_scheduler(db: Db, config: Config) {
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let (db2, config2) = (db.clone(), config.clone());
            let result = rocket::tokio::task::spawn_blocking(move || sweep(&db2, &config2)).await;
            match result {
                Ok(Ok(n)) if n > 0 => tracing::info!(sessions = n, "swept expired sessions"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("sweep failed: {e}"),
                Err(e) => tracing::error!("sweep task failed: {e}"),
            }
        }
    });
}
