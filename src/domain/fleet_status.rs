//! The providers' health and load as each server node last saw them
//! (`novart providers`): the node's fleet watch records its view every few
//! seconds, the CLI reads it from the database.

use crate::domain::Connection;
use serde::Serialize;

use crate::domain::db;
use crate::error::AppResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    /// Answering, but its last call failed: used after the healthy ones.
    Degraded,
    /// Refused a connection, has no address, or failed repeatedly: skipped
    /// until a probe answers.
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    pub fn rank(self) -> u8 {
        match self {
            Health::Up => 0,
            Health::Degraded => 1,
            Health::Down => 2,
        }
    }
}

/// One provider as `novart providers` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    pub id: String,
    pub health: Health,
    pub running: u32,
    pub concurrency: u32,
    pub weight: u32,
    pub priority: u32,
    pub latency_ms: Option<u64>,
    pub calls: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

impl Health {
    pub fn parse(s: &str) -> Health {
        match s {
            "up" => Health::Up,
            "degraded" => Health::Degraded,
            _ => Health::Down,
        }
    }
}

/// One node's view of one provider, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub node: String,
    #[serde(flatten)]
    pub status: ProviderStatus,
    pub updated_at: i64,
}

/// Records this node's view (one row per provider, replaced).
pub fn record(conn: &mut Connection, node: &str, status: &[ProviderStatus]) -> AppResult<()> {
    let now = super::now();
    db::write(conn, |tx| {
        for s in status {
            db::fleet::upsert(tx, node, s, now)?;
        }
        Ok(())
    })
}

/// Every node's view, newest first within each provider.
pub fn list(conn: &Connection) -> AppResult<Vec<Seen>> {
    db::fleet::list(conn)
}
