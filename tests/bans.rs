//! Bans: escalation from blocked prompts, `novart ban`/`unban`, the effect on
//! the very next request (API 403 with reason and end; the web may read but
//! not act), queued tasks refunded, automatic lifting with a message, audit
//! rows on every path, new-device alerts and the live message stream.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::{http, live, novart, TestApp, PASSWORD};
use novart::domain::bans::{self, Actor};
use novart::model::UserId;
use rocket::http::{ContentType, Header, Status};
use serde_json::{json, Value};

fn make_user(app: &novart::App, email: &str, credits: i64) -> (UserId, String) {
    common::user_with_key(app, email, credits)
}

fn balance(app: &novart::App, user: UserId) -> i64 {
    novart::domain::wallet::get(&app.db.get().unwrap(), user)
        .unwrap()
        .total()
}

fn audit_actions(db: &novart::domain::Connection) -> Vec<(String, String, String)> {
    db.prepare("SELECT actor, action, target FROM audit_log ORDER BY id")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn api(base: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent = http();
    let url = format!("{base}{path}");
    let auth = format!("Bearer {key}");
    let mut r = match body {
        Some(b) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(&b)
            .unwrap(),
        None if method == "GET" => agent
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .unwrap(),
        None => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_empty()
            .unwrap(),
    };
    let status = r.status().as_u16();
    let v = r.body_mut().read_json().unwrap_or(Value::Null);
    (status, v)
}

#[test]
fn repeated_blocked_prompts_escalate_to_longer_bans() {
    let srv = live(|c| {
        c.queue.workers = 0;
        c.moderation.escalate_after = 3;
        c.moderation.escalation_window_minutes = 60;
        c.moderation.ban_durations = vec!["30m".into(), "permanent".into()];
    });
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (user, key) = make_user(&app, "risky@example.com", 50);
    let start = balance(&app, user);
    let (s, queued) = api(
        &srv.base,
        &key,
        "POST",
        "/api/v1/tasks",
        Some(json!({ "prompt": "a lighthouse in a storm" })),
    );
    assert_eq!(s, 201, "{queued}");
    assert!(balance(&app, user) < start, "the task was charged");

    for i in 1..=3 {
        let (s, v) = api(
            &srv.base,
            &key,
            "POST",
            "/api/v1/tasks",
            Some(json!({ "prompt": format!("p a s s p o r t number {i}") })),
        );
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["error"]["code"], "content_blocked");
        let msg = v["error"]["message"].as_str().unwrap();
        assert_eq!(i == 3, msg.contains("suspended until"), "{msg}");
    }
    // The very next call with the key: 403 with the reason and the end.
    let (s, v) = api(&srv.base, &key, "GET", "/api/v1/account", None);
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "banned");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("suspended until") && msg.contains("UTC"),
        "{msg}"
    );
    assert!(msg.contains("3 prompts blocked"), "{msg}");
    // The queued task was canceled and refunded.
    let (status, _) = {
        let t = novart::domain::tasks::get(
            &app.db.get().unwrap(),
            user,
            queued["id"].as_str().unwrap(),
        )
        .unwrap();
        (t.task.status, ())
    };
    assert_eq!(status.as_str(), "canceled");
    assert_eq!(balance(&app, user), start, "refunded");

    let db = novart::domain::Db::connect(&srv.config).unwrap();
    let (source, actor, length, ip): (String, String, Option<i64>, Option<String>) = db
        .query_row(
            "SELECT b.source, b.actor, b.ends_at - b.starts_at, (SELECT ip FROM blocked_attempts ORDER BY id DESC LIMIT 1) FROM bans b", (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((source.as_str(), actor.as_str()), ("escalation", "system"));
    assert_eq!(length, Some(1800));
    assert_eq!(
        ip.as_deref(),
        Some("127.0.0.1"),
        "the client's address is logged"
    );
    let actions: Vec<String> = audit_actions(&db).into_iter().map(|a| a.1).collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "moderation.block").count(),
        3
    );
    assert!(actions.contains(&"ban.escalation".to_string()));
    let notice: String = db
        .query_row(
            "SELECT body FROM messages WHERE kind = 'suspension' ORDER BY id DESC LIMIT 1",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        notice.contains("1 queued task(s) were canceled"),
        "{notice}"
    );

    // Lifted by an admin; three more blocks: the second ban is permanent.
    let mut conn = app.db.get().unwrap();
    bans::unban(
        &mut conn,
        user,
        None,
        "first offence",
        &Actor {
            name: "admin:test",
            ip: None,
        },
    )
    .unwrap();
    let (s, _) = api(&srv.base, &key, "GET", "/api/v1/account", None);
    assert_eq!(s, 200, "unbanned at once");
    // The blocks of the first round are still in the window: one more bans.
    let (s, v) = api(
        &srv.base,
        &key,
        "POST",
        "/api/v1/tasks",
        Some(json!({ "prompt": "d1ploma" })),
    );
    assert_eq!(s, 422);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("suspended permanently"));
    let (s, v) = api(&srv.base, &key, "GET", "/api/v1/tasks", None);
    assert_eq!(s, 403);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("permanently"));
}

/// A client over a data directory the CLI also uses.
fn cli_setup() -> (
    tempfile::TempDir,
    rocket::local::blocking::Client,
    novart::config::Config,
) {
    let dir = tempfile::tempdir().unwrap();
    let (client, config) = TestApp::at(&dir.path().join("data"));
    (dir, client, config)
}

use common::sign_in;

#[test]
fn an_admin_ban_stops_acting_not_reading_and_unban_restores() {
    let (dir, client, config) = cli_setup();
    let app = client.rocket().state::<novart::App>().unwrap();
    let (user, key) = make_user(app, "banned@example.com", 20);
    let start = balance(app, user);
    {
        let mut conn = app.db.get().unwrap();
        let codes = novart::domain::codes::create(
            &mut conn,
            &novart::domain::codes::NewCodes {
                amount: 5,
                count: 1,
                bonus: false,
                max_uses: 1,
                expires_at: None,
                batch: None,
                actor: "test",
            },
        )
        .unwrap();
        std::fs::write(dir.path().join("code"), &codes[0]).unwrap();
    }
    let code = std::fs::read_to_string(dir.path().join("code")).unwrap();
    assert_eq!(sign_in(&client, "banned@example.com"), Status::SeeOther);
    let old_cookie = client
        .cookies()
        .get("nova_art_session")
        .unwrap()
        .value()
        .to_string();
    assert_eq!(client.get("/studio").dispatch().status(), Status::Ok);

    let o = novart(
        dir.path(),
        &[
            "ban",
            "banned@example.com",
            "--for",
            "12h",
            "--reason",
            "Spam through the API",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("banned until"));

    let o = novart(dir.path(), &["bans", "--active", "--json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed[0]["email"], "banned@example.com");
    assert_eq!(listed[0]["ban"]["reason"], "Spam through the API");
    // API: the next call is 403 with reason and end time.
    let r = client
        .get("/api/v1/account")
        .header(Header::new("Authorization", format!("Bearer {key}")))
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "banned");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Spam through the API") && msg.contains("until 20"),
        "{msg}"
    );

    // The old session is over; signing in again works and shows the notice.
    let r = client
        .get("/studio")
        .cookie(rocket::http::Cookie::new("nova_art_session", old_cookie))
        .dispatch();
    assert_ne!(r.status(), Status::Ok, "old session refused");
    assert_eq!(sign_in(&client, "banned@example.com"), Status::SeeOther);
    let page = client.get("/messages").dispatch().into_string().unwrap();
    assert!(page.contains("Your account is suspended"));
    assert!(page.contains("Spam through the API"));
    assert!(
        client.get("/library").dispatch().status() == Status::Ok,
        "reading works"
    );

    // Acting does not: a task, a code, a key.
    let studio = client.get("/studio").dispatch().into_string().unwrap();
    let csrf = common::csrf_in(&studio);
    let r = client
        .post("/studio")
        .header(ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &csrf),
            ("prompt", "a quiet harbour"),
            ("model", "novart-builtin"),
            ("aspect_ratio", "1:1"),
            ("resolution", "1024"),
            ("n", "1"),
        ]))
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    assert!(r.into_string().unwrap().contains("Spam through the API"));
    let r = client
        .post("/wallet/redeem")
        .header(ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &csrf),
            ("code", code.trim()),
        ]))
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    let r = client
        .post("/developer/keys")
        .header(ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &csrf),
            ("name", "another"),
        ]))
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    assert!(r.into_string().unwrap().contains("suspended"));
    let db = novart::domain::Db::connect(&config).unwrap();
    let (tasks, keys): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM api_keys)",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((tasks, keys), (0, 1), "nothing was made");
    assert_eq!(balance(app, user), start, "no code credited");

    let o = novart(
        dir.path(),
        &["unban", "banned@example.com", "--reason", "Appeal accepted"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = client
        .get("/api/v1/account")
        .header(Header::new("Authorization", format!("Bearer {key}")))
        .dispatch();
    assert_eq!(r.status(), Status::Ok, "the next call works again");
    let o = novart(dir.path(), &["bans", "--active", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        json!([])
    );
    let o = novart(dir.path(), &["bans"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("lifted"),
        "history stays"
    );
    let o = novart(
        dir.path(),
        &["unban", "banned@example.com", "--reason", "again"],
    );
    assert_eq!(o.status.code(), Some(1), "not banned any more");

    let audit = audit_actions(&db);
    let admin: Vec<_> = audit
        .iter()
        .filter(|(actor, _, _)| actor.starts_with("admin:cli:"))
        .map(|(_, action, target)| (action.as_str(), target.as_str()))
        .collect();
    assert!(admin.contains(&("ban", "banned@example.com")), "{audit:?}");
    assert!(
        admin.contains(&("unban", "banned@example.com")),
        "{audit:?}"
    );
    let o = novart(
        dir.path(),
        &[
            "ban",
            "banned@example.com",
            "--for",
            "soon",
            "--reason",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "a bad length is bad usage");
}

#[test]
fn timed_bans_end_by_themselves_with_a_message() {
    let t = TestApp::with(|c| c.queue.workers = 0);
    let app = t.client.rocket().state::<novart::App>().unwrap();
    let (user, key) = make_user(app, "short@example.com", 10);
    let mut conn = app.db.get().unwrap();
    bans::ban(
        &mut conn,
        user,
        bans::ALL,
        Some(2),
        "a two-second ban",
        &Actor {
            name: "admin:test",
            ip: Some("192.0.2.1"),
        },
    )
    .unwrap();
    let account = || {
        t.client
            .get("/api/v1/account")
            .header(Header::new("Authorization", format!("Bearer {key}")))
            .dispatch()
            .status()
    };
    // Two seconds, counted in whole seconds: still on for at least one
    // more second, however slow the machine is to ask.
    assert_eq!(account(), Status::Forbidden);
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(account(), Status::Ok, "over at its end, before any sweep");
    assert_eq!(novart::jobs::lift_bans(&app.db).unwrap(), 1);
    assert_eq!(novart::jobs::lift_bans(&app.db).unwrap(), 0, "once");
    let msgs = novart::domain::messages::list(&conn, user).unwrap();
    assert_eq!(msgs[0].title, "Your suspension has ended");
    let db = t.db();
    let (by, why): (String, String) = db
        .query_row("SELECT lifted_by, lift_reason FROM bans", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((by.as_str(), why.as_str()), ("system", "expired"));
    let audit = audit_actions(&db);
    assert!(audit.contains(&(
        "system".into(),
        "ban.expire".into(),
        "short@example.com".into()
    )));
    let ip: Option<String> = db
        .query_row("SELECT ip FROM audit_log WHERE action = 'ban'", (), |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(ip.as_deref(), Some("192.0.2.1"));
    drop(conn);
}

#[test]
fn a_sign_in_from_a_new_device_is_reported() {
    let t = TestApp::new();
    t.signed_in_user("devices@example.com");
    let unread = |t: &TestApp| {
        t.db()
            .query_row(
                "SELECT count(*) FROM messages WHERE title = 'New sign-in to your account'",
                (),
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    assert_eq!(unread(&t), 0, "the first sign-in is not news");
    t.sign_in_elsewhere("devices@example.com", PASSWORD, "Mozilla/5.0 Firefox/120.0");
    assert_eq!(unread(&t), 1);
    // The same browser after an update is not a new device.
    t.sign_in_elsewhere("devices@example.com", PASSWORD, "Mozilla/5.0 Firefox/121.0");
    assert_eq!(unread(&t), 1);
    t.sign_in_elsewhere("devices@example.com", PASSWORD, "curl/8.0");
    assert_eq!(unread(&t), 2);
    let body: String = t
        .db()
        .query_row(
            "SELECT body FROM messages WHERE title = 'New sign-in to your account' ORDER BY id DESC", (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(body.contains("curl/8.0"), "{body}");
}

/// Reads Server-Sent Events until one of `kind` arrives; returns its data.
fn next_event(reader: &mut impl BufRead, kind: &str) -> (Option<String>, String) {
    let (mut event, mut id, mut data) = (String::new(), None, String::new());
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("the stream stays open");
        assert!(n > 0, "the stream ended");
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if event == kind {
                return (id, data);
            }
            (event, id, data) = (String::new(), None, String::new());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

#[test]
fn the_live_stream_delivers_new_messages() {
    let srv = live(|c| c.queue.workers = 0);
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (user, _) = make_user(&app, "listener@example.com", 0);
    let common::LiveSession {
        cookie, csrf, page, ..
    } = common::live_session(&srv, &app, user);
    assert!(page.contains("data-live data-messages-after=\""));

    let open = |last_event_id: Option<&str>| {
        let addr = srv.base.trim_start_matches("http://").to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let extra = last_event_id
            .map(|i| format!("Last-Event-ID: {i}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /api/v1/events?csrf_token={csrf} HTTP/1.0\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.contains("200"), "{status}");
        next_event(&mut r, "ready");
        r
    };
    let mut stream = open(None);
    let mut conn = app.db.get().unwrap();
    novart::domain::messages::announce(
        &mut conn,
        "Hello live",
        "Arrives without a reload.",
        Some(user),
    )
    .unwrap();
    let (id, data) = next_event(&mut stream, "message");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["title"], "Hello live");
    let unread = v["unread"].as_i64().unwrap();
    assert!(unread >= 1);
    assert_eq!(v["kind"], "announcement");
    let first = id.expect("messages carry their id");

    // A reconnect resumes after the last message it saw.
    novart::domain::messages::announce(&mut conn, "Second", "While away.", Some(user)).unwrap();
    let mut again = open(Some(&first));
    let (_, data) = next_event(&mut again, "message");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["title"], "Second");
    assert_eq!(v["unread"].as_i64(), Some(unread + 1));
    // Someone else's messages never arrive.
    let (other, _) = make_user(&app, "other@example.com", 0);
    novart::domain::messages::announce(&mut conn, "Not yours", "x", Some(other)).unwrap();
    novart::domain::messages::announce(&mut conn, "Third", "y", Some(user)).unwrap();
    let (_, data) = next_event(&mut again, "message");
    assert!(data.contains("Third"), "{data}");
}
