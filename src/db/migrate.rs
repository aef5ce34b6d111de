//! Schema migrations from `schema.sql`, versioned with PRAGMA user_version.

use rusqlite::Connection;

use crate::error::{AppError, AppResult};

const SCHEMA: &str = include_str!("../../schema.sql");

/// One `-- migration N: ...` section of schema.sql.
pub struct Migration {
    pub version: i64,
    pub description: String,
    pub sql: String,
}

/// Splits schema.sql into its numbered migrations. Panics at start-up (and in
/// the test suite) if the file is malformed: that is a build defect.
pub fn migrations() -> Vec<Migration> {
    let mut out: Vec<Migration> = Vec::new();
    for line in SCHEMA.lines() {
        if let Some(rest) = line.strip_prefix("-- migration ") {
            let (n, desc) = rest.split_once(':').expect("migration header needs ':'");
            let version: i64 = n.trim().parse().expect("migration number");
            assert_eq!(
                version,
                out.len() as i64 + 1,
                "migrations must count up from 1"
            );
            out.push(Migration {
                version,
                description: desc.trim().to_string(),
                sql: String::new(),
            });
        } else if let Some(m) = out.last_mut() {
            m.sql.push_str(line);
            m.sql.push('\n');
        }
    }
    out
}

pub fn latest_version() -> i64 {
    migrations().len() as i64
}

pub fn current_version(conn: &Connection) -> AppResult<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies every pending migration; returns the versions applied.
pub fn migrate(conn: &mut Connection) -> AppResult<Vec<i64>> {
    let current = current_version(conn)?;
    let all = migrations();
    if current > all.len() as i64 {
        return Err(AppError::internal(format!(
            "the database is at schema version {current}, newer than this binary knows ({}); use a newer novart",
            all.len()
        )));
    }
    let mut applied = Vec::new();
    for m in all.into_iter().filter(|m| m.version > current) {
        crate::domain::db::write(conn, |tx| {
            tx.execute_batch(&m.sql).map_err(|e| {
                AppError::internal(format!("migration {} ({}): {e}", m.version, m.description))
            })?;
            tx.pragma_update(None, "user_version", m.version)?;
            Ok(())
        })?;
        tracing::info!(version = m.version, "applied migration: {}", m.description);
        applied.push(m.version);
    }
    Ok(applied)
}
