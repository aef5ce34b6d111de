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
    novart::domain::tasks::submit(&mut conn, &app.engine.catalog, user, &input).unwrap();
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
        assert!(
            novart::domain::tasks::submit(&mut conn, &app.engine.catalog, me, &blocked).is_err()
        );
    }

    let csrf = t.csrf("/settings");
    assert!(t.page("/settings").contains("Download my data"));
    let r = t
        .client
        .post("/settings/export")
        .header(ContentType::Form)
        .body(common::form_body(&[("csrf_token", &csrf)]))
        .dispatch();
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
        .query_map([], |r| r.get(0))
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
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (cli_doc, cli_names) = unzip(&std::fs::read(&out).unwrap());
    assert_eq!(cli_doc["account"], doc["account"]);
    assert_eq!(cli_names.len(), names.len());
}

#[test]
fn large_exports_are_built_in_the_background_for_the_owner_only() {
    let t = TestApp::with(|c| c.queue.workers = 0);
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
    let r = t
        .client
        .post("/settings/export")
        .header(ContentType::Form)
        .body(common::form_body(&[("csrf_token", &csrf)]))
        .dispatch();
    assert_eq!(r.status(), Status::SeeOther);
    assert!(t.page("/settings").contains("being prepared"));
    // Asking again while it is prepared is refused politely.
    let r = t
        .client
        .post("/settings/export")
        .header(ContentType::Form)
        .body(common::form_body(&[("csrf_token", &csrf)]))
        .dispatch();
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
        .query_row("SELECT file FROM exports", [], |r| r.get(0))
        .unwrap();
    let path = t.config.storage.data_dir.join(&file);
    assert!(path.is_file());
    let conn = app.db.get().unwrap();
    let report = novart::domain::retention::sweep(
        &conn,
        &t.config,
        novart::domain::now() + novart::domain::export::LINK_HOURS * 3600 + 1,
    )
    .unwrap();
    assert_eq!(report.exports_deleted, 1);
    assert!(!path.exists());
    assert_eq!(t.client.get(link).dispatch().status(), Status::NotFound);
}
