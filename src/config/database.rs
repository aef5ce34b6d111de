//! `[database]`: SQLite in the data directory (the default), or PostgreSQL.

use serde::{Deserialize, Serialize};

use super::errors::{err, ConfigError};

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Empty: SQLite at `<data_dir>/novart.db`. `postgres://user:pass@host/db`
    /// (add `?sslmode=require` for TLS): PostgreSQL, which several `novart
    /// serve` nodes can share. Better given as NOVART_DATABASE__URL when it
    /// holds a password.
    pub url: String,
    /// Connections this node keeps open to PostgreSQL at most.
    pub pool_size: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            pool_size: 16,
        }
    }
}

/// The password never reaches a log line, even through `{:?}`.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redacted(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URL with its password replaced, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        !self.url.is_empty()
    }
}

pub fn validate(db: &DatabaseConfig) -> Result<(), ConfigError> {
    if !(1..=1000).contains(&db.pool_size) {
        return Err(err("database.pool_size", "must be between 1 and 1000"));
    }
    if db.url.is_empty() {
        return Ok(());
    }
    if !(db.url.starts_with("postgres://") || db.url.starts_with("postgresql://")) {
        return Err(err(
            "database.url",
            "must be empty (SQLite in the data directory) or a postgres:// URL",
        ));
    }
    if let Err(e) = db.url.parse::<postgres::Config>() {
        return Err(err(
            "database.url",
            format!("{} is not a valid PostgreSQL URL: {e}", redacted(&db.url)),
        ));
    }
    Ok(())
}
