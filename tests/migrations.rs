//! Schema migrations versioned with PRAGMA user_version.

use novart::config::{Config, Synchronous};
use novart::domain::{schema as migrate, Db};

#[test]
fn migrates_from_empty_and_rerun_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let db = Db::open(&config).unwrap();
    let mut conn = db.get().unwrap();
    assert_eq!(
        migrate::current_version(&conn).unwrap(),
        migrate::latest_version()
    );
    assert!(migrate::latest_version() >= 1);
    // Running again applies nothing and keeps the data.
    conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'kept')", ())
        .unwrap();
    assert!(migrate::migrate(&mut conn).unwrap().is_empty());
    drop(conn);
    let db = Db::open(&config).unwrap();
    let conn = db.get().unwrap();
    let v: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'probe'", (), |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(v, "kept");
    // The tables the application needs exist.
    for table in ["users", "sessions", "auth_tokens", "meta"] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
}

#[test]
fn every_connection_has_the_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let db = Db::open(&config).unwrap();
    let conn = db.get().unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", (), |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", (), |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", (), |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL by default");
    let busy: i64 = conn
        .query_row("PRAGMA busy_timeout", (), |r| r.get(0))
        .unwrap();
    assert!(busy >= 5000);

    let db = Db::open_path(&config.db_path(), Synchronous::Normal).unwrap();
    let sync: i64 = db
        .get()
        .unwrap()
        .query_row("PRAGMA synchronous", (), |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1);
}

/// A cached statement is compiled once, whatever values are bound to it
/// (SQLite otherwise recompiles a statement whose `LIMIT ?` or `? IS NULL`
/// bindings change, on every use).
#[test]
fn cached_statements_are_not_compiled_again_for_new_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let db = Db::open(&config).unwrap();
    let conn = db.get().unwrap();
    let sql = "SELECT id FROM tasks WHERE user_id = ?1 AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4";
    for (i, status) in [None, Some("queued"), None, Some("failed")]
        .into_iter()
        .enumerate()
    {
        let mut stmt = conn.as_sqlite().unwrap().prepare_cached(sql).unwrap();
        let before = (i % 2 == 0).then_some(1000 + i as i64);
        let rows: Vec<i64> = stmt
            .query_map(rusqlite::params![1, status, before, 10 + i as i64], |r| {
                r.get(0)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(rows.is_empty());
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "run {i} compiled the statement again"
        );
    }
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let db = Db::open(&config).unwrap();
    db.get()
        .unwrap()
        .as_sqlite()
        .unwrap()
        .pragma_update(None, "user_version", migrate::latest_version() + 1)
        .unwrap();
    drop(db);
    let err = Db::open(&config).err().expect("refused");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}

#[test]
fn migrations_are_numbered_from_one_without_gaps() {
    let all = migrate::migrations();
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.version, i as i64 + 1);
        assert!(!m.sql.trim().is_empty());
        assert!(!m.description.is_empty());
    }
}
