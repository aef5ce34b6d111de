//! PostgreSQL as the database (`database.url`): its schema, its migrations
//! when several nodes start at once, and its connection errors. These need
//! a PostgreSQL server (TEST_DATABASE_URL); without one they say
//! loudly that they were skipped, and under CI they fail.

mod common;

use novart::config::Config;
use novart::domain::{schema as migrate, Db, Dialect};

/// A config on a fresh database of the test server, or `None` (skipped).
fn pg_config(test: &str) -> Option<(tempfile::TempDir, Config)> {
    common::pg::required(test)?;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.database.url = common::pg::database_for(dir.path());
    Some((dir, config))
}

#[test]
fn both_schema_files_have_the_same_migrations() {
    let lite = migrate::migrations_for(Dialect::Sqlite);
    let pg = migrate::migrations_for(Dialect::Postgres);
    assert_eq!(
        lite.len(),
        pg.len(),
        "schema.postgres.sql has every migration"
    );
    for (a, b) in lite.iter().zip(&pg) {
        assert_eq!(
            (a.version, &a.description),
            (b.version, &b.description),
            "migration {} has the same number and description in both files",
            a.version
        );
    }
}

#[test]
fn a_fresh_database_migrates_and_a_rerun_changes_nothing() {
    let Some((_dir, config)) = pg_config("a_fresh_database_migrates_and_a_rerun_changes_nothing")
    else {
        return;
    };
    let db = Db::open(&config).unwrap();
    let mut conn = db.get().unwrap();
    assert_eq!(conn.dialect(), Dialect::Postgres);
    assert_eq!(
        migrate::current_version(&conn).unwrap(),
        migrate::latest_version()
    );
    conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'kept')", ())
        .unwrap();
    assert!(migrate::migrate(&mut conn).unwrap().is_empty());
    let v: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'probe'", (), |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(v, "kept");
    // E-mail addresses compare without case, as SQLite's NOCASE did.
    let conn2 = Db::connect(&config).unwrap();
    conn2
        .execute(
            "INSERT INTO users (email, display_name, password_hash, created_at, password_changed_at, referral_code)
             VALUES ('Mixed@Example.com', 'M', 'x', 1, 1, 'R1')",
            (),
        )
        .unwrap();
    let n: i64 = conn2
        .query_row(
            "SELECT count(*) FROM users WHERE email = ?1",
            ["mixed@example.COM"],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let dup = conn2.execute(
        "INSERT INTO users (email, display_name, password_hash, created_at, password_changed_at, referral_code)
         VALUES ('MIXED@example.com', 'M', 'x', 1, 1, 'R2')",
        (),
    );
    assert!(
        dup.as_ref().is_err_and(|e| e.is_unique_violation()),
        "{dup:?}"
    );
}

#[test]
fn nodes_starting_together_migrate_once() {
    let Some((_dir, config)) = pg_config("nodes_starting_together_migrate_once") else {
        return;
    };
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (config, barrier) = (config.clone(), barrier.clone());
            std::thread::spawn(move || {
                let db = Db::open_postgres(&config.database.url, 2).unwrap();
                let mut conn = db.get().unwrap();
                barrier.wait();
                migrate::migrate(&mut conn).unwrap()
            })
        })
        .collect();
    let mut applied: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    applied.sort();
    let all: Vec<i64> = (1..=migrate::latest_version()).collect();
    assert_eq!(applied, all, "every migration ran exactly once");
}

#[test]
fn a_deadlock_between_row_writers_is_retried_not_shown() {
    let Some((_dir, config)) = pg_config("a_deadlock_between_row_writers_is_retried_not_shown")
    else {
        return;
    };
    let db = Db::open(&config).unwrap();
    db.get()
        .unwrap()
        .execute_batch("CREATE TABLE pair (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO pair VALUES (1, 0), (2, 0)")
        .unwrap();
    // Two writers lock the same two rows in opposite orders, both holding
    // their first row before asking for the second: PostgreSQL breaks the
    // deadlock by failing one of them, which runs again and succeeds.
    let both_hold = std::sync::Arc::new(std::sync::Barrier::new(2));
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = [(1, 2), (2, 1)]
        .into_iter()
        .map(|(first, second)| {
            let (db, both_hold, runs) = (db.clone(), both_hold.clone(), runs.clone());
            std::thread::spawn(move || {
                let conn = db.get().unwrap();
                let first_run = std::sync::atomic::AtomicBool::new(true);
                conn.in_row_transaction(|tx| {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tx.execute("UPDATE pair SET v = v + 1 WHERE id = ?1", [first])?;
                    if first_run.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        both_hold.wait();
                    }
                    tx.execute("UPDATE pair SET v = v + 1 WHERE id = ?1", [second])?;
                    Ok(())
                })
            })
        })
        .collect();
    for w in writers {
        w.join()
            .unwrap()
            .expect("the deadlock's loser is run again");
    }
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "exactly one of the two ran twice"
    );
    let total: i64 = db
        .get()
        .unwrap()
        .query_row("SELECT sum(v) FROM pair", (), |r| r.get(0))
        .unwrap();
    assert_eq!(total, 4, "each writer's two updates landed once");
}

#[test]
fn a_newer_database_is_refused() {
    let Some((_dir, config)) = pg_config("a_newer_database_is_refused") else {
        return;
    };
    let db = Db::open(&config).unwrap();
    db.get()
        .unwrap()
        .execute(
            "UPDATE novart_schema SET version = ?1",
            [migrate::latest_version() + 1],
        )
        .unwrap();
    drop(db);
    let err = Db::open(&config).err().expect("refused");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}

#[test]
fn a_server_without_tls_is_refused_when_the_url_requires_it() {
    let Some((_dir, mut config)) =
        pg_config("a_server_without_tls_is_refused_when_the_url_requires_it")
    else {
        return;
    };
    config.database.url.push_str("?sslmode=require");
    let err = Db::open(&config).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("database.url"), "{text}");
}

#[test]
fn a_wrong_url_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.database.url = "mysql://root@localhost/novart".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("database.url"), "{err}");
    config.database.url = "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=nope".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("database.url"), "{err}");
    assert!(!err.contains("hunter2"), "the password is not shown: {err}");
}

/// A sign-in form post from `remote` through `client` (a node).
fn sign_in_from(
    client: &rocket::local::blocking::Client,
    email: &str,
    password: &str,
    remote: &str,
) -> rocket::http::Status {
    let page = client.get("/login").dispatch().into_string().unwrap();
    client
        .post("/login")
        .remote(remote.parse().unwrap())
        .header(rocket::http::ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &common::csrf_in(&page)),
            ("email", email),
            ("password", password),
        ]))
        .dispatch()
        .status()
}

#[test]
fn guesses_spread_over_two_nodes_count_together() {
    if common::pg::required("guesses_spread_over_two_nodes_count_together").is_none() {
        return;
    }
    // Two nodes (two servers, each with its own memory) on one database.
    let t = common::TestApp::with(|c| {
        c.database.url = common::pg::database_for(&c.storage.data_dir);
    });
    t.signed_in_user("victim@example.com");
    let nodes = [t.other_browser(), t.other_browser()];
    let limit = t.config.limits.sign_in_failures_per_account_15min as usize;
    let mut statuses = Vec::new();
    for i in 0..limit + 4 {
        statuses.push(sign_in_from(
            &nodes[i % 2],
            "victim@example.com",
            "guess",
            &format!("198.51.100.{i}:1000"),
        ));
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == rocket::http::Status::TooManyRequests)
        .count();
    assert_eq!(
        refused, 4,
        "the limit of {limit} counts the guesses of both nodes: {statuses:?}"
    );
    // The right password waits too, on either node.
    assert_eq!(
        sign_in_from(
            &nodes[1],
            "victim@example.com",
            common::PASSWORD,
            "192.0.2.7:1"
        ),
        rocket::http::Status::TooManyRequests
    );
}

/// The problems `novart doctor` would report (warnings left out).
fn problems(config: &Config) -> Vec<String> {
    let conn = Db::connect(config).unwrap();
    novart::domain::doctor::run(&conn, config)
        .unwrap()
        .into_iter()
        .filter(|c| !c.ok && c.level == "problem")
        .map(|c| format!("{}: {:?}", c.name, c.details))
        .collect()
}

/// A verified creator with credits, an API key, a session, and two finished
/// tasks (images stored); returns (user, key, session token, balance).
fn populate(config: &Config) -> (novart::model::UserId, String, String, i64) {
    let app = novart::App::new(config.clone()).unwrap();
    let (user, key) = common::user_with_key(&app, "mover@example.com", 40);
    let mut conn = app.db.get().unwrap();
    for i in 0..2 {
        let input = novart::domain::tasks::NewTaskInput {
            prompt: format!("a harbour at dawn {i}"),
            model: "novart-builtin".into(),
            size: Some("512x512".into()),
            ..Default::default()
        };
        novart::domain::tasks::submit(
            &mut conn,
            &app.engine.config,
            &app.engine.catalog,
            user,
            &input,
        )
        .unwrap();
    }
    while app.engine.process_one("mover").unwrap() {}
    let session = novart::domain::accounts::open_session(
        &mut conn,
        &app.config,
        user,
        &novart::model::Client::default(),
    )
    .unwrap();
    let w = novart::domain::wallet::get(&conn, user).unwrap();
    (user, key, session.token, w.total())
}

#[test]
fn db_copy_moves_an_instance_and_the_copy_serves_it() {
    let name = "db_copy_moves_an_instance_and_the_copy_serves_it";
    if common::pg::required(name).is_none() {
        return;
    }
    let Some(s3) = common::s3::required(name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Config::for_data_dir(&dir.path().join("data"));
    common::s3::use_s3(&mut lite, s3);
    let (user, key, token, balance) = populate(&lite);
    let images = {
        let conn = Db::connect(&lite).unwrap();
        conn.query_row(
            "SELECT count(*) FROM assets WHERE kind = 'result'",
            (),
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert!(images >= 2);

    let target = common::pg::database_for(&dir.path().join("target"));
    let mut env = common::s3::bucket_env(&lite);
    env.push(("NOVART_STORAGE__BACKEND".into(), "s3".into()));
    let copy = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
            .args(["db", "copy", "--to", url])
            .current_dir(dir.path())
            .env_remove("NOVART_CONFIG")
            .env("NOVART_STORAGE__DATA_DIR", dir.path().join("data"))
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    // Refused while a server holds the SQLite database.
    {
        let _held = novart::domain::backup::lock_data_dir(&lite).unwrap();
        let o = copy(&target);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("stop it first"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = copy(&target);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains("every wallet equals its ledger"), "{said}");
    // A second copy into the same (now full) database is refused.
    let o = copy(&target);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));

    // The moved instance: same money, tasks and images; the key and the
    // session still work; doctor is clean; new rows get new ids.
    let mut moved = lite.clone();
    moved.database.url = target;
    let app = novart::App::new(moved.clone()).unwrap();
    let conn = app.db.get().unwrap();
    assert_eq!(
        novart::domain::wallet::get(&conn, user).unwrap().total(),
        balance
    );
    let stored: Vec<novart::model::Asset> =
        novart::domain::assets::library(&conn, user, &Default::default(), None, 100)
            .unwrap()
            .0
            .into_iter()
            .map(|item| item.asset)
            .collect();
    assert_eq!(stored.len() as i64, images);
    for a in &stored {
        let bytes = novart::domain::assets::read_image(&moved, a, false).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "an image from the bucket");
    }
    drop(conn);
    assert!(problems(&moved).is_empty(), "{:?}", problems(&moved));
    let client =
        rocket::local::blocking::Client::tracked(novart::build_rocket(moved.clone()).unwrap())
            .unwrap();
    let r = client
        .get("/api/v1/account")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {key}"),
        ))
        .dispatch();
    assert_eq!(r.status(), rocket::http::Status::Ok);
    let r = client
        .get("/studio")
        .cookie(rocket::http::Cookie::new("nova_art_session", token))
        .dispatch();
    assert_eq!(r.status(), rocket::http::Status::Ok);
    assert!(r.into_string().unwrap().contains("harbour at dawn"));
    let (other, _) = common::user_with_key(&app, "newcomer@example.com", 0);
    assert!(other.0 > user.0, "ids continue after the copied ones");
}

/// The PostgreSQL tools' directory (Debian's layout), if installed.
fn pg_bin(tool: &str) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(tool))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

#[test]
fn a_pg_dump_restores_into_a_new_database_and_novart_backup_says_how() {
    let name = "a_pg_dump_restores_into_a_new_database_and_novart_backup_says_how";
    let Some((dir, config)) = pg_config(name) else {
        return;
    };
    let (Some(dump), Some(restore)) = (pg_bin("pg_dump"), pg_bin("pg_restore")) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but pg_dump is not installed"
        );
        eprintln!("\n*** SKIPPED {name}: pg_dump is not installed ***\n");
        return;
    };
    let (user, _, _, balance) = populate(&config);
    // novart backup names the tool to use instead.
    let Err(err) = novart::domain::backup::create(&config, &dir.path().join("bk")) else {
        panic!("novart backup is refused on PostgreSQL");
    };
    assert!(err.to_string().contains("pg_dump"), "{err}");

    let file = dir.path().join("novart.dump");
    let o = std::process::Command::new(dump)
        .args(["-Fc", "-f"])
        .arg(&file)
        .arg(&config.database.url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut restored = config.clone();
    restored.database.url = common::pg::database_for(&dir.path().join("restored"));
    let o = std::process::Command::new(restore)
        .args(["--no-owner", "-d"])
        .arg(&restored.database.url)
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app = novart::App::new(restored.clone()).unwrap();
    let conn = app.db.get().unwrap();
    assert_eq!(
        novart::domain::wallet::get(&conn, user).unwrap().total(),
        balance
    );
    drop(conn);
    assert!(problems(&restored).is_empty(), "{:?}", problems(&restored));
}
