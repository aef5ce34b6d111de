//! The rules of the product. Nothing here knows about HTTP: the web handlers,
//! the CLI and the background jobs all call these same functions.

/// Storage (SQL per table, the pool, the migrations) is private to the
/// domain: web handlers, the CLI and the jobs cannot name it, so a shortcut
/// past the rules does not compile.
#[path = "../db/mod.rs"]
mod db;

pub use db::{Connection, Db, Dialect, Transaction};

/// The value traits model types implement to be stored and read (no query
/// access: that stays in `db/`).
pub mod values {
    pub use super::db::sql::{Error, FromSql, Result, ToSql, ValueRef};
}

/// Stored bytes (images, previews, uploads, exports) on the local disk or
/// in an S3-compatible bucket, private to the domain like the database.
#[path = "../blobs/mod.rs"]
mod blobs;

/// The schema's migrations (`novart migrate`, start-up, and their tests).
pub mod schema {
    pub use super::db::migrate::{
        current_version, latest_version, migrate, migrations, migrations_for,
    };

    /// True when the database answers a trivial query (`/healthz`).
    pub fn ping(conn: &crate::domain::Connection) -> crate::AppResult<()> {
        super::db::ping(conn)
    }
}

pub mod account_admin;
pub mod accounts;
pub mod apikeys;
pub mod appeals;
pub mod assets;
pub mod audit;
pub mod backup;
pub mod bans;
pub mod catalog;
pub mod cluster;
pub mod codes;
pub mod csrf;
pub mod dbcopy;
pub mod deletion;
pub mod doctor;
pub mod download_names;
pub mod email_change;
pub mod export;
pub mod fleet_status;
pub mod gallery;
pub mod limits;
pub mod links;
pub mod messages;
pub mod moderation;
pub mod passwords;
pub mod preferences;
pub mod privacy;
pub mod ratelimit;
pub mod recovery;
pub mod referrals;
pub mod reqlog;
pub mod retention;
pub mod running;
pub mod secrets;
pub mod sessions;
pub mod sign_in;
pub mod ssrf;
pub mod stats;
pub mod storage_move;
pub mod stored;
pub mod submission;
pub mod task_views;
pub mod tasks;
pub mod textfold;
pub mod uploads;
pub mod vault;
pub mod wallet;
pub mod webhooks;

/// The current time in unix seconds (UTC).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats unix seconds as `2026-11-22 05:54 UTC`.
pub fn format_time(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}
