//! Scoped restrictions and appeals: each scope (generate, api, upload) at
//! each guarded action on the web and the API, several at once, lifting
//! one scope, expiry, `novart keys revoke --reason`, appeals filed on the
//! settings page and decided with `novart appeals accept|reject` (messages
//! and audit rows), one appeal per restriction even under a race, the
//! daily appeal limit, and the history on the settings page and in the
//! export.

mod common;

use common::fake_http::{b64, png};
use common::{novart, sign_in};
use novart::domain::bans::{self, Actor};
use novart::model::UserId;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::Client;
use serde_json::{json, Value};

struct Setup {
    dir: tempfile::TempDir,
    client: Client,
    config: novart::config::Config,
}

impl Setup {
    fn new() -> Setup {
        Setup::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut novart::config::Config)) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::config_for(&dir.path().join("data"));
        f(&mut config);
        let client = Client::tracked(novart::build_rocket(config.clone()).unwrap()).unwrap();
        Setup {
            dir,
            client,
            config,
        }
    }

    fn app(&self) -> &novart::App {
        self.client.rocket().state::<novart::App>().unwrap()
    }

    /// A signed-in creator with credits and an API key.
    fn creator(&self, email: &str) -> (UserId, String) {
        let (user, key) = common::user_with_key(self.app(), email, 100);
        assert_eq!(sign_in(&self.client, email), Status::SeeOther);
        (user, key)
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let o = novart(self.dir.path(), args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    }

    /// A command that must succeed; its output.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.cli(args);
        assert!(ok, "novart {args:?}: {out}");
        out
    }

    /// What an API key gets from GET /api/v1/account.
    fn key_status(&self, key: &str) -> Status {
        self.with_key(key, "GET", "/api/v1/account", None).0
    }

    /// The newest message to `user`: its title and body.
    fn last_message(&self, user: UserId) -> (String, String) {
        self.messages(user).pop().expect("a message")
    }

    fn restrict(&self, email: &str, scope: &str, length: &str, reason: &str) {
        let (ok, out) = self.cli(&[
            "ban", email, "--scope", scope, "--for", length, "--reason", reason,
        ]);
        assert!(ok, "{out}");
    }

    fn csrf(&self, path: &str) -> String {
        common::csrf_in(&self.client.get(path).dispatch().into_string().unwrap())
    }

    /// The API with a key: status and body.
    fn with_key(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (Status, Value) {
        let auth = Header::new("Authorization", format!("Bearer {key}"));
        let r = match body {
            Some(b) => self
                .client
                .post(path.to_string())
                .header(auth)
                .header(ContentType::JSON)
                .body(b.to_string()),
            None if method == "GET" => self.client.get(path.to_string()).header(auth),
            None => self.client.post(path.to_string()).header(auth),
        }
        .dispatch();
        let status = r.status();
        (
            status,
            serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// The studio's own JSON call (session cookie + x-csrf-token).
    fn studio_call(&self, path: &str, body: Vec<u8>, json: bool) -> (Status, Value) {
        let token = self.csrf("/studio");
        let r = self
            .client
            .post(path.to_string())
            .header(Header::new("x-csrf-token", token))
            .header(if json {
                ContentType::JSON
            } else {
                ContentType::PNG
            })
            .body(body)
            .dispatch();
        let status = r.status();
        (
            status,
            serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// The studio form without JavaScript.
    fn studio_form(&self) -> (Status, String) {
        let csrf = self.csrf("/studio");
        let r = self
            .client
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
        (r.status(), r.into_string().unwrap_or_default())
    }

    fn create_key_on_web(&self) -> (Status, String) {
        let csrf = self.csrf("/developer");
        let r = self
            .client
            .post("/developer/keys")
            .header(ContentType::Form)
            .body(common::form_body(&[
                ("csrf_token", &csrf),
                ("name", "another"),
                ("permissions", "generate"),
                ("rpm", ""),
                ("concurrency", ""),
                ("daily_cap", ""),
                ("expires_days", ""),
            ]))
            .dispatch();
        (r.status(), r.into_string().unwrap_or_default())
    }

    fn db(&self) -> novart::domain::Connection {
        novart::domain::Db::connect(&self.config).unwrap()
    }

    fn messages(&self, user: UserId) -> Vec<(String, String)> {
        self.db()
            .prepare("SELECT title, body FROM messages WHERE user_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([user.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn audit(&self) -> Vec<(String, Value)> {
        self.db()
            .prepare("SELECT action, coalesce(after, 'null') FROM audit_log ORDER BY id")
            .unwrap()
            .query_map((), |r| {
                let after: String = r.get(1)?;
                Ok((r.get(0)?, serde_json::from_str(&after).unwrap()))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn task(prompt: &str) -> Value {
    json!({ "prompt": prompt, "model": "novart-builtin", "size": "512x512" })
}

fn refused(status: Status, body: &Value, words: &str, reason: &str) {
    assert_eq!(status, Status::Forbidden, "{body}");
    assert_eq!(body["error"]["code"], "banned", "{body}");
    let m = body["error"]["message"].as_str().unwrap();
    assert!(m.contains(words), "{m}");
    assert!(m.contains(reason) && m.contains("until 20"), "{m}");
}

#[test]
fn a_generate_restriction_stops_new_tasks_on_web_and_api_and_nothing_else() {
    // No workers: the first task is still queued when the restriction starts.
    let s = Setup::with(|c| c.queue.workers = 0);
    let (user, key) = s.creator("gen@example.com");
    let start = novart::domain::wallet::get(&s.db(), user).unwrap().total();
    // A task waiting in the queue is refunded when the restriction starts.
    let (st, queued) = s.with_key(&key, "POST", "/api/v1/tasks", Some(task("queued one")));
    assert_eq!(st, Status::Created, "{queued}");
    s.restrict(
        "gen@example.com",
        "generate",
        "7d",
        "Too many near-duplicates",
    );

    let (st, v) = s.with_key(&key, "POST", "/api/v1/tasks", Some(task("a harbour")));
    refused(st, &v, "may not start tasks", "Too many near-duplicates");
    let (st, v) = s.studio_call(
        "/api/v1/tasks",
        task("a harbour").to_string().into_bytes(),
        true,
    );
    refused(st, &v, "may not start tasks", "Too many near-duplicates");
    let (st, html) = s.studio_form();
    assert_eq!(st, Status::Forbidden);
    assert!(
        html.contains("Too many near-duplicates"),
        "the form says why"
    );

    // Everything else still works: the key reads, keys can be made, uploads.
    let (st, account) = s.with_key(&key, "GET", "/api/v1/account", None);
    assert_eq!(st, Status::Ok);
    assert_eq!(account["restrictions"][0]["scope"], "generate", "{account}");
    assert_eq!(
        account["restrictions"][0]["reason"],
        "Too many near-duplicates"
    );
    assert_eq!(s.create_key_on_web().0, Status::Created);
    let (st, v) = s.with_key(&key, "POST", "/api/v1/uploads", None);
    assert_ne!(st, Status::Forbidden, "{v}");
    let (st, v) = s.studio_call("/api/v1/uploads", png(8, 8), false);
    assert_eq!(st, Status::Created, "{v}");

    // The queued task was canceled and refunded; pages name the restriction.
    let id = queued["id"].as_str().unwrap();
    let (_, t) = s.with_key(&key, "GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(t["status"], "canceled", "{t}");
    assert_eq!(
        novart::domain::wallet::get(&s.db(), user).unwrap().total(),
        start,
        "refunded"
    );
    let page = s.client.get("/library").dispatch().into_string().unwrap();
    assert!(page.contains("You may not start tasks until"), "banner");
    assert!(page.contains("Too many near-duplicates"));
    let (_, body) = s
        .messages(user)
        .into_iter()
        .find(|(t, _)| t == "Your account may not start tasks")
        .expect("told about the restriction");
    assert!(body.contains("1 queued task(s) were canceled"), "{body}");
    assert!(body.contains("appeal in Settings"), "{body}");
}

#[test]
fn an_api_restriction_refuses_keys_while_the_website_works() {
    let s = Setup::new();
    let (user, key) = s.creator("api@example.com");
    s.restrict("api@example.com", "api", "12h", "Scraping the gallery");

    for (method, path, body) in [
        ("GET", "/api/v1/account", None),
        ("POST", "/api/v1/tasks", Some(task("through the key"))),
        ("GET", "/api/v1/tasks", None),
    ] {
        let (st, v) = s.with_key(&key, method, path, body);
        refused(st, &v, "API access is suspended", "Scraping the gallery");
    }
    // The OpenAI-compatible endpoint is the same key check.
    let (st, v) = s.with_key(
        &key,
        "POST",
        "/v1/images/generations",
        Some(json!({ "prompt": "x", "model": "novart-builtin" })),
    );
    refused(st, &v, "API access is suspended", "Scraping the gallery");
    let (st, html) = s.create_key_on_web();
    assert_eq!(st, Status::Forbidden);
    assert!(html.contains("Scraping the gallery"));

    // The website, including its own JSON calls, works.
    assert_eq!(s.studio_form().0, Status::SeeOther);
    let (st, v) = s.studio_call(
        "/api/v1/tasks",
        task("from the studio").to_string().into_bytes(),
        true,
    );
    assert_eq!(st, Status::Created, "{v}");
    let (st, _) = s.studio_call("/api/v1/uploads", png(8, 8), false);
    assert_eq!(st, Status::Created);
    let page = s.client.get("/developer").dispatch().into_string().unwrap();
    assert!(page.contains("Your API keys are refused until"), "banner");
    assert_eq!(s.last_message(user).0, "Your API access is suspended");
}

#[test]
fn an_upload_restriction_refuses_reference_images_only() {
    let s = Setup::new();
    let (_, key) = s.creator("up@example.com");
    // An upload from before the restriction, named by id later.
    let (st, earlier) = s.studio_call("/api/v1/uploads", png(8, 8), false);
    assert_eq!(st, Status::Created);
    s.restrict(
        "up@example.com",
        "upload",
        "30m",
        "Uploaded other people's photos",
    );

    let (st, v) = s.studio_call("/api/v1/uploads", png(8, 8), false);
    refused(
        st,
        &v,
        "may not upload reference images",
        "other people's photos",
    );
    let auth = Header::new("Authorization", format!("Bearer {key}"));
    let r = s
        .client
        .post("/api/v1/uploads")
        .header(auth)
        .header(ContentType::PNG)
        .body(png(8, 8))
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    let with_refs = |refs: Value| {
        let mut t = task("like this one");
        t["model"] = json!("novart-builtin");
        t["reference_images"] = refs;
        t
    };
    let (st, v) = s.with_key(
        &key,
        "POST",
        "/api/v1/tasks",
        Some(with_refs(json!([b64(&png(8, 8))]))),
    );
    refused(
        st,
        &v,
        "may not upload reference images",
        "other people's photos",
    );
    let (st, v) = s.with_key(
        &key,
        "POST",
        "/api/v1/tasks",
        Some(with_refs(json!([earlier["id"]]))),
    );
    refused(
        st,
        &v,
        "may not upload reference images",
        "other people's photos",
    );

    // Tasks without references go on.
    let (st, v) = s.with_key(&key, "POST", "/api/v1/tasks", Some(task("no reference")));
    assert_eq!(st, Status::Created, "{v}");
    assert_eq!(s.studio_form().0, Status::SeeOther);
    let refs: i64 = s
        .db()
        .query_row(
            "SELECT count(*) FROM assets WHERE kind = 'reference'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refs, 1, "nothing was stored");
}

#[test]
fn several_restrictions_stand_at_once_and_lift_one_by_one() {
    let s = Setup::new();
    let (user, key) = s.creator("both@example.com");
    s.restrict("both@example.com", "api", "7d", "Key shared publicly");
    s.restrict("both@example.com", "upload", "permanent", "Uploads of IDs");

    let (st, v) = s.with_key(&key, "GET", "/api/v1/account", None);
    refused(st, &v, "API access", "Key shared publicly");
    let (st, v) = s.studio_call("/api/v1/uploads", png(8, 8), false);
    assert_eq!(st, Status::Forbidden);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("permanently"));
    assert_eq!(s.studio_form().0, Status::SeeOther, "generating is allowed");
    let page = s.client.get("/studio").dispatch().into_string().unwrap();
    assert!(
        page.contains("Your API keys are refused until")
            && page.contains("You may not upload reference images.")
    );

    let out = s.ok(&["bans", "--active", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let mut scopes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ban"]["scope"].as_str().unwrap())
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["api", "upload"]);
    let (ok, out) = s.cli(&["user", "show", "both@example.com"]);
    assert!(ok && out.contains("api") && out.contains("upload"), "{out}");

    // A second api restriction replaces the first instead of stacking.
    s.restrict("both@example.com", "api", "1d", "Shorter, after a talk");
    let (_, v) = s.with_key(&key, "GET", "/api/v1/account", None);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Shorter, after a talk"));
    assert_eq!(
        bans::restrictions(&s.db(), user).unwrap().len(),
        2,
        "one per scope"
    );

    // Lifting the api scope leaves the upload one.
    s.ok(&[
        "unban",
        "both@example.com",
        "--scope",
        "api",
        "--reason",
        "Key rotated",
    ]);
    assert_eq!(s.key_status(&key), Status::Ok);
    assert_eq!(
        s.studio_call("/api/v1/uploads", png(8, 8), false).0,
        Status::Forbidden
    );
    let (title, body) = s.last_message(user);
    assert_eq!(title, "A restriction on your account was lifted");
    assert!(
        body.contains("Your API keys work again.") && body.contains("Key rotated"),
        "{body}"
    );
    let (ok, out) = s.cli(&[
        "unban",
        "both@example.com",
        "--scope",
        "api",
        "--reason",
        "again",
    ]);
    assert!(!ok && out.contains("no api restriction"), "{out}");
    let (ok, out) = s.cli(&[
        "ban",
        "both@example.com",
        "--scope",
        "uploads",
        "--for",
        "1d",
        "--reason",
        "x",
    ]);
    assert!(!ok && out.contains("not a scope"), "{out}");
}

#[test]
fn restrictions_end_by_themselves_with_a_message() {
    let s = Setup::new();
    let (user, key) = s.creator("brief@example.com");
    let mut conn = s.app().db.get().unwrap();
    let admin = Actor {
        name: "admin:test",
        ip: None,
    };
    // Two seconds: the end is kept in whole seconds, so a one-second
    // restriction imposed late in a second could end before the next check.
    bans::ban(
        &mut conn,
        user,
        "api",
        Some(2),
        "a two-second restriction",
        &admin,
    )
    .unwrap();
    bans::ban(&mut conn, user, "upload", None, "stays", &admin).unwrap();
    assert_eq!(s.key_status(&key), Status::Forbidden);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // In force no longer, even before the scheduler closes it.
    assert_eq!(s.key_status(&key), Status::Ok);
    assert_eq!(
        bans::lift_expired(&mut conn, novart::domain::now()).unwrap(),
        1
    );
    let (title, body) = s.last_message(user);
    assert_eq!(title, "A restriction on your account has ended");
    assert!(body.ends_with("Your API keys work again."), "{body}");
    assert!(s.audit().iter().any(|(a, _)| a == "ban.expire"));
    assert_eq!(
        s.studio_call("/api/v1/uploads", png(8, 8), false).0,
        Status::Forbidden,
        "the permanent one stands"
    );
}

/// Files an appeal through the settings page; returns the response status
/// and where it leads (or the page).
fn appeal(s: &Setup, restriction: i64, body: &str) -> (Status, String) {
    let csrf = s.csrf("/settings");
    let r = s
        .client
        .post("/settings/appeals")
        .header(ContentType::Form)
        .body(common::form_body(&[
            ("csrf_token", &csrf),
            ("restriction", &restriction.to_string()),
            ("body", body),
        ]))
        .dispatch();
    let status = r.status();
    let location = r.headers().get_one("Location").map(str::to_string);
    (
        status,
        location.unwrap_or_else(|| r.into_string().unwrap_or_default()),
    )
}

fn restriction_ids(s: &Setup, user: UserId) -> Vec<i64> {
    bans::restrictions(&s.db(), user)
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect()
}

#[test]
fn an_accepted_appeal_lifts_the_restriction_and_tells_the_user() {
    let s = Setup::new();
    let (user, key) = s.creator("appeal@example.com");
    s.restrict("appeal@example.com", "api", "7d", "Burst of 5xx retries");
    let id = restriction_ids(&s, user)[0];

    // The settings page shows it, with the form; a too-short text is refused in place.
    let page = s.client.get("/settings").dispatch().into_string().unwrap();
    assert!(page.contains("Burst of 5xx retries") && page.contains("/settings/appeals"));
    let (st, html) = appeal(&s, id, "no");
    assert_eq!(st, Status::BadRequest);
    assert!(
        html.contains("10 to 2000 characters"),
        "the error is on the page"
    );
    let (st, to) = appeal(&s, id, "My client had a retry bug; it is fixed in v2.1.");
    assert_eq!(st, Status::SeeOther, "{to}");
    let page = s.client.get("/settings").dispatch().into_string().unwrap();
    assert!(page.contains("Appeal pending") && page.contains("retry bug"));
    assert!(!page.contains("name=\"restriction\""), "no second form");

    let out = s.ok(&["appeals", "list", "--pending", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["email"], "appeal@example.com");
    assert_eq!(listed[0]["restriction"]["reason"], "Burst of 5xx retries");
    let appeal_id = listed[0]["appeal"]["id"].as_i64().unwrap().to_string();
    s.ok(&[
        "appeals",
        "accept",
        &appeal_id,
        "--reason",
        "Thanks, confirmed in logs",
    ]);

    assert_eq!(s.key_status(&key), Status::Ok);
    let (title, body) = s.last_message(user);
    assert_eq!(title, "Your appeal was accepted");
    assert!(
        body.contains("Thanks, confirmed in logs") && body.contains("Your API keys work again."),
        "{body}"
    );
    let actions: Vec<String> = s.audit().into_iter().map(|(a, _)| a).collect();
    let tail: Vec<&str> = actions
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["appeal.file", "appeal.accept"]);
    let (ok, out) = s.cli(&["appeals", "list", "--pending"]);
    assert!(ok && out.contains("no appeals"), "{out}");
    let (ok, out) = s.cli(&[
        "appeals",
        "reject",
        &appeal_id,
        "--reason",
        "changed my mind",
    ]);
    assert!(!ok && out.contains("already accepted"), "{out}");

    // History on the settings page and in the export.
    let page = s.client.get("/settings").dispatch().into_string().unwrap();
    assert!(page.contains("Appeal accepted") && page.contains("Lifted"));
    let conn = s.db();
    let mut zip = Vec::new();
    novart::domain::export::write_zip(&conn, &s.config, user, std::io::Cursor::new(&mut zip))
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let data: Value = serde_json::from_reader(archive.by_name("data.json").unwrap()).unwrap();
    assert_eq!(data["restrictions"][0]["scope"], "api");
    assert_eq!(data["appeals"][0]["status"], "accepted");
    assert_eq!(data["appeals"][0]["restriction_id"], id);
    assert!(data["appeals"][0]["body"]
        .as_str()
        .unwrap()
        .contains("retry bug"));
}

#[test]
fn a_rejected_appeal_keeps_the_restriction_and_says_why() {
    let s = Setup::new();
    let (user, _) = s.creator("reject@example.com");
    s.restrict("reject@example.com", "all", "7d", "Chargeback fraud");
    // A full ban ends the session; the user signs in again to appeal.
    assert_eq!(sign_in(&s.client, "reject@example.com"), Status::SeeOther);
    let page = s.client.get("/studio").dispatch().into_string().unwrap();
    assert!(
        page.contains("/settings#restrictions-h"),
        "the banner leads to the appeal"
    );
    let id = restriction_ids(&s, user)[0];
    let (st, _) = appeal(
        &s,
        id,
        "The chargeback was my bank's error, see ticket 4411.",
    );
    assert_eq!(st, Status::SeeOther);
    let appeal_id: i64 = s
        .db()
        .query_row("SELECT id FROM appeals", (), |r| r.get(0))
        .unwrap();
    s.ok(&[
        "appeals",
        "reject",
        &appeal_id.to_string(),
        "--reason",
        "The bank confirmed the chargeback",
    ]);
    assert_eq!(restriction_ids(&s, user), [id], "still in force");
    let (title, body) = s.last_message(user);
    assert_eq!(title, "Your appeal was rejected");
    assert!(
        body.contains("The bank confirmed the chargeback") && body.contains("stays until 20"),
        "{body}"
    );
    let (action, after) = s.audit().pop().unwrap();
    assert_eq!(action, "appeal.reject");
    assert_eq!(after["lifted"], false);
    // Decided: it cannot be filed again.
    let (st, to) = appeal(&s, id, "Please look again at ticket 4411.");
    assert_eq!(
        (st, to.as_str()),
        (Status::SeeOther, "/settings#restrictions-h")
    );
    let page = s.client.get("/settings").dispatch().into_string().unwrap();
    assert!(page.contains("You have already appealed this restriction."));
    assert!(page.contains("Appeal rejected") && page.contains("The bank confirmed"));
}

#[test]
fn one_appeal_per_restriction_even_when_sent_at_once() {
    let s = Setup::new();
    let (user, _) = s.creator("race@example.com");
    s.restrict("race@example.com", "upload", "1d", "r1");
    let id = restriction_ids(&s, user)[0];
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let config = s.config.clone();
            std::thread::spawn(move || {
                let app = novart::App::new(config).unwrap();
                let mut conn = app.db.get().unwrap();
                novart::domain::appeals::file(
                    &mut conn,
                    user,
                    id,
                    &format!("attempt number {i}"),
                    None,
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.to_string().contains("already appealed")));
    let rows: i64 = s
        .db()
        .query_row("SELECT count(*) FROM appeals", (), |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);

    // Someone else's restriction, or one no longer in force: refused.
    let (other, _) = common::user_with_key(s.app(), "other@example.com", 0);
    let mut conn = s.app().db.get().unwrap();
    let admin = Actor {
        name: "admin:test",
        ip: None,
    };
    let (theirs, _) = bans::ban(&mut conn, other, "api", None, "theirs", &admin).unwrap();
    let (st, _) = appeal(&s, theirs.id, "This is not even my restriction.");
    assert_eq!(st, Status::NotFound);
    let (ended, _) = bans::ban(&mut conn, user, "generate", Some(1), "brief", &admin).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let e = novart::domain::appeals::file(&mut conn, user, ended.id, "too late for this one", None)
        .unwrap_err();
    assert!(e.to_string().contains("no longer in force"), "{e}");
}

#[test]
fn appeals_are_rate_limited_per_account() {
    let s = Setup::new();
    let (user, _) = s.creator("many@example.com");
    let mut conn = s.app().db.get().unwrap();
    let admin = Actor {
        name: "admin:test",
        ip: None,
    };
    for scope in ["generate", "api", "upload", "all"] {
        bans::ban(&mut conn, user, scope, Some(86_400), scope, &admin).unwrap();
    }
    let ids = restriction_ids(&s, user);
    assert_eq!(ids.len(), 4);
    let results: Vec<_> = ids
        .iter()
        .map(|id| {
            novart::domain::appeals::file(&mut conn, user, *id, "please reconsider this", None)
        })
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    match &results[3] {
        Err(novart::AppError::RateLimited { retry_after_secs }) => {
            assert!(*retry_after_secs > 86_000, "{retry_after_secs}")
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

#[test]
fn an_admin_revoking_a_key_tells_its_owner_why() {
    let s = Setup::new();
    let (user, key) = s.creator("owner@example.com");
    let prefix = key.split('_').nth(1).unwrap().to_string();
    s.ok(&[
        "keys",
        "revoke",
        &prefix,
        "--reason",
        "Found in a public repository",
    ]);
    assert_eq!(s.key_status(&key), Status::Unauthorized);
    let (title, body) = s.last_message(user);
    assert_eq!(title, "An API key was revoked");
    assert!(
        body.contains(&prefix) && body.contains("Found in a public repository"),
        "{body}"
    );
    let (action, after) = s.audit().pop().unwrap();
    assert_eq!(
        (action.as_str(), after["key"].as_str()),
        ("keys.revoke", Some(prefix.as_str()))
    );
    let (ok, out) = s.cli(&["keys", "revoke", &prefix]);
    assert!(!ok && out.contains("already revoked"), "{out}");
}

#[test]
fn restrictions_read_in_the_account_language() {
    let s = Setup::new();
    let (user, key) = s.creator("zh@example.com");
    novart::domain::preferences::set_language(&s.db(), user, "zh-CN").unwrap();
    s.restrict("zh@example.com", "generate", "7d", "测试原因");
    let page = s.client.get("/settings").dispatch().into_string().unwrap();
    assert!(
        page.contains("在 ") && page.contains("你不能发起任务"),
        "banner in Chinese"
    );
    assert!(page.contains("账号限制") && page.contains("提交申诉"));
    let (st, v) = s.studio_call("/api/v1/tasks", task("x").to_string().into_bytes(), true);
    assert_eq!(st, Status::Forbidden);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("你的账号不能发起任务"),
        "{v}"
    );
    // A key caller always gets English.
    let (_, v) = s.with_key(&key, "POST", "/api/v1/tasks", Some(task("x")));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Your account may not start tasks"));
}
