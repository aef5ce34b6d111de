//! Operations: a backup taken while writes go on restores to a database
//! that passes every check; restore refuses a bad backup and a running
//! server; scheduled backups rotate; the doctor finds orphans, a webhook
//! backlog and risky settings.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::novart;
use novart::domain::tasks::{self, NewTaskInput};

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sums(conn: &novart::domain::Connection) -> (i64, i64, i64) {
    conn.query_row(
        "SELECT (SELECT sum(balance + bonus) FROM wallets), (SELECT sum(delta_balance + delta_bonus) FROM ledger), (SELECT count(*) FROM tasks)", (),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[test]
fn a_backup_during_load_restores_to_a_reconciled_database() {
    if common::pg::chosen() {
        // novart backup copies a SQLite instance; PostgreSQL's backups are
        // pg_dump's (tests/postgres.rs).
        eprintln!("a_backup_during_load_restores_to_a_reconciled_database: SQLite only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = common::config_for(&d.join("data"));
    let (app, user) = common::app_with_user(&config, "ops@example.com");
    // Some 6 MB of history, so the backup takes many steps with writes in
    // between (SQLite restarts a backup when another connection writes).
    let filler = "x".repeat(1000);
    app.db
        .get()
        .unwrap()
        .execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
             INSERT INTO audit_log (created_at, actor, action, target, reason) SELECT 0, 'test', 'filler', 'x', '{filler}' FROM n"
        ))
        .unwrap();
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    // Writers: credits granted, tasks submitted and processed (image files
    // written), all the time the backup runs.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let mut conn = app.db.get().unwrap();
                novart::domain::wallet::grant(&mut conn, user, 3, w % 2 == 0, "test", "load")
                    .unwrap();
                let input = NewTaskInput {
                    prompt: format!("load {w} {n}"),
                    model: "novart-builtin".into(),
                    ..Default::default()
                };
                tasks::submit(
                    &mut conn,
                    &app.engine.config,
                    &app.engine.catalog,
                    user,
                    &input,
                )
                .unwrap();
                drop(conn);
                app.engine.process_one(&format!("w{w}")).unwrap();
                n += 1;
            }
            n
        }));
    }
    // Back up once images exist, while the writers go on.
    for _ in 0..600 {
        let images: i64 = app
            .db
            .get()
            .unwrap()
            .query_row("SELECT count(*) FROM assets", (), |r| r.get(0))
            .unwrap();
        if images >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = novart(d, &["backup", d.join("b1").to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("backup written to"), "{}", out(&o));
    stop.store(true, Ordering::Relaxed);
    let written: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written >= 80);
    let manifest = std::fs::read_to_string(d.join("b1/BACKUP.txt")).unwrap();
    assert!(
        manifest.contains("integrity, foreign keys and ledger ok"),
        "{manifest}"
    );

    // Restore into a new data directory: the doctor passes there, the
    // ledger adds up, and every image of the copy is readable.
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let o = novart(t, &["restore", d.join("b1").to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let o = novart(t, &["doctor"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("everything adds up"), "{}", out(&o));
    let restored = novart::domain::Connection::sqlite(
        rusqlite::Connection::open(t.join("data/novart.db")).unwrap(),
    );
    let (wallets, ledger, tasks) = sums(&restored);
    assert_eq!(wallets, ledger, "the restored ledger reconciles");
    assert!(tasks > 0);
    let live = sums(&app.db.get().unwrap());
    assert!(tasks <= live.2, "the copy is a moment of the live database");
    let paths: Vec<String> = restored
        .prepare("SELECT path FROM assets")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!paths.is_empty());
    for p in paths {
        let restored_config = common::config_for(&t.join("data"));
        assert!(
            common::s3::stored_path(&restored_config, &p).is_file(),
            "{p} restored"
        );
    }
}

#[test]
fn restore_checks_the_backup_first_and_refuses_a_running_server() {
    if common::pg::chosen() {
        // novart backup copies a SQLite instance; PostgreSQL's backups are
        // pg_dump's (tests/postgres.rs).
        eprintln!("restore_checks_the_backup_first_and_refuses_a_running_server: SQLite only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = common::config_for(&d.join("data"));
    let (app, user) = common::app_with_user(&config, "r@example.com");
    novart::domain::wallet::grant(&mut app.db.get().unwrap(), user, 50, false, "t", "t").unwrap();
    let o = novart(d, &["backup", d.join("good").to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    // A backup directory that is not empty is refused.
    let o = novart(d, &["backup", d.join("good").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("is not empty"), "{}", out(&o));

    // A tampered copy (wallet changed behind the ledger) is not restored.
    std::fs::create_dir_all(d.join("bad")).unwrap();
    std::fs::copy(d.join("good/novart.db"), d.join("bad/novart.db")).unwrap();
    rusqlite::Connection::open(d.join("bad/novart.db"))
        .unwrap()
        .execute("UPDATE wallets SET balance = balance + 999", ())
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let o = novart(target.path(), &["restore", d.join("bad").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("ledger reconciliation"), "{}", out(&o));
    assert!(
        !target.path().join("data/novart.db").exists(),
        "nothing restored"
    );

    // While a server holds the data directory, restore refuses; the old
    // database is kept aside when it goes ahead.
    let lock = novart::domain::backup::lock_data_dir(&config).unwrap();
    let o = novart(d, &["restore", d.join("good").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("stop it first"), "{}", out(&o));
    drop(lock);
    drop(app);
    let o = novart(d, &["restore", d.join("good").to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let aside = std::fs::read_dir(d.join("data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("novart.db.before-restore-")
        });
    assert!(aside);
}

#[test]
fn scheduled_backups_are_made_when_due_and_rotated() {
    if common::pg::chosen() {
        // novart backup copies a SQLite instance; PostgreSQL's backups are
        // pg_dump's (tests/postgres.rs).
        eprintln!("scheduled_backups_are_made_when_due_and_rotated: SQLite only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(&dir.path().join("data"));
    config.backup.dir = dir.path().join("backups");
    config.backup.keep = 2;
    let (_app, _) = common::app_with_user(&config, "s@example.com");
    let age = |path: &std::path::Path| {
        // Pretend the backup was made two days ago.
        let f = std::fs::File::options()
            .write(true)
            .open(path.join("BACKUP.txt"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(2 * 86400))
            .unwrap();
    };
    let first = novart::domain::backup::scheduled(&config).unwrap().unwrap();
    assert!(
        novart::domain::backup::scheduled(&config)
            .unwrap()
            .is_none(),
        "not due again within every_hours"
    );
    age(&first);
    std::thread::sleep(Duration::from_millis(1100)); // a new name (seconds)
    let second = novart::domain::backup::scheduled(&config).unwrap().unwrap();
    age(&second);
    std::thread::sleep(Duration::from_millis(1100));
    let third = novart::domain::backup::scheduled(&config).unwrap().unwrap();
    assert!(!first.exists(), "the oldest is removed");
    assert!(second.exists() && third.exists());
    assert!(third.join("novart.db").is_file());
}

#[test]
fn doctor_reports_orphans_backlog_and_risky_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = common::config_for(&d.join("data"));
    let (app, user) = common::app_with_user(&config, "o@example.com");
    let o = novart(d, &["doctor"]);
    assert!(o.status.success(), "{}", out(&o));
    // Settings are warnings, not failures.
    assert!(out(&o).contains("warning configuration"), "{}", out(&o));
    assert!(out(&o).contains("backup.dir is empty"), "{}", out(&o));

    // A file nobody points to (a crash between writing and recording),
    // older than ten minutes.
    let stray = common::s3::stored_path(&config, "assets/1/img_stray.png");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    // A delivery an hour overdue: the webhook workers are not keeping up.
    app.db
        .get()
        .unwrap()
        .execute(
            "INSERT INTO webhook_deliveries (public_id, user_id, event, url, payload, state, next_attempt_at, created_at)
             VALUES ('msg_late', ?1, 'task.succeeded', 'https://example.com/h', '{}', 'pending', ?2, ?2)",
            novart::params![user, novart::domain::now() - 3600],
        )
        .unwrap();
    let o = novart(d, &["doctor"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("PROBLEM orphan files") && text.contains("img_stray.png has no row"),
        "{text}"
    );
    assert!(
        text.contains("PROBLEM webhook backlog") && text.contains("msg_late"),
        "{text}"
    );
    let o = novart(d, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let levels: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["level"].as_str().unwrap())
        .collect();
    assert!(levels.contains(&"warning") && levels.contains(&"problem"));
}
