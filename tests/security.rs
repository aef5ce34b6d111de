//! Security properties from reference/security-targets.md that concern
//! accounts and sessions.

mod common;

use common::{TestApp, PASSWORD};
use rocket::http::{Header, Status};
use sha2::{Digest, Sha256};

fn count(app: &TestApp, sql: &str) -> i64 {
    app.db().query_row(sql, (), |r| r.get(0)).unwrap()
}

/// Every state-changing form, with a token that is missing, wrong, or right
/// but sent from another site, answers 403 and changes nothing.
#[test]
fn csrf_is_enforced_on_every_form() {
    let app = TestApp::new();
    app.signed_in_user("csrf@example.com");
    let id: i64 = app
        .db()
        .query_row("SELECT id FROM sessions", (), |r| r.get(0))
        .unwrap();
    let end_one = format!("/settings/sessions/{id}/end");
    let snapshot = |app: &TestApp| -> (i64, i64, String, String, usize) {
        let db = app.db();
        let (name, hash): (String, String) = db
            .query_row("SELECT display_name, password_hash FROM users", (), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        (
            count(app, "SELECT count(*) FROM users"),
            count(app, "SELECT count(*) FROM sessions"),
            name,
            hash,
            std::fs::read_dir(app.outbox())
                .map(|d| d.count())
                .unwrap_or(0),
        )
    };
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/register",
            vec![("email", "new@example.com"), ("password", PASSWORD)],
        ),
        (
            "/login",
            vec![("email", "csrf@example.com"), ("password", PASSWORD)],
        ),
        ("/logout", vec![]),
        ("/verify", vec![("token", "x")]),
        ("/verify/resend", vec![("email", "csrf@example.com")]),
        ("/forgot", vec![("email", "csrf@example.com")]),
        (
            "/reset",
            vec![("token", "x"), ("password", "another passphrase")],
        ),
        ("/settings/profile", vec![("display_name", "Hacked")]),
        (
            "/settings/password",
            vec![
                ("current_password", PASSWORD),
                ("password", "another passphrase"),
            ],
        ),
        ("/settings/sessions/end-others", vec![]),
        (end_one.as_str(), vec![]),
    ];
    let before = snapshot(&app);
    let good = app.csrf("/settings");
    for (action, fields) in &forms {
        // No token at all.
        let r = app.post_raw(action, fields);
        assert_eq!(r.status(), Status::Forbidden, "{action} without a token");
        // A wrong token.
        let mut with_bad = vec![("csrf_token", "0".repeat(64))];
        with_bad.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
        let bad: Vec<(&str, &str)> = with_bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.post_raw(action, &bad);
        assert_eq!(r.status(), Status::Forbidden, "{action} with a wrong token");
        // The right token, but posted by another site.
        let mut with_good = vec![("csrf_token", good.clone())];
        with_good.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
        let good_fields: Vec<(&str, &str)> =
            with_good.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.post_with_header(
            action,
            &good_fields,
            Header::new("Origin", "https://evil.example"),
        );
        assert_eq!(
            r.status(),
            Status::Forbidden,
            "{action} from a foreign origin"
        );
        let r = app.post_with_header(
            action,
            &good_fields,
            Header::new("Sec-Fetch-Site", "cross-site"),
        );
        assert_eq!(r.status(), Status::Forbidden, "{action} cross-site");
    }
    assert_eq!(snapshot(&app), before, "a refused form changed something");
    assert_eq!(app.get("/settings").status(), Status::Ok, "still signed in");

    // The same-origin header is accepted.
    let r = app.post_with_header(
        "/settings/profile",
        &[("csrf_token", &good), ("display_name", "Renamed")],
        Header::new("Origin", "http://127.0.0.1:8000"),
    );
    assert_eq!(r.status(), Status::SeeOther);
}

#[test]
fn a_token_from_another_session_is_refused() {
    let app = TestApp::new();
    app.signed_in_user("one@example.com");
    let mine = app.csrf("/settings");
    let other = TestApp::new();
    other.signed_in_user("two@example.com");
    let theirs = other.csrf("/settings");
    assert_ne!(mine, theirs);
    let r = app.post_raw(
        "/settings/profile",
        &[("csrf_token", &theirs), ("display_name", "X")],
    );
    assert_eq!(r.status(), Status::Forbidden);
}

fn set_cookie_header(r: &rocket::local::blocking::LocalResponse<'_>, name: &str) -> String {
    r.headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}"))
        .to_string()
}

#[test]
fn session_cookie_flags_over_http() {
    let app = TestApp::new();
    app.register("flag@example.com", PASSWORD, "F");
    app.verify("flag@example.com");
    let r = app.login("flag@example.com", PASSWORD);
    let c = set_cookie_header(&r, "nova_art_session");
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(c.contains("SameSite=Lax"), "{c}");
    assert!(c.contains("Path=/"), "{c}");
    assert!(!c.contains("Domain"), "{c}");
    assert!(!c.contains("Secure"), "{c}");
}

#[test]
fn session_cookie_is_secure_behind_https() {
    let app = TestApp::with(|c| c.server.public_url = "https://studio.example.com".into());
    app.register("sec@example.com", PASSWORD, "S");
    let link = app.latest_link("sec@example.com", "/verify?token=");
    assert!(link.starts_with("https://studio.example.com/verify?token="));
    app.verify("sec@example.com");
    let r = app.login("sec@example.com", PASSWORD);
    let c = set_cookie_header(&r, "nova_art_session");
    assert!(
        c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Lax"),
        "{c}"
    );
    assert!(r.headers().get_one("Strict-Transport-Security").is_some());
}

#[test]
fn session_tokens_are_random_hashed_and_renewed_at_sign_in() {
    let app = TestApp::new();
    app.signed_in_user("tok@example.com");
    let first = app.session_cookie().unwrap();
    assert!(first.len() >= 43, "at least 256 bits, base64url");
    let stored: Vec<String> = {
        let db = app.db();
        let mut s = db.prepare("SELECT token_hash FROM sessions").unwrap();
        s.query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(stored, vec![hex::encode(Sha256::digest(first.as_bytes()))]);
    // The database file's bytes too, where there is one (SQLite).
    if !common::pg::chosen() {
        let dump = std::fs::read(app.config.db_path()).unwrap();
        assert!(
            !dump.windows(first.len()).any(|w| w == first.as_bytes()),
            "raw token in the database file"
        );
    }

    // A planted cookie is not adopted: sign-in issues a new token.
    app.submit("/", "/logout", &[]);
    app.client.cookies().add(rocket::http::Cookie::new(
        "nova_art_session",
        "attacker-chosen",
    ));
    app.login("tok@example.com", PASSWORD);
    let second = app.session_cookie().unwrap();
    assert_ne!(second, "attacker-chosen");
    assert_ne!(second, first);
}

#[test]
fn e_mail_links_are_stored_hashed() {
    let app = TestApp::new();
    app.register("link@example.com", PASSWORD, "L");
    let link = app.latest_link("link@example.com", "/verify?token=");
    let token = link.split("token=").nth(1).unwrap();
    let stored: String = app
        .db()
        .query_row("SELECT token_hash FROM auth_tokens", (), |r| r.get(0))
        .unwrap();
    assert_eq!(stored, hex::encode(Sha256::digest(token.as_bytes())));
    assert!(token.len() >= 43);
}

#[test]
fn every_password_hash_is_bcrypt_cost_12_or_more() {
    let app = TestApp::new();
    app.signed_in_user("h1@example.com");
    app.submit("/", "/logout", &[]);
    app.register("h2@example.com", "another long passphrase", "H2");
    let db = app.db();
    let mut s = db.prepare("SELECT password_hash FROM users").unwrap();
    let hashes: Vec<String> = s
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hashes.len(), 2);
    for h in hashes {
        assert!(h.starts_with("$2b$"), "{h}");
        let cost: u32 = h[4..6].parse().unwrap();
        assert!(cost >= 12, "{h}");
    }
}

#[test]
fn unknown_email_and_wrong_password_look_the_same() {
    let app = TestApp::new();
    app.signed_in_user("known@example.com");
    app.submit("/", "/logout", &[]);
    let strip = |body: String, email: &str| body.replace(email, "EMAIL");

    let known = app.login("known@example.com", "wrong password!");
    let (ks, kb) = (
        known.status(),
        strip(known.into_string().unwrap(), "known@example.com"),
    );
    let unknown = app.login("unknown@example.com", "wrong password!");
    let (us, ub) = (
        unknown.status(),
        strip(unknown.into_string().unwrap(), "unknown@example.com"),
    );
    assert_eq!(ks, Status::Unauthorized);
    assert_eq!((ks, &kb), (us, &ub));
    assert!(kb.contains("The e-mail address or password is not right."));

    let known = app.submit("/forgot", "/forgot", &[("email", "known@example.com")]);
    let (ks, kb) = (
        known.status(),
        strip(known.into_string().unwrap(), "known@example.com"),
    );
    let unknown = app.submit("/forgot", "/forgot", &[("email", "unknown@example.com")]);
    let (us, ub) = (
        unknown.status(),
        strip(unknown.into_string().unwrap(), "unknown@example.com"),
    );
    assert_eq!((ks, &kb), (us, &ub));
    assert_eq!(app.mails_to("unknown@example.com").len(), 0);
    assert!(app
        .mails_to("known@example.com")
        .iter()
        .any(|m| m.contains("/reset?token=")));
}

#[test]
fn user_text_is_escaped_everywhere() {
    let app = TestApp::new();
    let evil = "<script>alert(1)</script>\"onmouseover=";
    let r = app.register("xss@example.com", PASSWORD, evil);
    assert_eq!(r.status(), Status::Ok);
    app.verify("xss@example.com");
    app.login("xss@example.com", PASSWORD);
    for page in ["/", "/settings", "/privacy"] {
        let body = app.page(page);
        assert!(!body.contains("<script>alert(1)"), "{page} has raw script");
        assert!(
            !body.contains("\"onmouseover="),
            "{page} has a raw attribute break-out"
        );
    }
    assert!(app
        .page("/settings")
        .contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
    // The e-mail's HTML part escapes it too.
    let mail = app.mails_to("xss@example.com").join("\n");
    let html = mail
        .split("Content-Type: text/html")
        .nth(1)
        .expect("an HTML part");
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)"));
}

#[test]
fn pages_send_security_headers() {
    let app = TestApp::new();
    for path in [
        "/",
        "/login",
        "/register",
        "/forgot",
        "/verify",
        "/privacy",
        "/terms",
        "/no-such-page",
        "/assets/app.css",
    ] {
        let r = app.get(path);
        let h = r.headers();
        let ct = h.get_one("Content-Type").unwrap_or_default();
        if !path.starts_with("/assets") {
            assert!(ct.contains("charset=utf-8"), "{path}: {ct}");
        }
        assert_eq!(
            h.get_one("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        let csp = h.get_one("Content-Security-Policy").unwrap_or_default();
        for d in [
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(d), "{path}: {csp}");
        }
        assert!(h.get_one("Referrer-Policy").is_some(), "{path}");
        assert!(
            h.get_one("x-request-id").unwrap_or_default().len() > 8,
            "{path}"
        );
    }
}

#[test]
fn request_ids_are_echoed_when_well_formed() {
    let app = TestApp::new();
    let r = app
        .client
        .get("/")
        .header(Header::new("x-request-id", "abc-123"))
        .dispatch();
    assert_eq!(r.headers().get_one("x-request-id"), Some("abc-123"));
    let r = app
        .client
        .get("/")
        .header(Header::new("x-request-id", "<bad id>"))
        .dispatch();
    assert_ne!(r.headers().get_one("x-request-id"), Some("<bad id>"));
}

#[test]
fn errors_are_pages_for_browsers_and_envelopes_for_the_api() {
    let app = TestApp::new();
    let r = app.get("/no-such-page");
    assert_eq!(r.status(), Status::NotFound);
    let body = r.into_string().unwrap();
    assert!(body.contains("There is no page at this address."));
    assert!(body.contains("name=\"csrf-token\""));

    let r = app.get("/api/v1/nothing");
    assert_eq!(r.status(), Status::NotFound);
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert!(v["error"]["message"].is_string());
    assert!(v["error"].get("param").is_some());

    // GET never changes state: there is no GET sign-out.
    app.signed_in_user("get@example.com");
    assert_eq!(app.get("/logout").status(), Status::NotFound);
    assert_eq!(app.get("/settings").status(), Status::Ok);
}

#[test]
fn garbage_and_oversized_bodies_are_refused_cleanly() {
    let app = TestApp::new();
    for body in [
        "%%%",
        "csrf_token=%ZZ&email",
        "\u{0}\u{1}binary",
        "a=b&a=c&&&=",
    ] {
        let r = app
            .client
            .post("/login")
            .header(rocket::http::ContentType::Form)
            .body(body)
            .dispatch();
        assert!(r.status().code < 500, "{body:?} gave {}", r.status());
    }
    let big = format!("csrf_token=x&email={}", "a".repeat(200 * 1024));
    let r = app
        .client
        .post("/login")
        .header(rocket::http::ContentType::Form)
        .body(big)
        .dispatch();
    assert!(matches!(r.status().code, 403 | 413), "{}", r.status());
    let r = app
        .client
        .post("/login")
        .header(rocket::http::ContentType::JSON)
        .body("{}")
        .dispatch();
    assert!(r.status().code < 500);
}

#[test]
fn one_user_cannot_end_another_users_session() {
    let app = TestApp::new();
    app.signed_in_user("victim@example.com");
    app.submit("/", "/logout", &[]);
    // The victim signs in on a second browser, and stays signed in there.
    let second = app.sign_in_elsewhere("victim@example.com", PASSWORD, "SecondDevice/1.0");
    let victim_session_now: i64 = app
        .db()
        .query_row("SELECT id FROM sessions", (), |r| r.get(0))
        .unwrap();
    assert_eq!(second.get("/settings").dispatch().status(), Status::Ok);

    app.signed_in_user("attacker@example.com");
    let r = app.submit(
        "/settings",
        &format!("/settings/sessions/{victim_session_now}/end"),
        &[],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(
        second.get("/settings").dispatch().status(),
        Status::Ok,
        "the victim is still signed in"
    );
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let peer: std::net::SocketAddr = "203.0.113.7:5555".parse().unwrap();
    let app = TestApp::new();
    app.register("ip@example.com", PASSWORD, "I");
    app.verify("ip@example.com");
    let page = app.page("/login");
    app.client
        .post("/login")
        .remote(peer)
        .header(rocket::http::ContentType::Form)
        .header(Header::new("X-Forwarded-For", "198.51.100.1"))
        .body(common::form_body(&[
            ("csrf_token", &common::csrf_in(&page)),
            ("email", "ip@example.com"),
            ("password", PASSWORD),
        ]))
        .dispatch();
    let ip: String = app
        .db()
        .query_row("SELECT ip FROM sessions", (), |r| r.get(0))
        .unwrap();
    assert_eq!(
        ip, "203.0.113.7",
        "forged header from an untrusted peer is ignored"
    );

    let app = TestApp::with(|c| c.server.trusted_proxies = vec!["203.0.113.0/24".into()]);
    app.register("ip@example.com", PASSWORD, "I");
    app.verify("ip@example.com");
    let page = app.page("/login");
    app.client
        .post("/login")
        .remote(peer)
        .header(rocket::http::ContentType::Form)
        .header(Header::new(
            "X-Forwarded-For",
            "192.0.2.9, 198.51.100.1, 203.0.113.8",
        ))
        .body(common::form_body(&[
            ("csrf_token", &common::csrf_in(&page)),
            ("email", "ip@example.com"),
            ("password", PASSWORD),
        ]))
        .dispatch();
    let ip: String = app
        .db()
        .query_row("SELECT ip FROM sessions", (), |r| r.get(0))
        .unwrap();
    assert_eq!(
        ip, "198.51.100.1",
        "nearest untrusted hop behind the trusted proxies"
    );
}
