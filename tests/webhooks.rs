//! Webhooks: the outbox is written with the task's final state, deliveries
//! are signed per Standard Webhooks (checked with the `standardwebhooks`
//! crate), retried per the schedule, and the SSRF guard holds (fake DNS).

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake_http::{serve, Resp};
use common::{app_with_user, PASSWORD};
use novart::config::Config;
use novart::domain::ssrf::{self, Resolve};
use novart::domain::tasks::{self, NewTaskInput};
use novart::jobs::webhooks::Deliverer;
use serde_json::{json, Value};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.queue.workers = 0;
    c.webhooks.allow_private_targets = true; // the fake receiver is on loopback
    c.webhooks.retry_schedule_secs = vec![0];
    c.webhooks.attempts = 3;
    c.webhooks.timeout_secs = 2;
    c
}

fn submit(app: &novart::App, user: novart::model::UserId, url: &str) -> novart::model::Task {
    let mut conn = app.db.get().unwrap();
    let input = NewTaskInput {
        prompt: "a paper boat".into(),
        model: "novart-builtin".into(),
        webhook_url: Some(url.into()),
        ..Default::default()
    };
    tasks::submit(
        &mut conn,
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
    .unwrap()
}

fn deliverer(app: &novart::App) -> Deliverer {
    Deliverer::new(app.db.clone(), app.config.clone(), app.secret.clone())
}

fn deliveries(app: &novart::App) -> Vec<novart::domain::webhooks::Delivery> {
    let conn = app.db.get().unwrap();
    let mut all = Vec::new();
    for u in 1..=5 {
        all.extend(novart::domain::webhooks::list(&conn, novart::model::UserId(u), 100).unwrap());
    }
    all
}

fn headers(req: &common::fake_http::Req) -> ureq::http::HeaderMap {
    let mut h = ureq::http::HeaderMap::new();
    for (k, v) in &req.headers {
        h.append(
            ureq::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn our_signature_matches_the_test_vector_and_the_reference_crate() {
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    let ours =
        novart::domain::webhooks::sign(secret, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body)
            .unwrap();
    assert_eq!(ours, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    let theirs = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(ours, theirs);
    // A fresh secret works with the reference crate too.
    let fresh = novart::domain::webhooks::new_secret();
    assert!(fresh.starts_with("whsec_"));
    let s = novart::domain::webhooks::sign(&fresh, "msg_x", 5, "{}").unwrap();
    assert_eq!(
        s,
        standardwebhooks::Webhook::new(&fresh)
            .unwrap()
            .sign("msg_x", 5, b"{}")
            .unwrap()
    );
}

#[test]
fn a_finished_task_is_delivered_signed_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let (app, user) = app_with_user(&config(dir.path()), "hook@example.com");
    let fake = serve(|_| Resp::json(204, json!({})));
    let task = submit(&app, user, &format!("{}/hooks/novart", fake.url()));
    // No delivery until the task is final.
    assert!(deliveries(&app).is_empty());
    assert!(app.engine.process_one("w").unwrap());
    let d = deliveries(&app);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event, "task.succeeded");
    assert_eq!(d[0].state, "pending");

    assert_eq!(deliverer(&app).run_due().unwrap(), 1);
    let reqs = fake.requests_to("/hooks/novart");
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let secret = novart::domain::webhooks::secret(&mut app.db.get().unwrap(), user).unwrap();
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&req.body, &headers(req))
        .expect("the reference crate accepts our signature");
    // A different secret does not verify.
    let other = novart::domain::webhooks::new_secret();
    assert!(standardwebhooks::Webhook::new(&other)
        .unwrap()
        .verify(&req.body, &headers(req))
        .is_err());
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["type"], "task.succeeded");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["id"], task.public_id.as_str());
    assert_eq!(body["data"]["status"], "succeeded");
    assert!(body["data"]["outputs"][0]["url"]
        .as_str()
        .unwrap()
        .contains("signature="));
    let d = &deliveries(&app)[0];
    assert_eq!(d.state, "delivered");
    assert_eq!(d.last_status, Some(204));

    // Redelivery sends the same id and the same bytes.
    let mut conn = app.db.get().unwrap();
    novart::domain::webhooks::redeliver(&mut conn, user, &d.public_id).unwrap();
    drop(conn);
    deliverer(&app).run_due().unwrap();
    let reqs = fake.requests_to("/hooks/novart");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("webhook-id"), req.header("webhook-id"));
    assert_eq!(reqs[1].body, req.body);
    let attempts = novart::domain::webhooks::attempts(&app.db.get().unwrap(), d.id).unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.status == Some(204)));

    // Finished deliveries go with the request log's retention.
    let conn = app.db.get().unwrap();
    let later = novart::domain::now() + 31 * 86_400;
    let report = novart::domain::retention::sweep(&app.db, &app.config, later).unwrap();
    assert_eq!(report.webhook_deliveries_deleted, 1);
    assert!(deliveries(&app).is_empty());
    assert!(novart::domain::webhooks::attempts(&conn, d.id)
        .unwrap()
        .is_empty());
}

#[test]
fn cancel_and_failure_write_the_outbox_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (app, user) = app_with_user(&config(dir.path()), "outbox@example.com");
    let t = submit(&app, user, "http://127.0.0.1:9/x");
    tasks::cancel(&mut app.db.get().unwrap(), user, &t.public_id).unwrap();
    let d = deliveries(&app);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event, "task.canceled");
    // Canceling twice does not add a second event.
    let _ = tasks::cancel(&mut app.db.get().unwrap(), user, &t.public_id);
    assert_eq!(deliveries(&app).len(), 1);

    let t = submit(&app, user, "http://127.0.0.1:9/y");
    let claimed = tasks::claim(&mut app.db.get().unwrap(), &app.config, "w")
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, t.id);
    tasks::fail(
        &mut app.db.get().unwrap(),
        &app.config,
        &claimed,
        tasks::Failure::Final {
            message: "no",
            raw: "no",
        },
    )
    .unwrap();
    let d = deliveries(&app);
    assert!(d.iter().any(|d| d.event == "task.failed"));
    // A task without a webhook URL writes nothing.
    let mut conn = app.db.get().unwrap();
    let input = NewTaskInput {
        prompt: "quiet".into(),
        model: "novart-builtin".into(),
        ..Default::default()
    };
    let t = tasks::submit(
        &mut conn,
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
    .unwrap();
    tasks::cancel(&mut conn, user, &t.public_id).unwrap();
    assert_eq!(deliveries(&app).len(), 2);
}

#[test]
fn failures_retry_and_every_attempt_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (app, user) = app_with_user(&config(dir.path()), "retry@example.com");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let fake = serve(move |_| {
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            Resp::json(500, json!({"error": "busy"}))
        } else {
            Resp::json(200, json!({"ok": true}))
        }
    });
    submit(&app, user, &format!("{}/h", fake.url()));
    app.engine.process_one("w").unwrap();
    let dl = deliverer(&app);
    dl.run_due().unwrap();
    let d = &deliveries(&app)[0];
    assert_eq!(d.state, "pending");
    assert_eq!(d.last_status, Some(500));
    dl.run_due().unwrap();
    let d = &deliveries(&app)[0];
    assert_eq!(d.state, "delivered");
    let attempts = novart::domain::webhooks::attempts(&app.db.get().unwrap(), d.id).unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );
    assert!(attempts[0].response.as_deref().unwrap().contains("busy"));
    let reqs = fake.requests_to("/h");
    // Same id each attempt; a fresh timestamp is allowed.
    assert_eq!(reqs[0].header("webhook-id"), reqs[1].header("webhook-id"));

    // Gives up after `attempts`.
    let fake = serve(|_| Resp::json(503, json!({})));
    submit(&app, user, &format!("{}/down", fake.url()));
    app.engine.process_one("w").unwrap();
    for _ in 0..5 {
        dl.run_due().unwrap();
    }
    assert_eq!(fake.requests_to("/down").len(), 3);
    assert!(deliveries(&app)
        .iter()
        .any(|d| d.state == "failed" && d.attempts == 3));
}

#[test]
fn gone_redirects_retry_after_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.webhooks.retry_schedule_secs = vec![5];
    let (app, user) = app_with_user(&c, "edge@example.com");
    let inner = serve(|_| Resp::json(200, json!({})));
    let inner_url = format!("{}/secret-admin", inner.url());
    let fake = serve(move |r| match r.path.as_str() {
        "/gone" => Resp::json(410, json!({})),
        "/moved" => Resp::json(302, json!({})).header("Location", &inner_url),
        "/busy" => Resp::json(429, json!({})).header("Retry-After", "120"),
        _ => Resp::json(200, json!({})).slow(Duration::from_secs(4)),
    });
    for path in ["/gone", "/moved", "/busy", "/slow"] {
        submit(&app, user, &format!("{}{path}", fake.url()));
        app.engine.process_one("w").unwrap();
    }
    let before = novart::domain::now();
    deliverer(&app).run_due().unwrap();
    let by_url = |p: &str| {
        deliveries(&app)
            .into_iter()
            .find(|d| d.url.ends_with(p))
            .unwrap()
    };
    assert_eq!(by_url("/gone").state, "gone");
    let moved = by_url("/moved");
    assert_eq!(moved.state, "pending");
    assert!(moved.last_error.unwrap().contains("redirect"));
    assert!(
        inner.requests_to("/").is_empty(),
        "the redirect was not followed"
    );
    let busy = by_url("/busy");
    assert!(busy.next_attempt_at >= before + 120);
    let slow = by_url("/slow");
    assert_eq!(slow.state, "pending");
    assert_eq!(slow.last_status, None);
    let a = novart::domain::webhooks::attempts(&app.db.get().unwrap(), slow.id).unwrap();
    assert!(
        a[0].latency_ms >= 1500 && a[0].latency_ms < 4000,
        "{:?}",
        a[0]
    );
    // 410 stops: nothing more is sent.
    app.db
        .get()
        .unwrap()
        .execute("UPDATE webhook_deliveries SET next_attempt_at = 0", ())
        .unwrap();
    deliverer(&app).run_due().unwrap();
    assert_eq!(fake.requests_to("/gone").len(), 1);
}

/// DNS answers from a table; counts lookups; can change its answer after the
/// first lookup (rebinding).
struct FakeDns {
    answers: Mutex<Vec<(String, Vec<IpAddr>)>>,
    later: Mutex<Option<(String, Vec<IpAddr>)>>,
    lookups: AtomicUsize,
}

impl FakeDns {
    fn new(table: &[(&str, &[&str])]) -> FakeDns {
        FakeDns {
            answers: Mutex::new(
                table
                    .iter()
                    .map(|(h, ips)| {
                        (
                            h.to_string(),
                            ips.iter().map(|i| i.parse().unwrap()).collect(),
                        )
                    })
                    .collect(),
            ),
            later: Mutex::new(None),
            lookups: AtomicUsize::new(0),
        }
    }
}

impl Resolve for FakeDns {
    fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, String> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .answers
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, ips)| ips.clone())
            .ok_or_else(|| format!("no such host {host}"))?;
        if let Some((h, ips)) = self.later.lock().unwrap().take() {
            let mut a = self.answers.lock().unwrap();
            a.retain(|(x, _)| *x != h);
            a.push((h, ips));
        }
        Ok(answer)
    }
}

#[test]
fn the_ssrf_guard_refuses_internal_targets() {
    let dns = FakeDns::new(&[
        ("public.example", &["93.184.216.34"]),
        ("v6.example", &["2606:2800:220:1:248:1893:25c8:1946"]),
        ("localhost", &["127.0.0.1", "::1"]),
        ("internal.example", &["10.1.2.3"]),
        ("mixed.example", &["93.184.216.34", "127.0.0.1"]),
        ("metadata.example", &["169.254.169.254"]),
    ]);
    let refused = [
        "http://127.0.0.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[::]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://169.254.169.254/latest/meta-data/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://internal.example/",
        "http://mixed.example/",
        "http://metadata.example/",
        "http://user:pass@public.example/",
        "ftp://public.example/",
        "file:///etc/passwd",
        "gopher://public.example/",
        "http://public.example:0/",
        "http://public.example:99999/",
        "http:///nohost",
        "http://public.example\\@127.0.0.1/",
        "http://1.2.3.4.5/",
    ];
    for url in refused {
        assert!(
            ssrf::check(url, &dns, false).is_err(),
            "{url} should be refused"
        );
    }
    let allowed = [
        ("https://public.example/hooks?x=1", 443),
        ("http://public.example:8080/", 8080),
        ("https://v6.example/", 443),
        ("http://93.184.216.34/", 80),
        ("https://[2606:2800:220:1:248:1893:25c8:1946]/", 443),
        ("http://172.32.0.1/", 80),
        ("http://100.128.0.1/", 80),
    ];
    for (url, port) in allowed {
        let t = ssrf::check(url, &dns, false).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(t.port, port);
        assert!(t.addrs.iter().all(|a| ssrf::is_public(a.ip())));
    }
    // The development switch lets loopback through, nothing else changes.
    assert!(ssrf::check("http://127.0.0.1:8080/", &dns, true).is_ok());
    assert!(ssrf::check("ftp://127.0.0.1/", &dns, true).is_err());
}

#[test]
fn delivery_connects_only_to_the_address_it_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.webhooks.allow_private_targets = false;
    c.webhooks.timeout_secs = 1;
    let (app, user) = app_with_user(&c, "rebind@example.com");
    let local = serve(|_| Resp::json(200, json!({})));
    // First lookup: a public address (nothing listens there for us); every
    // later lookup: loopback, where the fake receiver listens.
    let dns = Arc::new(FakeDns::new(&[("rebind.example", &["93.184.216.34"])]));
    *dns.later.lock().unwrap() =
        Some(("rebind.example".into(), vec!["127.0.0.1".parse().unwrap()]));
    let mut conn = app.db.get().unwrap();
    let t = {
        let input = NewTaskInput {
            prompt: "x".into(),
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
        .unwrap()
    };
    let url = format!("http://rebind.example:{}/hook", local.port);
    conn.execute(
        "INSERT INTO webhook_deliveries (public_id, user_id, task_id, event, url, state, next_attempt_at, created_at)
         VALUES ('msg_rebind', ?1, ?2, 'task.canceled', ?3, 'pending', 0, 0)",
        novart::params![user.0, t.id.0, url],
    )
    .unwrap();
    drop(conn);
    let mut dl = deliverer(&app);
    dl.resolver = dns.clone();
    dl.run_due().unwrap();
    assert_eq!(
        dns.lookups.load(Ordering::SeqCst),
        1,
        "resolved once per attempt"
    );
    assert!(local.requests_to("/").is_empty(), "never reached loopback");
    // The next attempt resolves again, sees loopback, and refuses.
    app.db
        .get()
        .unwrap()
        .execute("UPDATE webhook_deliveries SET next_attempt_at = 0", ())
        .unwrap();
    dl.run_due().unwrap();
    assert!(local.requests_to("/").is_empty());
    let d = &deliveries(&app)[0];
    assert!(
        d.last_error.as_deref().unwrap().contains("refused"),
        "{:?}",
        d.last_error
    );
}

#[test]
fn webhook_urls_are_checked_when_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.webhooks.allow_private_targets = false;
    let (app, user) = app_with_user(&c, "save@example.com");
    let mut conn = app.db.get().unwrap();
    for url in [
        "http://127.0.0.1/x",
        "http://0x7f000001/",
        "http://localhost:8000/",
        "ftp://example.com/",
    ] {
        let input = NewTaskInput {
            prompt: "x".into(),
            model: "novart-builtin".into(),
            webhook_url: Some(url.into()),
            ..Default::default()
        };
        let err = tasks::submit(
            &mut conn,
            &app.engine.config,
            &app.engine.catalog,
            user,
            &input,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                novart::AppError::Invalid {
                    field: Some("webhook_url"),
                    ..
                }
            ),
            "{url}: {err}"
        );
    }
    let _ = PASSWORD;
}
