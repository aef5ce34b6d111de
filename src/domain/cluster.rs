//! The nodes of one instance: several `novart serve` processes on one
//! PostgreSQL database share the queue; the periodic jobs run once across
//! them, each round on whichever node takes the job's turn.

use std::time::Duration;

use super::{db, Db};
use crate::error::AppResult;

/// Takes the turn of the periodic job `job` (run every `period`) for
/// `node`: true when this node should run it this round. The turn lasts
/// just under one period, so the job runs once per period across the
/// cluster, and another node takes over when its holder stops.
pub fn take_turn(db: &Db, job: &str, node: &str, period: Duration) -> AppResult<bool> {
    let now = super::now();
    let until = now + (period.as_secs() as i64 - 1).max(0);
    let mut conn = db.get()?;
    db::write(&mut conn, |tx| {
        db::cluster::take_turn(tx, job, node, now, until)
    })
}

/// Each periodic job's current turn: (job, node, until).
pub fn turns(conn: &super::Connection) -> AppResult<Vec<(String, String, i64)>> {
    db::cluster::turns(conn)
}

/// Tells the other nodes `lines` (each `<node> <event>`).
pub fn relay(db: &Db, lines: &[String]) -> AppResult<()> {
    let conn = db.get()?;
    for line in lines {
        db::cluster::notify(&conn, line)?;
    }
    Ok(())
}

/// A connection of its own that hears what the other nodes relay.
pub struct Listener {
    conn: super::Connection,
}

impl Listener {
    pub fn open(config: &crate::config::Config) -> AppResult<Listener> {
        let conn = Db::connect(config)?;
        db::cluster::listen(&conn)?;
        Ok(Listener { conn })
    }

    /// The lines relayed since the last call, waiting up to `wait`.
    pub fn next(&self, wait: Duration) -> AppResult<Vec<String>> {
        Ok(self.conn.notifications(wait)?)
    }
}
