//! The developer API with keys: authentication, permissions, per-key limits
//! (exact under concurrency), idempotency, signed output links, isolation.

mod common;

use std::sync::{Arc, Barrier};

use common::{http, live, TestApp};
use novart::domain::apikeys::{self, Authority, KeySpec};
use novart::model::UserId;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::LocalResponse;
use serde_json::{json, Value};

fn user(app: &novart::App, email: &str) -> UserId {
    common::verified_user(app, email)
}

fn key(app: &novart::App, user: UserId, f: impl FnOnce(&mut KeySpec)) -> String {
    let mut spec = KeySpec::defaults(&app.config, "test key");
    f(&mut spec);
    let mut conn = app.db.get().unwrap();
    apikeys::create(
        &mut conn,
        &app.config,
        &app.engine.catalog,
        user,
        spec,
        Authority::Admin,
    )
    .unwrap()
    .1
}

fn grant(app: &novart::App, user: UserId, amount: i64) {
    let mut conn = app.db.get().unwrap();
    novart::domain::wallet::grant(&mut conn, user, amount, false, "test", "test credits").unwrap();
}

fn state(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn call<'a>(
    t: &'a TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> LocalResponse<'a> {
    let req = match method {
        "GET" => t.client.get(path.to_string()),
        _ => t.client.post(path.to_string()),
    }
    .header(Header::new("Authorization", format!("Bearer {key}")));
    match body {
        Some(b) => req.header(ContentType::JSON).body(b.to_string()).dispatch(),
        None => req.dispatch(),
    }
}

fn json_of(r: LocalResponse<'_>) -> Value {
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

fn app() -> TestApp {
    TestApp::with(|c| c.queue.workers = 0)
}

#[test]
fn keys_authenticate_are_stored_hashed_and_die_when_revoked() {
    let t = app();
    let a = state(&t);
    let u = user(a, "dev@example.com");
    let secret = key(a, u, |_| {});
    let prefix = apikeys::parse(&secret).unwrap().to_string();

    let r = call(&t, &secret, "GET", "/api/v1/account", None);
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(r.headers().get_one("x-ratelimit-limit"), Some("60"));
    assert_eq!(r.headers().get_one("x-ratelimit-remaining"), Some("59"));
    assert!(r.headers().get_one("x-request-id").is_some());
    let v = json_of(r);
    assert_eq!(v["email"], "dev@example.com");
    assert_eq!(v["key"]["prefix"], prefix.as_str());
    assert_eq!(v["limits"]["daily_cap"], 500);
    assert_eq!(v["usage"]["tasks_today"], 0);

    // The database holds the prefix and a digest, never the secret.
    let conn = t.db();
    let dump: Vec<String> = conn
        .prepare("SELECT prefix || key_hash || name || permissions FROM api_keys")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dump.len(), 1);
    let secret_part = secret.rsplit('_').next().unwrap();
    assert!(!dump[0].contains(secret_part));
    // The database file's bytes too, where there is one (SQLite).
    if !common::pg::chosen() {
        let raw = std::fs::read(t.config.db_path()).unwrap();
        assert!(!raw
            .windows(secret_part.len())
            .any(|w| w == secret_part.as_bytes()));
    }

    // Wrong or malformed keys, other schemes, and keys in the URL: 401.
    let wrong = format!("nva_{prefix}_{}", "A".repeat(32));
    for bad in [wrong.as_str(), "nva_x_y", "sk-abc"] {
        let r = call(&t, bad, "GET", "/api/v1/account", None);
        assert_eq!(r.status(), Status::Unauthorized, "{bad}");
        assert_eq!(json_of(r)["error"]["type"], "authentication_error");
    }
    let r = t
        .client
        .get("/api/v1/account")
        .header(Header::new("Authorization", format!("Basic {secret}")))
        .dispatch();
    assert_eq!(r.status(), Status::Unauthorized);
    for q in [format!("api_key={secret}"), format!("x={secret}")] {
        let r = t.client.get(format!("/api/v1/account?{q}")).dispatch();
        assert_eq!(r.status(), Status::Unauthorized, "{q}");
        let msg = json_of(r)["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("not accepted in the URL"), "{msg}");
        // Even together with a valid header.
        let r = t
            .client
            .get(format!("/api/v1/account?{q}"))
            .header(Header::new("Authorization", format!("Bearer {secret}")))
            .dispatch();
        assert_eq!(r.status(), Status::Unauthorized);
    }

    // Revoked: refused on the very next request, with the reason.
    let k = novart::domain::apikeys::by_prefix(&a.db.get().unwrap(), &prefix)
        .unwrap()
        .unwrap();
    apikeys::revoke(&mut a.db.get().unwrap(), &k, "test").unwrap();
    let r = call(&t, &secret, "GET", "/api/v1/account", None);
    assert_eq!(r.status(), Status::Unauthorized);
    assert_eq!(json_of(r)["error"]["message"], "This API key was revoked.");

    // Expired.
    let secret = key(a, u, |s| s.expires_at = Some(novart::domain::now() + 60));
    assert_eq!(
        call(&t, &secret, "GET", "/api/v1/account", None).status(),
        Status::Ok
    );
    t.db()
        .execute(
            "UPDATE api_keys SET expires_at = 1 WHERE revoked_at IS NULL",
            (),
        )
        .unwrap();
    let r = call(&t, &secret, "GET", "/api/v1/account", None);
    assert_eq!(r.status(), Status::Unauthorized);
    assert_eq!(json_of(r)["error"]["message"], "This API key has expired.");

    // Rotation: the old secret stops, the new one works.
    let secret = key(a, u, |_| {});
    let k =
        novart::domain::apikeys::by_prefix(&a.db.get().unwrap(), apikeys::parse(&secret).unwrap())
            .unwrap()
            .unwrap();
    let (_, rotated) = apikeys::rotate(&mut a.db.get().unwrap(), &k).unwrap();
    assert_eq!(
        call(&t, &secret, "GET", "/api/v1/account", None).status(),
        Status::Unauthorized
    );
    assert_eq!(
        call(&t, &rotated, "GET", "/api/v1/account", None).status(),
        Status::Ok
    );
}

#[test]
fn permissions_and_model_allowlist_are_enforced() {
    let t = app();
    let a = state(&t);
    let u = user(a, "perm@example.com");
    let reader = key(a, u, |s| s.permissions = vec!["read_tasks".into()]);
    let r = call(
        &t,
        &reader,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "a cat"})),
    );
    assert_eq!(r.status(), Status::Forbidden);
    let v = json_of(r);
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("generate"));
    assert_eq!(
        call(&t, &reader, "GET", "/api/v1/account", None).status(),
        Status::Forbidden
    );
    assert_eq!(
        call(&t, &reader, "GET", "/api/v1/tasks", None).status(),
        Status::Ok
    );

    // A key limited to a model it cannot reach sees no models and cannot use
    // the others.
    let mut conn = a.db.get().unwrap();
    let mut spec = KeySpec::defaults(&a.config, "typo");
    spec.models = Some(vec!["no-such-model".into()]);
    let err = apikeys::create(
        &mut conn,
        &a.config,
        &a.engine.catalog,
        u,
        spec,
        Authority::Admin,
    )
    .unwrap_err();
    assert!(err.to_string().contains("Unknown model"), "{err}");
    let scoped = key(a, u, |s| s.models = Some(vec!["novart-builtin".into()]));
    let v = json_of(call(&t, &scoped, "GET", "/api/v1/models", None));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    t.db()
        .execute("UPDATE api_keys SET models = 'other-model'", ())
        .unwrap();
    let r = call(
        &t,
        &scoped,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "a cat"})),
    );
    assert_eq!(r.status(), Status::Forbidden);
    let v = json_of(call(&t, &scoped, "GET", "/api/v1/models", None));
    assert!(v["data"].as_array().unwrap().is_empty());

    // A creator cannot give themselves more than the defaults.
    let mut spec = KeySpec::defaults(&a.config, "greedy");
    spec.rpm = a.config.limits.key_rpm + 1;
    let err = apikeys::create(
        &mut conn,
        &a.config,
        &a.engine.catalog,
        u,
        spec,
        Authority::Creator,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        novart::AppError::Invalid {
            field: Some("rpm"),
            ..
        }
    ));
}

#[test]
fn the_rate_limit_answers_429_with_headers() {
    let t = app();
    let a = state(&t);
    let u = user(a, "rate@example.com");
    let k = key(a, u, |s| s.rpm = 3);
    for left in ["2", "1", "0"] {
        let r = call(&t, &k, "GET", "/api/v1/models", None);
        assert_eq!(r.status(), Status::Ok);
        assert_eq!(r.headers().get_one("x-ratelimit-remaining"), Some(left));
    }
    let r = call(&t, &k, "GET", "/api/v1/models", None);
    assert_eq!(r.status(), Status::TooManyRequests);
    let retry: u64 = r.headers().get_one("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.headers().get_one("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.headers().get_one("x-ratelimit-remaining"), Some("0"));
    assert!(r.headers().get_one("x-ratelimit-reset").is_some());
    let v = json_of(r);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limited");
}

/// Fires `extra + quota` requests at once from as many threads; returns the
/// statuses.
fn burst(
    base: &str,
    key: &str,
    n: usize,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Vec<(u16, Option<String>)> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, url, key, body) = (
                barrier.clone(),
                format!("{base}{path}"),
                key.to_string(),
                body.clone(),
            );
            let method = method.to_string();
            std::thread::spawn(move || {
                let agent = http();
                barrier.wait();
                let r = if method == "GET" {
                    agent
                        .get(&url)
                        .header("Authorization", &format!("Bearer {key}"))
                        .call()
                } else {
                    let mut b = body.unwrap();
                    b["seed"] = json!(i);
                    agent
                        .post(&url)
                        .header("Authorization", &format!("Bearer {key}"))
                        .send_json(b)
                };
                let r = r.unwrap();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), retry)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn count(results: &[(u16, Option<String>)], status: u16) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

#[test]
fn quotas_hold_exactly_under_concurrency() {
    const Q: u32 = 12;
    const EXTRA: usize = 50;
    let server = live(|c| {
        c.queue.workers = 0; // tasks stay queued
        c.limits.key_rpm = 1000;
        c.limits.key_daily_cap = 1000;
    });
    let a = novart::App::new(server.config.clone()).unwrap();
    let u = user(&a, "burst@example.com");
    grant(&a, u, 10_000);
    let task = json!({"prompt": "a lighthouse"});

    // Requests per minute.
    let k = key(&a, u, |s| s.rpm = Q);
    let r = burst(
        &server.base,
        &k,
        Q as usize + EXTRA,
        "GET",
        "/api/v1/models",
        None,
    );
    assert_eq!(count(&r, 200), Q as usize, "{r:?}");
    assert_eq!(count(&r, 429), EXTRA);
    assert!(r
        .iter()
        .filter(|(s, _)| *s == 429)
        .all(|(_, retry)| retry.is_some()));

    // Daily cap.
    let k = key(&a, u, |s| {
        s.daily_cap = Q;
        s.concurrency = 1000;
    });
    let r = burst(
        &server.base,
        &k,
        Q as usize + EXTRA,
        "POST",
        "/api/v1/tasks",
        Some(task.clone()),
    );
    assert_eq!(count(&r, 201), Q as usize, "{r:?}");
    assert_eq!(count(&r, 429), EXTRA);

    // Concurrency (queued or running tasks).
    let k = key(&a, u, |s| s.concurrency = Q);
    let r = burst(
        &server.base,
        &k,
        Q as usize + EXTRA,
        "POST",
        "/api/v1/tasks",
        Some(task.clone()),
    );
    assert_eq!(count(&r, 201), Q as usize, "{r:?}");
    assert_eq!(count(&r, 429), EXTRA);

    // The balance: exactly as many tasks as credits.
    let poor = user(&a, "poor@example.com");
    let have = novart::domain::wallet::get(&a.db.get().unwrap(), poor)
        .unwrap()
        .total();
    let k = key(&a, poor, |s| s.concurrency = 1000);
    let r = burst(
        &server.base,
        &k,
        have as usize + EXTRA,
        "POST",
        "/api/v1/tasks",
        Some(task),
    );
    assert_eq!(count(&r, 201), have as usize, "{r:?}");
    assert_eq!(count(&r, 402), EXTRA);
    let conn = a.db.get().unwrap();
    assert_eq!(novart::domain::wallet::get(&conn, poor).unwrap().total(), 0);
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
}

#[test]
fn idempotency_keys_replay_or_conflict() {
    let t = app();
    let a = state(&t);
    let u = user(a, "idem@example.com");
    let k = key(a, u, |_| {});
    let body = json!({"prompt": "a red kite", "seed": 3}).to_string();
    let post = |body: &str, idem: &str| {
        t.client
            .post("/api/v1/tasks")
            .header(Header::new("Authorization", format!("Bearer {k}")))
            .header(Header::new("Idempotency-Key", idem.to_string()))
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
    };
    let r = post(&body, "order-17");
    assert_eq!(r.status(), Status::Created);
    let first = json_of(r);
    let r = post(&body, "order-17");
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(json_of(r)["id"], first["id"]);
    let r = post(&json!({"prompt": "a blue kite"}).to_string(), "order-17");
    assert_eq!(r.status(), Status::Conflict);
    assert_eq!(json_of(r)["error"]["code"], "conflict");
    assert_eq!(post(&body, "order-18").status(), Status::Created);
    let charges: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM ledger WHERE kind = 'task_charge'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(charges, 2);
}

#[test]
fn idempotency_holds_under_concurrency() {
    let server = live(|c| c.queue.workers = 0);
    let a = novart::App::new(server.config.clone()).unwrap();
    let u = user(&a, "idem-race@example.com");
    let k = key(&a, u, |s| s.concurrency = 100);
    let n = 24;
    let barrier = Arc::new(Barrier::new(n));
    let ids: Vec<String> = (0..n)
        .map(|_| {
            let (barrier, url, k) = (
                barrier.clone(),
                format!("{}/api/v1/tasks", server.base),
                k.clone(),
            );
            std::thread::spawn(move || {
                let agent = http();
                barrier.wait();
                let mut r = agent
                    .post(&url)
                    .header("Authorization", &format!("Bearer {k}"))
                    .header("Idempotency-Key", "same-click")
                    .content_type("application/json")
                    .send(r#"{"prompt":"one only"}"#)
                    .unwrap();
                assert!(matches!(r.status().as_u16(), 200 | 201), "{}", r.status());
                let v: Value = r.body_mut().read_json().unwrap();
                v["id"].as_str().unwrap().to_string()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let conn = a.db.get().unwrap();
    let tasks: i64 = conn
        .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
        .unwrap();
    assert_eq!(tasks, 1);
}

#[test]
fn outputs_are_signed_links_and_users_see_only_their_own_tasks() {
    let t = app();
    let a = state(&t);
    let alice = user(a, "alice@example.com");
    let bob = user(a, "bob@example.com");
    let ka = key(a, alice, |_| {});
    let kb = key(a, bob, |_| {});
    let r = call(
        &t,
        &ka,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "an orchard", "n": 2})),
    );
    assert_eq!(r.status(), Status::Created);
    let id = json_of(r)["id"].as_str().unwrap().to_string();
    assert!(a.engine.process_one("test").unwrap());
    let v = json_of(call(&t, &ka, "GET", &format!("/api/v1/tasks/{id}"), None));
    assert_eq!(v["status"], "succeeded");
    let out = &v["outputs"][0];
    let url = out["url"].as_str().unwrap();
    assert!(url.starts_with(&t.config.public_url()), "{url}");
    assert!(out["url_expires_at"].as_i64().unwrap() <= out["expires_at"].as_i64().unwrap());

    // The signed link works without any session (a fresh client) ...
    let fresh = t.other_browser();
    let path = common::local_path(url);
    let r = fresh.get(path.clone()).dispatch();
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(r.content_type(), Some(ContentType::PNG));
    let r = fresh
        .get(common::local_path(out["preview_url"].as_str().unwrap()))
        .dispatch();
    assert_eq!(r.content_type(), Some(ContentType::JPEG));
    // ... but not once tampered with, expired or moved to another image.
    let tampered = path.replace("signature=", "signature=0");
    assert_eq!(fresh.get(tampered).dispatch().status(), Status::Forbidden);
    let (_, query) = path.split_once('?').unwrap();
    let exp: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let longer = path.replace(
        &format!("expires={exp}"),
        &format!("expires={}", exp + 3600),
    );
    assert_eq!(fresh.get(longer).dispatch().status(), Status::Forbidden);
    let other_id = v["outputs"][1]["id"].as_str().unwrap();
    let moved = path.replace(out["id"].as_str().unwrap(), other_id);
    assert_eq!(fresh.get(moved).dispatch().status(), Status::Forbidden);
    // Without a signature or session: sign in first.
    let plain = path.split('?').next().unwrap().to_string();
    assert_eq!(fresh.get(plain).dispatch().status(), Status::Unauthorized);

    // Bob's key sees nothing of Alice's.
    assert_eq!(
        call(&t, &kb, "GET", &format!("/api/v1/tasks/{id}"), None).status(),
        Status::NotFound
    );
    assert_eq!(
        call(&t, &kb, "POST", &format!("/api/v1/tasks/{id}/cancel"), None).status(),
        Status::NotFound
    );
    let v = json_of(call(&t, &kb, "GET", "/api/v1/tasks", None));
    assert!(v["data"].as_array().unwrap().is_empty());
    let v = json_of(call(&t, &ka, "GET", "/api/v1/tasks?status=succeeded", None));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

fn secret_in(html: &str) -> String {
    let start = html
        .find("id=\"new-key-secret\"")
        .expect("the new key is shown");
    let rest = &html[start..];
    let a = rest.find('>').unwrap() + 1;
    let b = rest.find("</code>").unwrap();
    rest[a..b].to_string()
}

#[test]
fn the_developer_center_manages_keys_logs_and_limits() {
    let t = app();
    t.signed_in_user("center@example.com");
    let html = t.page("/developer");
    assert!(html.contains("No keys yet"));
    assert!(html.contains("whsec_"), "the signing secret is on the page");

    // Create: the secret is shown once.
    let r = t.submit(
        "/developer",
        "/developer/keys",
        &[
            ("name", "shop backend"),
            ("permissions", "generate"),
            ("permissions", "read_tasks"),
            ("rpm", "30"),
            ("concurrency", ""),
            ("daily_cap", "100"),
            ("expires_days", "30"),
        ],
    );
    assert_eq!(r.status(), Status::Created);
    let html = r.into_string().unwrap();
    let secret = secret_in(&html);
    assert!(apikeys::parse(&secret).is_some(), "{secret}");
    assert!(html.contains("shown only this once"));
    let html = t.page("/developer").replace("&#x2F;", "/");
    assert!(!html.contains(&secret), "never shown again");
    assert!(html.contains("shop backend"));
    assert!(html.contains("30/min"));

    // A creator cannot exceed the defaults; the form says why.
    let r = t.submit(
        "/developer",
        "/developer/keys",
        &[
            ("name", "greedy"),
            ("permissions", "generate"),
            ("rpm", "100000"),
        ],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r.into_string().unwrap().contains("without approval"));
    // CSRF is required.
    let r = t.post_raw(
        "/developer/keys",
        &[("name", "x"), ("permissions", "generate")],
    );
    assert_eq!(r.status(), Status::Forbidden);

    // Calls show up in the request log, with a summary, and export.
    let r = call(
        &t,
        &secret,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "a tiny robot", "n": 1})),
    );
    assert_eq!(r.status(), Status::Created);
    let task = json_of(r)["id"].as_str().unwrap().to_string();
    let r = call(&t, &secret, "GET", "/api/v1/account", None);
    assert_eq!(r.status(), Status::Forbidden, "no read_account permission");
    state(&t).request_log.flush();
    let prefix = apikeys::parse(&secret).unwrap().to_string();
    let html = t.page("/developer");
    assert!(
        html.contains("POST &#x2F;api&#x2F;v1&#x2F;tasks") || html.contains("POST /api/v1/tasks"),
        "{html}"
    );
    assert!(html.contains("a tiny robot"));
    assert!(html.contains(&task));
    let html = t.page("/developer?outcome=error");
    assert!(html.contains("forbidden"));
    assert!(!html.contains("a tiny robot"));
    let csv = t
        .get(&format!("/developer/requests.csv?key={prefix}"))
        .into_string()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("time_utc,key_prefix,method,path,status"));
    assert!(csv.contains(&task));
    let v: Value = serde_json::from_str(
        &t.get("/developer/requests.json?outcome=ok")
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["status"], 201);
    assert_eq!(v["data"][0]["key_prefix"], prefix.as_str());
    // The studio's own (session) calls are a filter of their own.
    let token = t.csrf("/developer");
    let r = t
        .client
        .get("/api/v1/tasks")
        .header(Header::new("x-csrf-token", token))
        .dispatch();
    assert_eq!(r.status(), Status::Ok);
    state(&t).request_log.flush();
    let v: Value = serde_json::from_str(
        &t.get("/developer/requests.json?key=studio")
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert!(rows[0]["key_prefix"].is_null());
    assert!(t
        .page("/developer?key=studio")
        .contains("GET &#x2F;api&#x2F;v1&#x2F;tasks"));

    // Ask for more; the admin approves; the key has the new limits and the
    // creator has a message.
    let r = t.submit(
        "/developer",
        "/developer/limits",
        &[
            ("key", &prefix),
            ("rpm", "600"),
            ("concurrency", ""),
            ("daily_cap", ""),
            ("reason", "Black Friday batch jobs for the shop"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let r = t.submit(
        "/developer",
        "/developer/limits",
        &[
            ("key", &prefix),
            ("rpm", "900"),
            ("reason", "asking again while pending"),
        ],
    );
    assert_eq!(r.status(), Status::Conflict);
    let a = state(&t);
    let mut conn = a.db.get().unwrap();
    let pending = novart::domain::limits::list(&conn, true).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].rpm, Some(600));
    novart::domain::limits::approve(&mut conn, pending[0].id, &Default::default(), "admin:test")
        .unwrap();
    let r = call(&t, &secret, "GET", "/api/v1/tasks", None);
    assert_eq!(r.headers().get_one("x-ratelimit-limit"), Some("600"));
    let msgs = novart::domain::messages::list(&conn, novart::model::UserId(1)).unwrap();
    assert!(msgs[0].title.contains("approved"), "{msgs:?}");
    assert!(t.page("/developer").contains("approved"));

    // Rotate and revoke from the page.
    let r = t.submit(
        "/developer",
        &format!("/developer/keys/{prefix}/rotate"),
        &[],
    );
    assert_eq!(r.status(), Status::Ok);
    let rotated = secret_in(&r.into_string().unwrap());
    assert_eq!(
        call(&t, &secret, "GET", "/api/v1/tasks", None).status(),
        Status::Unauthorized
    );
    assert_eq!(
        call(&t, &rotated, "GET", "/api/v1/tasks", None).status(),
        Status::Ok
    );
    let new_prefix = apikeys::parse(&rotated).unwrap().to_string();
    let r = t.submit(
        "/developer",
        &format!("/developer/keys/{new_prefix}/revoke"),
        &[],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(
        call(&t, &rotated, "GET", "/api/v1/tasks", None).status(),
        Status::Unauthorized
    );
    assert!(t.page("/developer").contains("revoked"));

    // Another user cannot touch this key.
    let before = novart::domain::webhooks::secret(&mut conn, novart::model::UserId(1)).unwrap();
    t.submit("/", "/logout", &[]);
    t.signed_in_user("other-dev@example.com");
    let r = t.submit(
        "/developer",
        &format!("/developer/keys/{new_prefix}/rotate"),
        &[],
    );
    assert_eq!(r.status(), Status::NotFound);
    // The webhook secret rotates per account.
    let r = t.submit("/developer", "/developer/webhook-secret", &[]);
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(
        novart::domain::webhooks::secret(&mut conn, novart::model::UserId(1)).unwrap(),
        before
    );
}

#[test]
fn openapi_describes_every_api_route_and_the_real_shapes() {
    let t = app();
    let r = t.client.get("/api/openapi.json").dispatch();
    assert_eq!(r.status(), Status::Ok);
    let doc = json_of(r);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut seen = 0;
    for route in t.client.rocket().routes() {
        let path = route.uri.path().to_string();
        if !(path.starts_with("/api/v1/") || path.starts_with("/v1/")) {
            continue;
        }
        let openapi_path = path.replace('<', "{").replace('>', "}");
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            paths
                .get(&openapi_path)
                .and_then(|p| p.get(&method))
                .is_some(),
            "{method} {openapi_path} is not in /api/openapi.json"
        );
        seen += 1;
    }
    assert!(seen >= 12, "{seen}");
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for part in text.split("#/components/schemas/").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "missing schema {name}"
        );
    }

    // The Task schema lists exactly what the API sends.
    let a = state(&t);
    let u = user(a, "schema@example.com");
    let k = key(a, u, |_| {});
    let r = call(
        &t,
        &k,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "shape check"})),
    );
    let id = json_of(r)["id"].as_str().unwrap().to_string();
    assert!(a.engine.process_one("w").unwrap());
    let task = json_of(call(&t, &k, "GET", &format!("/api/v1/tasks/{id}"), None));
    let schema = &doc["components"]["schemas"]["Task"];
    let mut sent: Vec<&String> = task.as_object().unwrap().keys().collect();
    let mut described: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    sent.sort();
    described.sort();
    assert_eq!(sent, described);
    for req in schema["required"].as_array().unwrap() {
        assert!(task.get(req.as_str().unwrap()).is_some(), "{req}");
    }
    let out_schema = &doc["components"]["schemas"]["Output"]["properties"];
    for key in task["outputs"][0].as_object().unwrap().keys() {
        assert!(
            out_schema.get(key).is_some(),
            "output field {key} undocumented"
        );
    }
    let err = json_of(call(&t, &k, "GET", "/api/v1/tasks/nope", None));
    for f in ["message", "type", "param", "code"] {
        assert!(err["error"].get(f).is_some());
    }

    let html = t.page("/docs/api");
    assert!(html.contains("webhook-signature"));
    assert!(html.contains("base_url="));
    assert!(html.contains("Idempotency-Key"));
}

#[test]
fn request_logs_and_idempotency_keys_expire_with_the_retention_sweep() {
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        c.api.request_log_retention_days = 7;
        c.api.idempotency_hours = 24;
    });
    let a = state(&t);
    let u = user(a, "old@example.com");
    let k = key(a, u, |_| {});
    let r = t
        .client
        .post("/api/v1/tasks")
        .header(Header::new("Authorization", format!("Bearer {k}")))
        .header(Header::new("Idempotency-Key", "k1"))
        .header(ContentType::JSON)
        .body(json!({"prompt": "old"}).to_string())
        .dispatch();
    assert_eq!(r.status(), Status::Created);
    a.request_log.flush();
    let conn = t.db();
    let count = |sql: &str| -> i64 { conn.query_row(sql, (), |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM api_requests"), 1);
    assert_eq!(count("SELECT count(*) FROM idempotency"), 1);
    let now = novart::domain::now();
    // Six days later both are kept; eight days later both are gone.
    novart::domain::retention::sweep(&a.db, &t.config, now + 6 * 3600).unwrap();
    assert_eq!(count("SELECT count(*) FROM api_requests"), 1);
    assert_eq!(count("SELECT count(*) FROM idempotency"), 1);
    let report = novart::domain::retention::sweep(&a.db, &t.config, now + 8 * 86_400).unwrap();
    assert_eq!(report.request_logs_deleted, 1);
    assert_eq!(report.idempotency_keys_deleted, 1);
    assert_eq!(count("SELECT count(*) FROM api_requests"), 0);
    assert_eq!(count("SELECT count(*) FROM idempotency"), 0);
    assert_eq!(
        count("SELECT count(*) FROM tasks"),
        1,
        "the task itself stays"
    );
}

/// The studio's form sent twice (a double click without JavaScript, a
/// reload that posts again) makes one task and one charge; the next page's
/// form is a new task again.
#[test]
fn the_studio_form_sent_twice_makes_one_task() {
    let t = app();
    t.signed_in_user("twice@example.com");
    let page = t.get("/studio").into_string().unwrap();
    let csrf = common::csrf_in(&page);
    let key_of = |html: &str| {
        let at = html
            .find("id=\"submit_key\"")
            .expect("the studio has a submit key");
        let v = &html[at..];
        let start = v.find("value=\"").unwrap() + 7;
        v[start..start + v[start..].find('"').unwrap()].to_string()
    };
    let submit_key = key_of(&page);
    let post = |key: &str, prompt: &str| {
        t.client
            .post("/studio")
            .header(ContentType::Form)
            .body(common::form_body(&[
                ("csrf_token", &csrf),
                ("prompt", prompt),
                ("model", "novart-builtin"),
                ("aspect_ratio", "1:1"),
                ("resolution", "1024"),
                ("n", "1"),
                ("submit_key", key),
            ]))
            .dispatch()
            .status()
    };
    let count = |sql: &str| -> i64 {
        state(&t)
            .db
            .get()
            .unwrap()
            .query_row(sql, (), |r| r.get(0))
            .unwrap()
    };
    assert_eq!(post(&submit_key, "a lighthouse"), Status::SeeOther);
    assert_eq!(post(&submit_key, "a lighthouse"), Status::SeeOther);
    assert_eq!(count("SELECT count(*) FROM tasks"), 1);
    assert_eq!(
        count("SELECT count(*) FROM ledger WHERE kind = 'task_charge'"),
        1
    );
    // The same key with another prompt is not taken for the first task.
    let r = post(&submit_key, "a different prompt");
    assert_eq!(r, Status::Conflict);
    assert_eq!(count("SELECT count(*) FROM tasks"), 1);
    // A new page, a new key: the same prompt again is a second task.
    let next = key_of(&t.get("/studio").into_string().unwrap());
    assert_ne!(next, submit_key);
    assert_eq!(post(&next, "a lighthouse"), Status::SeeOther);
    assert_eq!(count("SELECT count(*) FROM tasks"), 2);
}

/// `/v1/images/generations` honours `Idempotency-Key` through the same
/// rule as the native API: a retried call returns the first call's images
/// and pays once.
#[test]
fn v1_with_an_idempotency_key_pays_once() {
    let server = live(|c| c.queue.workers = 1);
    let app = novart::App::new(server.config.clone()).unwrap();
    let u = user(&app, "v1idem@example.com");
    let k = key(&app, u, |_| {});
    let send = |prompt: &str| {
        let mut r = http()
            .post(&format!("{}/v1/images/generations", server.base))
            .header("Authorization", &format!("Bearer {k}"))
            .header("Idempotency-Key", "retry-1")
            .content_type("application/json")
            .send(json!({ "prompt": prompt }).to_string())
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap();
        (status, v)
    };
    let (s1, first) = send("a red kite");
    assert_eq!(s1, 200, "{first}");
    let (s2, again) = send("a red kite");
    assert_eq!(s2, 200, "{again}");
    assert_eq!(first["task_id"], again["task_id"]);
    let charges: i64 = app
        .db
        .get()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM ledger WHERE kind = 'task_charge'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(charges, 1);
    let (s3, other) = send("another picture");
    assert_eq!(s3, 409, "{other}");
}
