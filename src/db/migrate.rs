//! Schema migrations: `schema.sql` for SQLite, versioned with PRAGMA
//! user_version; `schema.postgres.sql` for PostgreSQL (the same numbers),
//! versioned in the `novart_schema` table and applied under the cluster's
//! write lock, so nodes starting together migrate once.

use super::sql::{Connection, Dialect};

use crate::error::{AppError, AppResult};

const SCHEMA: &str = include_str!("../../schema.sql");
const SCHEMA_POSTGRES: &str = include_str!("../../schema.postgres.sql");

/// One `-- migration N: ...` section of schema.sql.
pub struct Migration {
    pub version: i64,
    pub description: String,
    pub sql: String,
}

/// Splits schema.sql into its numbered migrations. Panics at start-up (and in
/// the test suite) if the file is malformed: that is a build defect.
pub fn migrations() -> Vec<Migration> {
    parse(SCHEMA)
}

/// The migrations of one engine's schema file.
pub fn migrations_for(dialect: Dialect) -> Vec<Migration> {
    match dialect {
        Dialect::Sqlite => parse(SCHEMA),
        Dialect::Postgres => parse(SCHEMA_POSTGRES),
    }
}

fn parse(schema: &str) -> Vec<Migration> {
    let mut out: Vec<Migration> = Vec::new();
    for line in schema.lines() {
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
    match conn.dialect() {
        Dialect::Sqlite => Ok(conn.query_row("PRAGMA user_version", (), |r| r.get(0))?),
        Dialect::Postgres => {
            let exists: bool =
                conn.query_row("SELECT to_regclass('novart_schema') IS NOT NULL", (), |r| {
                    r.get(0)
                })?;
            if !exists {
                return Ok(0);
            }
            Ok(conn
                .query_row("SELECT max(version) FROM novart_schema", (), |r| {
                    r.get::<_, Option<i64>>(0)
                })?
                .unwrap_or(0))
        }
    }
}

/// Records the schema version (inside the migration's transaction).
pub fn set_version(conn: &Connection, version: i64) -> AppResult<()> {
    match conn.dialect() {
        Dialect::Sqlite => conn.execute_batch(&format!("PRAGMA user_version = {version}"))?,
        Dialect::Postgres => {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS novart_schema (version BIGINT NOT NULL)",
            )?;
            conn.execute("DELETE FROM novart_schema", ())?;
            conn.execute("INSERT INTO novart_schema (version) VALUES (?1)", [version])?;
        }
    }
    Ok(())
}

fn too_new(current: i64, known: usize) -> AppError {
    AppError::internal(format!(
        "the database is at schema version {current}, newer than this binary knows ({known}); use a newer novart"
    ))
}

/// Applies every pending migration; returns the versions applied.
pub fn migrate(conn: &mut Connection) -> AppResult<Vec<i64>> {
    let all = migrations_for(conn.dialect());
    if conn.dialect() == Dialect::Postgres {
        // One transaction under the write lock: a node that starts while
        // another migrates waits, then finds nothing left to do.
        let applied = super::write(conn, |tx| {
            let current = current_version(tx)?;
            if current > all.len() as i64 {
                return Err(too_new(current, all.len()));
            }
            let mut applied = Vec::new();
            for m in all.iter().filter(|m| m.version > current) {
                tx.execute_batch(&m.sql).map_err(|e| {
                    AppError::internal(format!("migration {} ({}): {e}", m.version, m.description))
                })?;
                set_version(tx, m.version)?;
                applied.push(m.version);
            }
            Ok(applied)
        })?;
        for v in &applied {
            tracing::info!(
                version = v,
                "applied migration: {}",
                all[*v as usize - 1].description
            );
        }
        return Ok(applied);
    }
    let current = current_version(conn)?;
    if current > all.len() as i64 {
        return Err(too_new(current, all.len()));
    }
    let mut applied = Vec::new();
    for m in all.into_iter().filter(|m| m.version > current) {
        crate::domain::db::write(conn, |tx| {
            tx.execute_batch(&m.sql).map_err(|e| {
                AppError::internal(format!("migration {} ({}): {e}", m.version, m.description))
            })?;
            set_version(tx, m.version)?;
            Ok(())
        })?;
        tracing::info!(version = m.version, "applied migration: {}", m.description);
        applied.push(m.version);
    }
    Ok(applied)
}
