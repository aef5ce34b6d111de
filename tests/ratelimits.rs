//! Rate limits on the account pages and redemption: per IP (the socket's,
//! X-Forwarded-For only from a trusted proxy) and per account; 429 with
//! Retry-After and the form shown again with a message.

mod common;

use std::net::SocketAddr;

use common::{form_body, TestApp, PASSWORD};
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::LocalResponse;

fn post<'a>(
    t: &'a TestApp,
    path: &str,
    fields: &[(&str, &str)],
    remote: &str,
    forwarded: Option<&str>,
) -> LocalResponse<'a> {
    let token = t.csrf("/login");
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    let mut req = t
        .client
        .post(path.to_string())
        .remote(remote.parse::<SocketAddr>().unwrap())
        .header(ContentType::Form)
        .body(form_body(&all));
    if let Some(f) = forwarded {
        req = req.header(Header::new("X-Forwarded-For", f.to_string()));
    }
    req.dispatch()
}

#[test]
fn sign_in_brute_force_with_forged_forwarding_headers_is_still_limited() {
    let t = TestApp::new();
    // 50 attempts from one socket address, each claiming another client in
    // X-Forwarded-For and aiming at another account: the per-IP limit holds.
    let mut statuses = Vec::new();
    for i in 0..50 {
        let email = format!("target{i}@example.com");
        let xff = format!("198.51.100.{i}, 10.0.0.{i}");
        let r = post(
            &t,
            "/login",
            &[("email", &email), ("password", "wrong password")],
            "203.0.113.9:4000",
            Some(&xff),
        );
        let retry = r.headers().get_one("Retry-After").map(str::to_string);
        let status = r.status();
        let body = r.into_string().unwrap();
        if status == Status::TooManyRequests {
            assert!(retry.is_some(), "429 carries Retry-After");
            assert!(
                body.contains("Too many attempts"),
                "a friendly message on the form"
            );
            assert!(
                body.contains("name=\"email\""),
                "the sign-in form is shown again"
            );
        }
        statuses.push(status.code);
    }
    let limit = t.config.limits.sign_in_per_ip_15min as usize;
    assert!(statuses[..limit].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[limit..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another address is not affected.
    let r = post(
        &t,
        "/login",
        &[("email", "x@example.com"), ("password", "nope")],
        "203.0.113.10:4000",
        None,
    );
    assert_eq!(r.status(), Status::Unauthorized);
}

#[test]
fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let t = TestApp::with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    for i in 0..50 {
        let email = format!("someone{i}@example.com");
        let xff = format!("198.51.100.{i}");
        let r = post(
            &t,
            "/login",
            &[("email", &email), ("password", "wrong password")],
            "127.0.0.1:4000",
            Some(&xff),
        );
        assert_eq!(
            r.status(),
            Status::Unauthorized,
            "attempt {i}: each real client has its own budget"
        );
    }
}

#[test]
fn failed_sign_ins_per_account_are_limited_from_any_address() {
    let t = TestApp::new();
    t.signed_in_user("victim@example.com");
    t.submit("/", "/logout", &[]);
    let limit = t.config.limits.sign_in_failures_per_account_15min;
    for i in 0..limit {
        let r = post(
            &t,
            "/login",
            &[("email", "Victim@Example.com"), ("password", "guess")],
            &format!("198.51.100.{i}:1000"),
            None,
        );
        assert_eq!(r.status(), Status::Unauthorized);
    }
    // Now even the right password waits (the attacker learns nothing).
    let r = post(
        &t,
        "/login",
        &[("email", "victim@example.com"), ("password", PASSWORD)],
        "192.0.2.77:1000",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests);
    let retry: u64 = r.headers().get_one("Retry-After").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Another account is not affected.
    let r = post(
        &t,
        "/login",
        &[("email", "other@example.com"), ("password", "guess")],
        "192.0.2.77:1000",
        None,
    );
    assert_eq!(r.status(), Status::Unauthorized);
}

#[test]
fn registration_reset_and_resend_are_limited() {
    let t = TestApp::new();
    let per_ip = t.config.limits.register_per_ip_hour;
    for i in 0..per_ip {
        let email = format!("new{i}@example.com");
        let r = post(
            &t,
            "/register",
            &[
                ("email", &email),
                ("password", "a fine passphrase"),
                ("display_name", ""),
                ("ref", ""),
            ],
            "203.0.113.20:1",
            None,
        );
        assert_eq!(r.status(), Status::Ok, "registration {i}");
    }
    let r = post(
        &t,
        "/register",
        &[
            ("email", "farm@example.com"),
            ("password", "a fine passphrase"),
            ("display_name", ""),
            ("ref", ""),
        ],
        "203.0.113.20:1",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r.headers().get_one("Retry-After").is_some());
    let n: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM users WHERE email = 'farm@example.com'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0, "nothing was created");

    // Password resets per address, from changing IPs.
    let per_account = t.config.limits.reset_per_account_hour;
    for i in 0..per_account {
        let r = post(
            &t,
            "/forgot",
            &[("email", "new0@example.com")],
            &format!("198.51.100.{i}:1"),
            None,
        );
        assert_eq!(r.status(), Status::Ok);
    }
    let r = post(
        &t,
        "/forgot",
        &[("email", "new0@example.com")],
        "198.51.100.99:1",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r.into_string().unwrap().contains("Too many attempts"));
    // Unknown addresses are limited the same way (nothing to learn).
    for _ in 0..per_account {
        post(
            &t,
            "/forgot",
            &[("email", "nobody@example.com")],
            "198.51.100.98:1",
            None,
        );
    }
    let r = post(
        &t,
        "/forgot",
        &[("email", "nobody@example.com")],
        "198.51.100.97:1",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests);

    // Verification resends per IP.
    let per_ip = t.config.limits.resend_per_ip_hour;
    for i in 0..per_ip {
        let r = post(
            &t,
            "/verify/resend",
            &[("email", &format!("new{}@example.com", i % 5))],
            "203.0.113.30:1",
            None,
        );
        assert_ne!(r.status(), Status::TooManyRequests, "resend {i}");
    }
    let r = post(
        &t,
        "/verify/resend",
        &[("email", "new9@example.com")],
        "203.0.113.30:1",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests);
}

#[test]
fn redemption_is_rate_limited_per_account() {
    // Wrong codes have their own hourly limit; lift it to see the rate limit.
    let t = TestApp::with(|c| {
        c.limits.redeem_failures_per_account_hour = 1000;
        c.limits.redeem_failures_per_ip_hour = 1000;
    });
    t.signed_in_user("codes@example.com");
    let token = t.csrf("/");
    let per_account = t.config.limits.redeem_per_account_minute;
    let redeem = |code: &str| {
        t.client
            .post("/api/v1/redeem")
            .header(Header::new("x-csrf-token", token.clone()))
            .header(ContentType::JSON)
            .body(serde_json::json!({ "code": code }).to_string())
            .dispatch()
    };
    for i in 0..per_account {
        let r = redeem(&format!("NVA-AAAA-AAAA-AAAA-{i:04}"));
        assert_ne!(r.status(), Status::TooManyRequests, "attempt {i}");
    }
    let r = redeem("NVA-AAAA-AAAA-AAAA-9999");
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r.headers().get_one("Retry-After").is_some());
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

/// 79 wrong passwords for one account sent at the same moment from 79
/// addresses: only the limit's worth are checked, the rest are refused
/// before bcrypt runs.
#[test]
fn simultaneous_guesses_are_checked_at_most_up_to_the_limit() {
    let srv = common::live(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
        c.queue.workers = 0;
    });
    let app = novart::App::new(srv.config.clone()).unwrap();
    common::verified_user(&app, "target@example.com");
    let mut r = common::http()
        .get(&format!("{}/login", srv.base))
        .call()
        .unwrap();
    let cookie = common::cookies_of(&r);
    let csrf = common::csrf_in(&r.body_mut().read_to_string().unwrap());
    let barrier = std::sync::Barrier::new(79);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..79)
            .map(|i| {
                let (barrier, cookie, csrf, base) = (&barrier, &cookie, &csrf, &srv.base);
                s.spawn(move || {
                    let body = form_body(&[
                        ("csrf_token", csrf),
                        ("email", "target@example.com"),
                        ("password", &format!("guess number {i}")),
                    ]);
                    barrier.wait();
                    common::http()
                        .post(&format!("{base}/login"))
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .header("Cookie", cookie)
                        .header("X-Forwarded-For", &format!("198.51.100.{i}"))
                        .send(body)
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let limit = srv.config.limits.sign_in_failures_per_account_15min as usize;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (limit, 79 - limit), "{statuses:?}");
}

#[test]
fn ipv6_clients_are_counted_per_network() {
    let t = TestApp::new();
    let per_ip = t.config.limits.sign_in_per_ip_15min;
    // Every attempt from another address of one /64, about another account.
    for i in 0..per_ip {
        let r = post(
            &t,
            "/login",
            &[
                ("email", &format!("u{i}@example.com")),
                ("password", "guess"),
            ],
            &format!("[2001:db8:42:1:{i:x}::9]:4000"),
            None,
        );
        assert_eq!(r.status(), Status::Unauthorized, "attempt {i}");
    }
    let r = post(
        &t,
        "/login",
        &[("email", "fresh@example.com"), ("password", "guess")],
        "[2001:db8:42:1:ffff:ffff:ffff:fffe]:4000",
        None,
    );
    assert_eq!(r.status(), Status::TooManyRequests, "the same /64");
    let r = post(
        &t,
        "/login",
        &[("email", "fresh@example.com"), ("password", "guess")],
        "[2001:db8:42:2::9]:4000",
        None,
    );
    assert_eq!(
        r.status(),
        Status::Unauthorized,
        "the next /64 has its own budget"
    );
}
