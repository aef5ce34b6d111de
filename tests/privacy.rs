//! Data rights: "Download my data" gives every listed part of the account
//! and nothing of anyone else; large exports are built in the background,
//! announced by a message, served only to the owner, and expire; the CLI
//! writes the same file.

mod common;

use std::io::Read;

use common::{TestApp, PASSWORD};
use novart::domain::tasks::NewTaskInput;
use rocket::http::{ContentType, Status};
use serde_json::Value;

fn state(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn unzip(bytes: &[u8]) -> (Value, Vec<String>) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP");
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut text = String::new();
    zip.by_name("data.json")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (serde_json::from_str(&text).unwrap(), names)
}

fn queue_and_run(app: &novart::App, user: novart::model::UserId, prompt: &str) {
    let mut conn = app.db.get().unwrap();
    let input = NewTaskInput {
        prompt: prompt.into(),
        model: app.engine.catalog.models[0].id.clone(),
        n: Some(2),
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
    while app.engine.process_one("test").unwrap() {}
}

#[test]
fn the_export_has_every_part_and_nothing_of_anyone_else() {
    let t = TestApp::with(|c| c.queue.workers = 0);
    let app = state(&t);
    t.signed_in_user("me@example.com");
    let me = novart::domain::accounts::find(&app.db.get().unwrap(), "me@example.com")
        .unwrap()
        .id;
    let (other, _) = common::user_with_key(app, "other@example.com", 10);
    let (friend, _) = common::user_with_key(app, "friend@example.com", 0);
    t.db()
        .execute(
            "UPDATE users SET referred_by = ?1 WHERE id = ?2",
            [me.0, friend.0],
        )
        .unwrap();
    queue_and_run(app, me, "my own lighthouse at dusk");
    queue_and_run(app, other, "someone else's secret garden");
    {
        let mut conn = app.db.get().unwrap();
        novart::domain::apikeys::create(
            &mut conn,
            &app.config,
            &app.engine.catalog,
            me,
            novart::domain::apikeys::KeySpec::defaults(&app.config, "my script"),
            novart::domain::apikeys::Authority::Creator,
        )
        .unwrap();
        novart::domain::messages::announce(&mut conn, "Hello", "Welcome aboard", None).unwrap();
        let blocked = NewTaskInput {
            prompt: "a passport".into(),
            model: app.engine.catalog.models[0].id.clone(),
            ..Default::default()
        };
        assert!(novart::domain::tasks::submit(
            &mut conn,
            &app.engine.config,
            &app.engine.catalog,
            me,
            &blocked
        )
        .is_err());
    }

    let csrf = t.csrf("/settings");
    assert!(t.page("/settings").contains("Download my data"));
    let r = t.post_raw("/settings/export", &[("csrf_token", &csrf)]);
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(r.content_type(), Some(ContentType::ZIP));
    assert!(r
        .headers()
        .get_one("Content-Disposition")
        .unwrap()
        .starts_with("attachment; filename=\"novart-export-"));
    let bytes = r.into_bytes().unwrap();
    let (doc, names) = unzip(&bytes);
    for part in novart::domain::export::part_names() {
        assert!(doc.get(part).is_some(), "part {part} missing");
    }
    assert_eq!(doc["account"]["email"], "me@example.com");
    assert_eq!(doc["tasks"][0]["prompt"], "my own lighthouse at dusk");
    assert_eq!(
        doc["tasks"].as_array().unwrap().len(),
        1,
        "the blocked one made no task"
    );
    assert_eq!(doc["assets"].as_array().unwrap().len(), 2);
    assert!(
        doc["ledger"].as_array().unwrap().len() >= 2,
        "bonus and charge"
    );
    assert_eq!(doc["referrals"].as_array().unwrap().len(), 1);
    assert!(doc["api_keys"][0]["prefix"].is_string());
    assert_eq!(
        doc["blocked_attempts"][0]["rule"],
        "builtin:identity_documents:passport"
    );
    assert!(doc["messages"].as_array().unwrap().len() >= 2);
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        names.iter().filter(|n| n.starts_with("images/")).count(),
        2,
        "{names:?}"
    );
    let text = serde_json::to_string(&doc).unwrap();
    for foreign in ["other@example.com", "friend@example.com", "secret garden"] {
        assert!(!text.contains(foreign), "{foreign} leaked into the export");
    }
    let raw = String::from_utf8_lossy(&bytes);
    let secrets: Vec<String> = t
        .db()
        .prepare("SELECT password_hash FROM users UNION ALL SELECT key_hash FROM api_keys UNION ALL SELECT token_hash FROM sessions")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for s in secrets {
        assert!(!raw.contains(&s), "a secret digest is in the export");
    }

    // The CLI writes the same parts.
    let out = t.dir.path().join("me.zip");
    let cfg_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg_dir.path().join("novart.toml"),
        format!("[storage]\ndata_dir = {:?}\n", t.config.storage.data_dir),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
        .args(["export-user", "me@example.com", "--out"])
        .arg(&out)
        .current_dir(cfg_dir.path())
        .env_remove("NOVART_CONFIG")
        .envs(common::s3::env_for(&t.config.storage.data_dir))
        .envs(common::pg::env_for(&t.config.storage.data_dir))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (cli_doc, cli_names) = unzip(&std::fs::read(&out).unwrap());
    assert_eq!(cli_doc["account"], doc["account"]);
    assert_eq!(cli_names.len(), names.len());
}

#[test]
fn large_exports_are_built_in_the_background_for_the_owner_only() {
    // With encryption at rest: the prepared file is sealed on disk and
    // decrypted as it is streamed to its owner.
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        c.storage.encrypt_assets = true;
        c.storage.encryption_key = "q2XJm3vD3bC8e1p0Zr8l3mQ9t1Yw6Vb2Nn4Hc5Kx7s0=".into();
    });
    let app = state(&t);
    t.signed_in_user("big@example.com");
    let me = novart::domain::accounts::find(&app.db.get().unwrap(), "big@example.com")
        .unwrap()
        .id;
    novart::domain::wallet::grant(
        &mut app.db.get().unwrap(),
        me,
        500,
        false,
        "test",
        "credits",
    )
    .unwrap();
    // More stored files than a direct download carries.
    for i in 0..novart::domain::export::DIRECT_MAX_FILES / 2 + 1 {
        queue_and_run(app, me, &format!("picture number {i}"));
    }
    let csrf = t.csrf("/settings");
    let r = t.post_raw("/settings/export", &[("csrf_token", &csrf)]);
    assert_eq!(r.status(), Status::SeeOther);
    assert!(t.page("/settings").contains("being prepared"));
    // Asking again while it is prepared is refused politely.
    let r = t.post_raw("/settings/export", &[("csrf_token", &csrf)]);
    assert_eq!(r.status(), Status::SeeOther);

    assert_eq!(
        novart::jobs::build_exports(&app.db, &app.config).unwrap(),
        1
    );
    assert_eq!(
        novart::jobs::build_exports(&app.db, &app.config).unwrap(),
        0
    );
    let msgs = novart::domain::messages::list(&app.db.get().unwrap(), me).unwrap();
    let ready = msgs
        .iter()
        .find(|m| m.title == "Your data export is ready")
        .expect("a message with the link");
    let link = ready
        .body
        .split_whitespace()
        .find(|w| w.starts_with("/settings/export/"))
        .unwrap()
        .to_string();
    let r = t.client.get(link.clone()).dispatch();
    assert_eq!(r.status(), Status::Ok);
    let (doc, names) = unzip(&r.into_bytes().unwrap());
    assert_eq!(doc["account"]["email"], "big@example.com");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("images/")).count(),
        2 * (novart::domain::export::DIRECT_MAX_FILES / 2 + 1)
    );
    assert!(t.page("/settings").contains(&link), "listed with its link");

    // Another account cannot use the link.
    common::verified_user(app, "nosy@example.com");
    let other = t.sign_in_elsewhere("nosy@example.com", PASSWORD, "Nosy/1.0");
    assert_eq!(
        other.get(link.clone()).dispatch().status(),
        Status::NotFound
    );

    // After the link expires the file and the row are gone.
    let file: String = t
        .db()
        .query_row("SELECT file FROM exports", (), |r| r.get(0))
        .unwrap();
    let path = common::s3::stored_path(&t.config, &file);
    assert!(
        path.is_file(),
        "{file}: {:?}",
        common::s3::stored_keys(&t.config, "exports")
    );
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"NVAE2"), "sealed at rest");
    assert!(zip::ZipArchive::new(std::io::Cursor::new(stored)).is_err());
    let report = novart::domain::retention::sweep(
        &app.db,
        &t.config,
        novart::domain::now() + novart::domain::export::LINK_HOURS * 3600 + 1,
    )
    .unwrap();
    assert_eq!(report.exports_deleted, 1);
    assert!(!path.exists());
    assert_eq!(t.client.get(link).dispatch().status(), Status::NotFound);
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let lower = String::from_utf8_lossy(&bytes).to_lowercase();
                if lower.contains(&needle.to_lowercase()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn deleting_an_account_leaves_no_personal_data_and_the_ledger_reconciles() {
    let t = TestApp::with(|c| c.queue.workers = 0);
    let app = state(&t);
    let email = "zephyrine.quill@example.com";
    let name = "Zephyrine Quill";
    assert_eq!(t.register(email, PASSWORD, name).status(), Status::Ok);
    assert_eq!(t.verify(email).status(), Status::SeeOther);
    assert_eq!(t.login(email, PASSWORD).status(), Status::SeeOther);
    let me = novart::domain::accounts::find(&app.db.get().unwrap(), email)
        .unwrap()
        .id;
    let (_, other_key) = common::user_with_key(app, "stays@example.com", 5);
    novart::domain::wallet::grant(&mut app.db.get().unwrap(), me, 30, false, "test", "credits")
        .unwrap();
    queue_and_run(app, me, "Zephyrine's private lighthouse");
    let (_, key) = novart::domain::apikeys::create(
        &mut app.db.get().unwrap(),
        &app.config,
        &app.engine.catalog,
        me,
        novart::domain::apikeys::KeySpec::defaults(&app.config, "Zephyrine script"),
        novart::domain::apikeys::Authority::Creator,
    )
    .unwrap();
    // Left waiting in the queue: canceled and refunded by the deletion.
    let queued = NewTaskInput {
        prompt: "still waiting".into(),
        model: app.engine.catalog.models[0].id.clone(),
        ..Default::default()
    };
    novart::domain::tasks::submit(
        &mut app.db.get().unwrap(),
        &app.engine.config,
        &app.engine.catalog,
        me,
        &queued,
    )
    .unwrap();
    // An admin action that names the account in the audit log.
    novart::domain::audit::record_now(
        &mut app.db.get().unwrap(),
        &novart::domain::audit::Entry {
            actor: "admin:test",
            action: "credits.grant",
            target: email,
            reason: &format!("thanks {name}"),
            ..Default::default()
        },
    )
    .unwrap();
    let images: Vec<String> = t
        .db()
        .prepare("SELECT path FROM assets WHERE user_id = ?1")
        .unwrap()
        .query_map([me.0], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(images.len(), 2);

    // Wrong password, or no confirmation: nothing happens.
    let csrf = t.csrf("/settings");
    let post = |fields: &[(&str, &str)]| {
        t.client
            .post("/settings/delete")
            .header(ContentType::Form)
            .body(common::form_body(fields))
            .dispatch()
    };
    let r = post(&[
        ("csrf_token", &csrf),
        ("password", "wrong password!"),
        ("confirm", "DELETE"),
    ]);
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r.into_string().unwrap().contains("was not deleted"));
    let r = post(&[
        ("csrf_token", &csrf),
        ("password", PASSWORD),
        ("confirm", "delete"),
    ]);
    assert_eq!(r.status(), Status::BadRequest);
    assert!(novart::domain::accounts::find(&app.db.get().unwrap(), email).is_ok());

    let r = post(&[
        ("csrf_token", &csrf),
        ("password", PASSWORD),
        ("confirm", "DELETE"),
    ]);
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(r.headers().get_one("Location"), Some("/"));
    assert_ne!(
        t.client.get("/settings").dispatch().status(),
        Status::Ok,
        "signed out"
    );
    assert_eq!(
        t.login(email, PASSWORD).status(),
        Status::Unauthorized,
        "cannot sign in again"
    );
    let api = |k: &str| {
        t.client
            .get("/api/v1/account")
            .header(rocket::http::Header::new(
                "Authorization",
                format!("Bearer {k}"),
            ))
            .dispatch()
            .status()
    };
    assert_eq!(api(&key), Status::Unauthorized, "keys end at once");
    assert_eq!(api(&other_key), Status::Ok, "other accounts untouched");

    // No trace of the e-mail or the name in the database or the data dir.
    for needle in [email, name, "Zephyrine"] {
        let hits = files_containing(&t.config.storage.data_dir, needle);
        assert!(hits.is_empty(), "{needle:?} still in {hits:?}");
    }
    for p in &images {
        assert!(
            !common::s3::stored_path(&t.config, p).exists(),
            "image removed"
        );
    }
    // What is kept still adds up.
    let db = t.db();
    let conn = app.db.get().unwrap();
    let checks = novart::domain::doctor::run(&conn, &t.config).unwrap();
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    let (status, ledger_rows, balance): (String, i64, i64) = db
        .query_row(
            "SELECT (SELECT status FROM tasks WHERE user_id = ?1 AND status != 'succeeded'),
                    (SELECT count(*) FROM ledger WHERE user_id = ?1),
                    (SELECT balance + bonus FROM wallets WHERE user_id = ?1)",
            [me.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(status, "canceled");
    assert!(
        ledger_rows >= 5,
        "charges, refund and the closing entry stay"
    );
    assert_eq!(balance, 0, "remaining credits forfeited");
    let (action, target): (String, String) = db
        .query_row(
            "SELECT action, target FROM audit_log ORDER BY id DESC LIMIT 1",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (action.as_str(), target),
        ("user.delete", format!("user:{}", me.0))
    );
    // The redaction was the one change the audit log allowed.
    let e = db
        .execute(
            "UPDATE audit_log SET reason = 'edited' WHERE action = 'credits.grant'",
            (),
        )
        .unwrap_err();
    assert!(e.to_string().contains("immutable"));
}

#[test]
fn an_admin_deletes_an_account_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (client, config) = TestApp::at(&dir.path().join("data"));
    let app = client.rocket().state::<novart::App>().unwrap();
    let (user, key) = common::user_with_key(app, "gone@example.com", 3);
    let o = common::novart(
        dir.path(),
        &[
            "user",
            "delete",
            "gone@example.com",
            "--reason",
            "requested by e-mail",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = client
        .get("/api/v1/account")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {key}"),
        ))
        .dispatch();
    assert_eq!(r.status(), Status::Unauthorized);
    let db = novart::domain::Db::connect(&config).unwrap();
    let (email, deleted): (String, Option<i64>) = db
        .query_row(
            "SELECT email, deleted_at FROM users WHERE id = ?1",
            [user.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(email, format!("deleted-{}@deleted.invalid", user.0));
    assert!(deleted.is_some());
    let actor: String = db
        .query_row(
            "SELECT actor FROM audit_log WHERE action = 'user.delete'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(actor.starts_with("admin:cli:"));
    let o = common::novart(
        dir.path(),
        &["user", "delete", "gone@example.com", "--reason", "again"],
    );
    assert_eq!(o.status.code(), Some(1), "no such account any more");
}

#[test]
fn the_legal_pages_describe_this_instance_from_its_config() {
    use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
    let t = TestApp::with(|c| {
        c.legal.operator_name = "Harbour Pixel Co.".into();
        c.legal.contact = "privacy@harbour.example".into();
        c.storage.result_retention_hours = 12;
        c.api.request_log_retention_days = 9;
        c.mail.transport = novart::config::MailTransport::Smtp;
        c.mail.smtp_url = "smtp://mailer:hunter2secret@mail.harbour.example:587".into();
        c.providers = vec![ProviderConfig::new(
            "cloud",
            ProviderKind::Openai,
            "https://images.upstream.example/v1",
        )];
        c.models = vec![ModelConfig {
            id: "m".into(),
            name: "Upstream".into(),
            providers: vec!["cloud".into()],
            upstream_model: "gpt-image-1".into(),
            price: 1,
            sizes: vec!["512x512".into()],
            max_n: 1,
            reference_images: false,
            description: String::new(),
            charge_extra_images: false,
        }];
    });
    let privacy = t.page("/privacy");
    for expected in [
        "Harbour Pixel Co.",
        "privacy@harbour.example",
        "Generated images and their previews: 12 hours",
        "API request logs and webhook deliveries: 9 days",
        "nova_art_session",
        "novart.toasts.dismissed",
        "novart.notify",
        "/sw.js",
        "images.upstream.example",
        "mail.harbour.example:587",
        "Download my data",
    ] {
        assert!(privacy.contains(expected), "/privacy lacks {expected:?}");
    }
    assert!(
        !privacy.contains("hunter2secret") && !privacy.contains("mailer:"),
        "no credentials"
    );
    let terms = t.page("/terms");
    for expected in [
        "Harbour Pixel Co.",
        "12 hours",
        "identity documents",
        "forfeited",
        "1h, 24h, 7d, permanent",
    ] {
        assert!(terms.contains(expected), "/terms lacks {expected:?}");
    }

    // The operator's own text replaces the built-in one, inside the layout.
    let legal = t.config.storage.data_dir.join("legal");
    std::fs::create_dir_all(&legal).unwrap();
    std::fs::write(
        legal.join("terms.html"),
        "<h1>Our own terms</h1><p>Be kind.</p>",
    )
    .unwrap();
    let terms = t.page("/terms");
    assert!(terms.contains("<h1>Our own terms</h1>"));
    assert!(!terms.contains("Acceptable use"));
    assert!(
        terms.contains("class=\"footer\"") && terms.contains("Novart Studio"),
        "the site's layout stays"
    );
    assert!(
        t.page("/privacy").contains("Your rights"),
        "only the overridden page changes"
    );
}

#[test]
fn privacy_requests_are_filed_on_the_site_and_answered_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (client, config) = TestApp::at(&dir.path().join("data"));
    let app = client.rocket().state::<novart::App>().unwrap();
    common::verified_user(app, "asker@example.com");
    assert_eq!(
        common::sign_in(&client, "asker@example.com"),
        Status::SeeOther
    );
    let settings = client.get("/settings").dispatch().into_string().unwrap();
    assert!(settings.contains("Privacy requests"));
    let csrf = common::csrf_in(&settings);
    let send = |kind: &str, details: &str| {
        client
            .post("/settings/privacy-request")
            .header(ContentType::Form)
            .body(common::form_body(&[
                ("csrf_token", &csrf),
                ("kind", kind),
                ("details", details),
            ]))
            .dispatch()
    };
    let r = send("access", "   ");
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r.into_string().unwrap().contains("Describe your request"));
    assert_eq!(send("telepathy", "x").status(), Status::BadRequest);
    assert_eq!(
        send(
            "objection",
            "Please stop using my prompts for anything but my own images."
        )
        .status(),
        Status::SeeOther
    );
    let settings = client.get("/settings").dispatch().into_string().unwrap();
    assert!(settings.contains("Objection to a use of my data") && settings.contains("pending"));
    for i in 0..2 {
        assert_eq!(
            send("access", &format!("copy {i}")).status(),
            Status::SeeOther
        );
    }
    let r = send("access", "one too many");
    assert_eq!(r.status(), Status::BadRequest, "at most 3 open requests");

    let o = common::novart(dir.path(), &["privacy", "list", "--pending", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 3);
    let id = list.iter().find(|r| r["kind"] == "objection").unwrap()["id"]
        .as_i64()
        .unwrap();
    let o = common::novart(
        dir.path(),
        &[
            "privacy",
            "resolve",
            &id.to_string(),
            "--status",
            "accepted",
            "--reason",
            "Done: your prompts are used for nothing else.",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::novart(
        dir.path(),
        &[
            "privacy",
            "resolve",
            &id.to_string(),
            "--status",
            "rejected",
            "--reason",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "answered once");
    let o = common::novart(
        dir.path(),
        &[
            "privacy", "resolve", "999", "--status", "maybe", "--reason", "x",
        ],
    );
    assert_eq!(o.status.code(), Some(2));

    let inbox = client.get("/messages").dispatch().into_string().unwrap();
    assert!(inbox.contains("Your privacy request was accepted"));
    assert!(inbox.contains("your prompts are used for nothing else"));
    let db = novart::domain::Db::connect(&config).unwrap();
    let actions: Vec<String> = db
        .prepare("SELECT action FROM audit_log WHERE action LIKE 'privacy.%' ORDER BY id")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        actions.iter().filter(|a| *a == "privacy.request").count(),
        3
    );
    assert_eq!(actions.last().map(String::as_str), Some("privacy.resolve"));
}

#[test]
fn changing_the_e_mail_address_is_confirmed_at_the_new_one_and_the_old_one_is_told() {
    let t = TestApp::new();
    t.signed_in_user("old@example.com");
    let app = state(&t);
    common::verified_user(app, "taken@example.com");
    let change = |email: &str, password: &str| {
        let csrf = t.csrf("/settings");
        t.post_raw(
            "/settings/email",
            &[
                ("csrf_token", &csrf),
                ("new_email", email),
                ("email_password", password),
            ],
        )
    };
    let r = change("new@example.com", "not my password");
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r
        .into_string()
        .unwrap()
        .contains("The password is not right"));
    let r = change("not an address", PASSWORD);
    assert_eq!(r.status(), Status::BadRequest);
    assert!(t.mails_to("new@example.com").is_empty());

    // A taken address: the same answer, and its owner is told instead.
    assert_eq!(
        change("taken@example.com", PASSWORD).status(),
        Status::SeeOther
    );
    assert!(t
        .mails_to("taken@example.com")
        .iter()
        .any(|m| m.contains("already belongs to an account")));

    assert_eq!(
        change("new@example.com", PASSWORD).status(),
        Status::SeeOther
    );
    let link = t.latest_link("new@example.com", "/settings/email/confirm");
    let path = common::local_path(&link);
    // Opening the link changes nothing by itself.
    let page = t.page(&path);
    assert!(page.contains("new@example.com") && page.contains("Confirm the new address"));
    assert!(novart::domain::accounts::find(&app.db.get().unwrap(), "old@example.com").is_ok());
    let token = path.split("token=").nth(1).unwrap().to_string();
    let confirm = |token: &str| {
        let csrf = t.csrf("/settings");
        t.post_raw(
            "/settings/email/confirm",
            &[("csrf_token", &csrf), ("token", token)],
        )
        .status()
    };
    assert_eq!(confirm(&token), Status::SeeOther);
    let u = novart::domain::accounts::find(&app.db.get().unwrap(), "new@example.com").unwrap();
    assert!(u.is_verified());
    assert!(novart::domain::accounts::find(&app.db.get().unwrap(), "old@example.com").is_err());
    assert!(t
        .mails_to("old@example.com")
        .iter()
        .any(|m| m.contains("was changed to") && m.contains("new@example.com")));
    assert!(t
        .page("/messages")
        .contains("Your e-mail address was changed"));
    assert_eq!(confirm(&token), Status::BadRequest, "single use");
    t.sign_in_elsewhere("new@example.com", PASSWORD, "Another/1.0");
}
