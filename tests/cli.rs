//! The admin CLI, run as the built binary against a temporary data directory.

mod common;

use common::{novart, novart_with_stdin, TestApp, PASSWORD};
use rocket::http::{ContentType, Status};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sign_in(data: &std::path::Path, email: &str, password: &str) -> Status {
    let (client, _) = TestApp::at(data);
    let page = client.get("/login").dispatch().into_string().unwrap();
    let status = client
        .post("/login")
        .header(ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &common::csrf_in(&page)),
            ("email", email),
            ("password", password),
        ]))
        .dispatch()
        .status();
    status
}

#[test]
fn user_create_list_show_verify_set_role() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let o = novart(
        d,
        &[
            "user",
            "create",
            "--email",
            "admin@example.com",
            "--admin",
            "--verified",
            "--name",
            "Root",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let password = out.lines().last().unwrap().trim().to_string();
    assert!(
        password.len() >= 16,
        "generated password on the last line: {out}"
    );
    assert_eq!(
        sign_in(&d.join("data"), "admin@example.com", &password),
        Status::SeeOther
    );

    let o = novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "bea@example.com",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(PASSWORD));

    // Not verified yet: sign-in is refused until `user verify`.
    assert_eq!(
        sign_in(&d.join("data"), "bea@example.com", PASSWORD),
        Status::Forbidden
    );
    let o = novart(d, &["user", "verify", "bea@example.com"]);
    assert!(o.status.success());
    assert_eq!(
        sign_in(&d.join("data"), "bea@example.com", PASSWORD),
        Status::SeeOther
    );

    let o = novart(d, &["user", "list", "--json"]);
    assert!(o.status.success());
    let list: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["email"], "admin@example.com");
    assert_eq!(list[0]["role"], "admin");
    assert_eq!(list[0]["display_name"], "Root");
    assert_eq!(list[1]["role"], "user");
    assert_eq!(list[1]["verified"], true);
    assert!(list[0].get("password_hash").is_none());

    let o = novart(d, &["user", "list"]);
    let table = stdout(&o);
    assert!(
        table.contains("admin@example.com") && table.contains("bea@example.com"),
        "{table}"
    );

    let o = novart(d, &["user", "set-role", "bea@example.com", "admin"]);
    assert!(o.status.success());
    let o = novart(d, &["user", "show", "BEA@example.com", "--json"]);
    let show: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(show["role"], "admin");
    assert!(show["last_sign_in_at"].is_i64());
}

#[test]
fn failures_have_one_line_and_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "dup@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(o.status.success());
    // Duplicate: a failed operation (1).
    let o = novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "dup@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"));
    // Unknown account (1).
    for args in [
        vec!["user", "show", "ghost@example.com"],
        vec!["user", "verify", "ghost@example.com"],
        vec!["user", "set-role", "ghost@example.com", "admin"],
        vec!["user", "reset-password", "ghost@example.com"],
    ] {
        let o = novart(d, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&o).contains("no account with e-mail ghost@example.com"),
            "{}",
            stderr(&o)
        );
    }
    // Bad input and bad usage (2).
    let o = novart_with_stdin(
        d,
        &["user", "create", "--email", "nope", "--password-stdin"],
        Some(PASSWORD),
    );
    assert_eq!(o.status.code(), Some(2));
    let o = novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "weak@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 8 characters"));
    let o = novart(d, &["user", "set-role", "dup@example.com", "superuser"]);
    assert_eq!(o.status.code(), Some(2));
    let o = novart(d, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn reset_password_generates_reads_or_mails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "cal@example.com",
            "--password-stdin",
            "--verified",
        ],
        Some(PASSWORD),
    );

    let o = novart(d, &["user", "reset-password", "cal@example.com"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let generated = stdout(&o).lines().last().unwrap().trim().to_string();
    assert_eq!(
        sign_in(&d.join("data"), "cal@example.com", PASSWORD),
        Status::Unauthorized
    );
    assert_eq!(
        sign_in(&d.join("data"), "cal@example.com", &generated),
        Status::SeeOther
    );

    let o = novart_with_stdin(
        d,
        &[
            "user",
            "reset-password",
            "cal@example.com",
            "--password-stdin",
        ],
        Some("chosen by the admin\n"),
    );
    assert!(o.status.success());
    assert_eq!(
        sign_in(&d.join("data"), "cal@example.com", "chosen by the admin"),
        Status::SeeOther
    );

    let o = novart(
        d,
        &["user", "reset-password", "cal@example.com", "--send-link"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mails = common::mails_to(&d.join("data/outbox"), "cal@example.com");
    assert!(mails.iter().any(|m| m.contains("/reset?token=")));
}

#[test]
fn init_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site = d.join("site");
    let o = novart(d, &["init", "--dir", site.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let toml = std::fs::read_to_string(site.join("novart.toml")).unwrap();
    assert!(toml.contains(&format!(
        "data_dir = \"{}\"",
        site.canonicalize().unwrap().join("data").display()
    )));
    assert!(site.join("data/novart.db").exists());

    // Refuses to overwrite without --force.
    let o = novart(d, &["init", "--dir", site.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = novart(d, &["init", "--dir", site.to_str().unwrap(), "--force"]);
    assert!(o.status.success());

    // The written file is a valid config.
    let cfg = site.join("novart.toml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
        .args(["--config", cfg.to_str().unwrap(), "migrate"])
        .env_remove("NOVART_STORAGE__DATA_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));

    let o = novart(d, &["migrate"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("applied"), "{}", stdout(&o));
    let o = novart(d, &["migrate"]);
    assert!(stdout(&o).contains("up to date"));
}

#[test]
fn bad_config_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("novart.toml"), "[server]\nport = \"high\"\n").unwrap();
    for args in [vec!["serve"], vec![], vec!["migrate"]] {
        let o = novart(d, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("server.port"), "{err}");
    }
    std::fs::write(
        d.join("novart.toml"),
        "[registration]\nopen = true\nverify = false\n",
    )
    .unwrap();
    let o = novart(d, &["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("registration.verify"), "{}", stderr(&o));
}

#[test]
fn serve_answers_and_shuts_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
        .current_dir(dir.path())
        .env_remove("NOVART_CONFIG")
        .env("NOVART_SERVER__PORT", port.to_string())
        .env("NOVART_STORAGE__DATA_DIR", dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut health = None;
    for _ in 0..200 {
        if let Ok(mut r) = ureq::get(&url).call() {
            health = Some(r.body_mut().read_json::<serde_json::Value>().unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let health = health.expect("the server answered /healthz");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["db"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    for _ in 0..400 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the server did not stop after SIGTERM");
    };
    assert!(status.success(), "exit status {status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("is running at"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn tasks_list_cancel_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "t@example.com",
            "--password-stdin",
            "--verified",
        ],
        Some(PASSWORD),
    );
    let config = common::config_for(&d.join("data"));
    let app = novart::App::new(config).unwrap();
    let mut conn = app.db.get().unwrap();
    let user = novart::domain::accounts::find(&conn, "t@example.com")
        .unwrap()
        .id;
    let input = novart::domain::tasks::NewTaskInput {
        prompt: "a quiet lake".into(),
        model: "novart-builtin".into(),
        ..Default::default()
    };
    let t = novart::domain::tasks::submit(
        &mut conn,
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
    .unwrap();
    drop(conn);

    let o = novart(d, &["tasks", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["id"], t.public_id.as_str());
    assert_eq!(v[0]["status"], "queued");
    assert_eq!(v[0]["user"], "t@example.com");
    let o = novart(d, &["tasks", "list", "--status", "queued"]);
    assert!(stdout(&o).contains("a quiet lake"));
    let o = novart(d, &["tasks", "list", "--status", "sleeping"]);
    assert_eq!(o.status.code(), Some(2));

    let o = novart(d, &["tasks", "cancel", &t.public_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("canceled"));
    let o = novart(d, &["tasks", "cancel", &t.public_id]);
    assert!(o.status.success(), "canceling twice is harmless");
    let o = novart(d, &["tasks", "cancel", "tsk_nope"]);
    assert_eq!(o.status.code(), Some(1));

    let o = novart(d, &["cleanup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("deleted 0 result image(s)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn credits_grant_deduct_show() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "c@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let o = novart(
        d,
        &[
            "credits",
            "grant",
            "c@example.com",
            "50",
            "--reason",
            "paid by bank transfer #12",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("balance 50 + bonus 20 = 70"),
        "{}",
        stdout(&o)
    );
    let o = novart(
        d,
        &[
            "credits",
            "grant",
            "c@example.com",
            "5",
            "--bonus",
            "--reason",
            "sorry for the outage",
        ],
    );
    assert!(
        stdout(&o).contains("balance 50 + bonus 25 = 75"),
        "{}",
        stdout(&o)
    );
    let o = novart(
        d,
        &[
            "credits",
            "deduct",
            "c@example.com",
            "60",
            "--reason",
            "chargeback",
        ],
    );
    assert!(
        stdout(&o).contains("balance 0 + bonus 15 = 15"),
        "paid first: {}",
        stdout(&o)
    );
    let o = novart(
        d,
        &[
            "credits",
            "deduct",
            "c@example.com",
            "16",
            "--reason",
            "too much",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds 15 credits"), "{}", stderr(&o));
    let o = novart(
        d,
        &["credits", "grant", "c@example.com", "0", "--reason", "x"],
    );
    assert_eq!(o.status.code(), Some(2));
    let o = novart(d, &["credits", "grant", "c@example.com", "5"]);
    assert_eq!(o.status.code(), Some(2), "--reason is required");
    let o = novart(d, &["credits", "show", "c@example.com", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["balance"].as_i64(), v["bonus"].as_i64()),
        (Some(0), Some(15))
    );
    let ledger = v["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 4);
    assert_eq!(ledger[0]["kind"], "admin_deduct");
    assert_eq!(ledger[0]["reason"], "chargeback");
    assert!(ledger[0]["actor"]
        .as_str()
        .unwrap()
        .starts_with("admin:cli:"));
}

#[test]
fn doctor_passes_a_healthy_database_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = common::config_for(&d.join("data"));
    let (app, user) = common::app_with_user(&config, "doc@example.com");
    let input = novart::domain::tasks::NewTaskInput {
        prompt: "checkup".into(),
        model: "novart-builtin".into(),
        ..Default::default()
    };
    novart::domain::tasks::submit(
        &mut app.db.get().unwrap(),
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
    .unwrap();
    assert!(app.engine.process_one("w").unwrap());

    let o = novart(d, &["doctor"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("everything adds up"));

    // A wallet changed behind the ledger's back, and a stored image lost.
    let conn = app.db.get().unwrap();
    conn.execute("UPDATE wallets SET balance = balance + 100", ())
        .unwrap();
    let path: String = conn
        .query_row("SELECT path FROM assets LIMIT 1", (), |r| r.get(0))
        .unwrap();
    std::fs::remove_file(common::s3::stored_path(&config, &path)).unwrap();
    // The ledger itself cannot be edited.
    assert!(conn
        .execute("UPDATE ledger SET delta_bonus = 1000", ())
        .is_err());

    let o = novart(d, &["doctor"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("PROBLEM ledger reconciliation"), "{out}");
    assert!(out.contains("wallet 100 paid"), "{out}");
    assert!(out.contains("PROBLEM stored files"), "{out}");
    let o = novart(d, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "k@example.com",
            "--password-stdin",
            "--verified",
        ],
        Some(PASSWORD),
    );
    let o = novart(
        d,
        &[
            "keys",
            "create",
            "k@example.com",
            "--name",
            "ci bot",
            "--rpm",
            "120",
            "--concurrency",
            "2",
            "--daily-cap",
            "9",
            "--models",
            "novart-builtin",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let secret = out.lines().last().unwrap().to_string();
    assert!(novart::domain::apikeys::parse(&secret).is_some(), "{out}");
    let prefix = novart::domain::apikeys::parse(&secret).unwrap().to_string();

    // The key works against the server.
    let (client, _) = TestApp::at(&d.join("data"));
    let r = client
        .get("/api/v1/account")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {secret}"),
        ))
        .dispatch();
    assert_eq!(r.status(), Status::Ok);
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["limits"]["rpm"], 120);
    assert_eq!(v["limits"]["daily_cap"], 9);

    let o = novart(d, &["keys", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["prefix"], prefix.as_str());
    assert_eq!(v[0]["email"], "k@example.com");
    assert_eq!(v[0]["status"], "active");
    assert!(!stdout(&o).contains(secret.rsplit('_').next().unwrap()));
    let o = novart(d, &["keys", "list", "k@example.com"]);
    assert!(stdout(&o).contains("ci bot"), "{}", stdout(&o));

    let o = novart(d, &["keys", "revoke", &prefix]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = client
        .get("/api/v1/account")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {secret}"),
        ))
        .dispatch();
    assert_eq!(r.status(), Status::Unauthorized);
    let o = novart(d, &["keys", "revoke", &prefix]);
    assert_eq!(o.status.code(), Some(1));
    let o = novart(d, &["keys", "create", "nobody@example.com", "--name", "x"]);
    assert_eq!(o.status.code(), Some(1));
    let o = novart(
        d,
        &[
            "keys",
            "create",
            "k@example.com",
            "--name",
            "x",
            "--rpm",
            "0",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn limits_list_approve_deny() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "l@example.com",
            "--password-stdin",
            "--verified",
        ],
        Some(PASSWORD),
    );
    let o = novart(d, &["keys", "create", "l@example.com", "--name", "a"]);
    let prefix_a = novart::domain::apikeys::parse(stdout(&o).lines().last().unwrap())
        .unwrap()
        .to_string();
    let o = novart(d, &["keys", "create", "l@example.com", "--name", "b"]);
    let prefix_b = novart::domain::apikeys::parse(stdout(&o).lines().last().unwrap())
        .unwrap()
        .to_string();
    // The creator asks (as the web form does).
    let (app, _) = TestApp::at(&d.join("data"));
    let a = app.rocket().state::<novart::App>().unwrap();
    let user = novart::domain::accounts::find(&a.db.get().unwrap(), "l@example.com")
        .unwrap()
        .id;
    for p in [&prefix_a, &prefix_b] {
        let ask = novart::domain::limits::Ask {
            rpm: Some(500),
            concurrency: None,
            daily_cap: Some(5000),
            reason: "nightly catalogue renders".into(),
        };
        novart::domain::limits::request(&mut a.db.get().unwrap(), user, p, &ask).unwrap();
    }
    let o = novart(d, &["limits", "list", "--pending", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (id_b, id_a) = (v[0]["id"].as_i64().unwrap(), v[1]["id"].as_i64().unwrap());
    let o = novart(d, &["limits", "list"]);
    assert!(stdout(&o).contains("60→500"), "{}", stdout(&o));

    let o = novart(
        d,
        &[
            "limits",
            "approve",
            &id_a.to_string(),
            "--rpm",
            "300",
            "--reason",
            "300 is plenty",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("300 rpm"));
    let o = novart(
        d,
        &[
            "limits",
            "deny",
            &id_b.to_string(),
            "--reason",
            "not this month",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = novart(
        d,
        &["limits", "deny", &id_b.to_string(), "--reason", "again"],
    );
    assert_eq!(o.status.code(), Some(1), "already decided");
    let o = novart(d, &["limits", "list", "--pending", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]");

    let o = novart(d, &["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let key_a = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix_a.as_str())
        .unwrap();
    assert_eq!(key_a["rpm"], 300);
    assert_eq!(key_a["daily_cap"], 5000);
    let key_b = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix_b.as_str())
        .unwrap();
    assert_eq!(key_b["rpm"], 60);
    let msgs: Vec<_> = novart::domain::messages::list(&a.db.get().unwrap(), user)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "limit_decision")
        .collect();
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().any(|m| m.body.contains("not this month")));
    assert!(msgs.iter().any(|m| m.body.contains("300 is plenty")));
}

#[test]
fn audit_records_admin_actions_and_cannot_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    ok(novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            "a@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    ));
    ok(novart(d, &["user", "verify", "a@example.com"]));
    ok(novart(d, &["user", "set-role", "a@example.com", "admin"]));
    ok(novart(
        d,
        &[
            "credits",
            "grant",
            "a@example.com",
            "40",
            "--reason",
            "invoice 77",
        ],
    ));
    ok(novart(
        d,
        &[
            "credits",
            "deduct",
            "a@example.com",
            "5",
            "--reason",
            "chargeback",
        ],
    ));
    ok(novart(
        d,
        &[
            "codes", "create", "--amount", "5", "--count", "3", "--batch", "promo",
        ],
    ));
    ok(novart(d, &["codes", "revoke", "--batch", "promo"]));
    let o = ok(novart(
        d,
        &["keys", "create", "a@example.com", "--name", "bot"],
    ));
    let prefix = novart::domain::apikeys::parse(stdout(&o).lines().last().unwrap())
        .unwrap()
        .to_string();
    ok(novart(d, &["keys", "revoke", &prefix]));
    // A failed command records nothing.
    assert_eq!(
        novart(
            d,
            &[
                "credits",
                "grant",
                "nobody@example.com",
                "1",
                "--reason",
                "x"
            ]
        )
        .status
        .code(),
        Some(1)
    );

    let o = ok(novart(d, &["audit", "--json", "--limit", "100"]));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let actions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.verify",
            "user.set_role",
            "credits.grant",
            "credits.deduct",
            "codes.create",
            "codes.revoke",
            "keys.create",
            "keys.revoke"
        ]
    );
    let by = |a: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == a)
            .unwrap()
            .clone()
    };
    let grant = by("credits.grant");
    assert_eq!(grant["target"], "a@example.com");
    assert_eq!(grant["reason"], "invoice 77");
    assert_eq!(grant["before"]["balance"], 0);
    assert_eq!(grant["after"]["balance"], 40);
    assert!(grant["actor"].as_str().unwrap().starts_with("admin:cli:"));
    assert_eq!(by("user.set_role")["before"]["role"], "user");
    assert_eq!(by("user.set_role")["after"]["role"], "admin");
    assert_eq!(by("codes.revoke")["after"]["revoked"], 3);
    let o = ok(novart(d, &["audit", "--limit", "2"]));
    let text = stdout(&o);
    assert!(
        text.contains("keys.revoke") && text.contains("keys.create"),
        "{text}"
    );
    assert!(!text.contains("credits.grant"), "--limit");

    let conn = common::db_at(&d.join("data"));
    let count = || -> i64 {
        conn.query_row("SELECT count(*) FROM audit_log", (), |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(), 9);
    let e = conn
        .execute("UPDATE audit_log SET reason = 'nothing to see'", ())
        .unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
    let e = conn.execute("DELETE FROM audit_log", ()).unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
    assert_eq!(count(), 9);
}

#[test]
fn announce_to_everyone_or_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for e in ["one@example.com", "two@example.com"] {
        novart_with_stdin(
            d,
            &[
                "user",
                "create",
                "--email",
                e,
                "--password-stdin",
                "--verified",
            ],
            Some(PASSWORD),
        );
    }
    let o = novart(
        d,
        &[
            "announce",
            "--title",
            "New models",
            "--body",
            "Try the new ones.",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sent to 2 account(s)"));
    let o = novart(
        d,
        &[
            "announce",
            "--title",
            "Hi",
            "--body",
            "Only you.",
            "--to",
            "two@example.com",
        ],
    );
    assert!(stdout(&o).contains("sent to 1 account(s)"));
    let o = novart(
        d,
        &[
            "announce",
            "--title",
            "Hi",
            "--body",
            "x",
            "--to",
            "nobody@example.com",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let o = novart(d, &["announce", "--title", "", "--body", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let conn = common::db_at(&d.join("data"));
    let per_user: Vec<i64> = conn
        .prepare("SELECT count(m.id) FROM users u LEFT JOIN messages m ON m.user_id = u.id GROUP BY u.id ORDER BY u.email")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per_user, vec![1, 2]);
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'messages.announce'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 2);
}

#[test]
fn a_port_in_use_names_the_address_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("NOVART_CONFIG")
        .env("NOVART_SERVER__PORT", &port)
        .env("NOVART_STORAGE__DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(
        err.contains("server.port") && err.contains("NOVART_SERVER__PORT"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Every option and argument of every command says what it is in --help.
#[test]
fn every_argument_has_help() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&novart::cli::Cli::command(), "novart", &mut missing);
    assert!(missing.is_empty(), "no help for: {missing:#?}");
}

#[test]
fn stats_on_an_empty_instance_says_none_rather_than_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = novart(dir.path(), &["stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let kept = text
        .lines()
        .find(|l| l.starts_with("tasks kept"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        kept.split_whitespace().collect::<Vec<_>>(),
        ["tasks", "kept", "none"]
    );
    // The node that answered: the host name unless server.node_id says.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["node", host.trim()]),
        "{text}"
    );
    std::fs::write(
        dir.path().join("novart.toml"),
        "[server]\nnode_id = \"eu-1\"\n",
    )
    .unwrap();
    let o = novart(dir.path(), &["stats", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["node"], "eu-1");
}

#[test]
fn init_takes_the_operator_and_doctor_reminds_when_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let named = d.join("named");
    let o = novart(
        d,
        &[
            "init",
            "--dir",
            named.to_str().unwrap(),
            "--operator",
            "Lumen \"Art\" Collective",
            "--contact",
            "hello@lumen.example",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = named.join("novart.toml");
    let config = novart::Config::load(Some(&cfg)).unwrap();
    assert_eq!(config.legal.operator_name, "Lumen \"Art\" Collective");
    assert_eq!(config.legal.contact, "hello@lumen.example");
    assert!(
        !stdout(&o).contains("legal.operator_name"),
        "{}",
        stdout(&o)
    );
    let o = novart(d, &["--config", cfg.to_str().unwrap(), "doctor"]);
    assert!(!stdout(&o).contains("legal."), "{}", stdout(&o));

    // Without them (no terminal to ask on): a reminder, and doctor warns.
    let bare = d.join("bare");
    let o = novart(d, &["init", "--dir", bare.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("legal.operator_name and legal.contact"),
        "{}",
        stdout(&o)
    );
    let o = novart(
        d,
        &[
            "--config",
            bare.join("novart.toml").to_str().unwrap(),
            "doctor",
        ],
    );
    assert!(o.status.success(), "warnings do not fail doctor");
    let out = stdout(&o);
    assert!(
        out.contains("legal.operator_name is still the default"),
        "{out}"
    );
    assert!(out.contains("legal.contact is empty"), "{out}");
}

#[test]
fn doctor_warns_about_image_services_it_cannot_reach_and_plain_http_with_open_registration() {
    use novart::config::catalog::{ProviderConfig, ProviderKind};
    let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listening.local_addr().unwrap().port();
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = novart::Config::for_data_dir(std::path::Path::new("/tmp/unused"));
    config.providers = vec![
        ProviderConfig::new(
            "gpu-up",
            ProviderKind::Automatic1111,
            &format!("http://127.0.0.1:{up}"),
        ),
        ProviderConfig::new(
            "gpu-down",
            ProviderKind::Comfyui,
            &format!("http://127.0.0.1:{down}/"),
        ),
    ];
    let found =
        novart::domain::doctor::unreachable_providers(&config, std::time::Duration::from_secs(2));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("gpu-down") && found[0].contains(&down.to_string()),
        "{found:?}"
    );

    config.server.public_url = "http://studio.example.com".into();
    config.registration.open = true;
    let w = novart::domain::doctor::config_warnings(&config);
    assert!(w.iter().any(|w| w.contains("unencrypted")), "{w:?}");
    config.server.public_url = "https://studio.example.com".into();
    let w = novart::domain::doctor::config_warnings(&config);
    assert!(!w.iter().any(|w| w.contains("unencrypted")), "{w:?}");
}

/// `novart stats | head -1` and friends: a reader that goes away ends the
/// command quietly, as with any Unix tool, never with a panic.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    assert!(novart(dir.path(), &["migrate"]).status.success());
    for args in [&["stats"][..], &["user", "list"], &["--help"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_novart"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("NOVART_CONFIG")
            .env("NOVART_STORAGE__DATA_DIR", dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(o.status.code(), Some(101), "{args:?}: {err}");
    }
}
