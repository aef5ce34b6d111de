//! SQL for copying a whole instance from one database to another (`novart
//! db copy`): the tables in an order that satisfies their foreign keys,
//! their rows as they are (ids kept), and the identity sequences after.

use std::collections::BTreeSet;

use super::sql::{params_from_iter, Connection, Dialect, Value};

use crate::error::{AppError, AppResult};

/// Tables whose rows triggers write when tasks are inserted: copied last,
/// over what the triggers wrote, so they equal the source's.
pub const DERIVED: [&str; 2] = ["queue_users", "key_usage"];

/// A table to copy: its columns, and the column that points at its own
/// table (set in a second pass, after every row exists).
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub self_refs: Vec<String>,
}

/// The SQLite database's tables, each after the tables it points at.
pub fn tables(src: &Connection) -> AppResult<Vec<Table>> {
    if src.dialect() != Dialect::Sqlite {
        return Err(AppError::internal("the copy reads a SQLite database"));
    }
    let names: Vec<String> = src
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
        )?
        .query_map((), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut pending: Vec<(Table, BTreeSet<String>)> = Vec::new();
    for name in names {
        let columns: Vec<String> = src
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([&name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let fks: Vec<(String, String)> = src
            .prepare("SELECT \"table\", \"from\" FROM pragma_foreign_key_list(?1)")?
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let self_refs = fks
            .iter()
            .filter(|(t, _)| *t == name)
            .map(|(_, c)| c.clone())
            .collect();
        let parents = fks
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| *t != name)
            .collect();
        pending.push((
            Table {
                name,
                columns,
                self_refs,
            },
            parents,
        ));
    }
    let mut ordered: Vec<Table> = Vec::new();
    while !pending.is_empty() {
        let done: BTreeSet<String> = ordered.iter().map(|t| t.name.clone()).collect();
        let Some(i) = pending.iter().position(|(_, p)| p.is_subset(&done)) else {
            return Err(AppError::internal("the tables' foreign keys form a cycle"));
        };
        ordered.push(pending.remove(i).0);
    }
    Ok(ordered)
}

/// True when the PostgreSQL database has no tables yet.
pub fn is_empty(dst: &Connection) -> AppResult<bool> {
    let n: i64 = dst.query_row(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        (),
        |r| r.get(0),
    )?;
    Ok(n == 0)
}

pub fn count(conn: &Connection, table: &str) -> AppResult<i64> {
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), (), |r| r.get(0))?)
}

/// Empties a table (one the triggers filled during the copy).
pub fn clear(conn: &Connection, table: &str) -> AppResult<()> {
    conn.execute(&format!("DELETE FROM {table}"), ())?;
    Ok(())
}

/// Copies every row of `t` from `src` into `dst`; returns how many.
pub fn copy_rows(src: &Connection, dst: &Connection, t: &Table) -> AppResult<i64> {
    let cols = t.columns.join(", ");
    let marks: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {} ({cols}) VALUES ({})",
        t.name,
        marks.join(", ")
    );
    let self_at: Vec<usize> = t
        .self_refs
        .iter()
        .filter_map(|c| t.columns.iter().position(|x| x == c))
        .collect();
    let rows: Vec<Vec<Value>> = src
        .prepare(&format!("SELECT {cols} FROM {}", t.name))?
        .query_map((), |r| {
            (0..t.columns.len())
                .map(|i| r.with_value(i, |v| Ok(Value::from(v))))
                .collect()
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = dst.prepare_cached(&insert)?;
    let mut later = Vec::new();
    for mut row in rows.iter().cloned() {
        for &i in &self_at {
            if row[i] != Value::Null {
                later.push((row.clone(), i));
                row[i] = Value::Null;
            }
        }
        stmt.execute(params_from_iter(row))?;
    }
    // Rows that point at rows of their own table, now that all exist.
    for (row, i) in later {
        let id_at = t.columns.iter().position(|c| c == "id").ok_or_else(|| {
            AppError::internal(format!("{} points at itself without an id", t.name))
        })?;
        dst.execute(
            &format!("UPDATE {} SET {} = ?1 WHERE id = ?2", t.name, t.columns[i]),
            params_from_iter([row[i].clone(), row[id_at].clone()]),
        )?;
    }
    Ok(rows.len() as i64)
}

/// Moves the identity sequence of each table with an `id` past its rows.
pub fn reset_sequences(dst: &Connection, tables: &[Table]) -> AppResult<()> {
    for t in tables
        .iter()
        .filter(|t| t.columns.iter().any(|c| c == "id"))
    {
        dst.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence(?1, 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {}), false)",
                t.name
            ),
            [&t.name],
            |_| Ok(()),
        )?;
    }
    Ok(())
}
