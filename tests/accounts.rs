//! The account journey through the real forms: register, verify, sign in and
//! out, reset, settings, sessions.

mod common;

use common::{TestApp, PASSWORD};
use rocket::http::Status;

fn location(r: &rocket::local::blocking::LocalResponse<'_>) -> String {
    r.headers()
        .get_one("Location")
        .unwrap_or_default()
        .to_string()
}

#[test]
fn register_verify_sign_in_sign_out() {
    let app = TestApp::new();
    let r = app.register("ada@example.com", PASSWORD, "Ada");
    assert_eq!(r.status(), Status::Ok);
    let body = r.into_string().unwrap();
    assert!(body.contains("Check your e-mail"), "{body}");
    assert!(body.contains("ada@example.com"));

    // Before confirming, the right password is refused with a clear message.
    let r = app.login("ada@example.com", PASSWORD);
    assert_eq!(r.status(), Status::Forbidden);
    assert!(r
        .into_string()
        .unwrap()
        .contains("confirm your e-mail address"));
    assert!(app.session_cookie().is_none());

    // The e-mail carries a link; opening it shows a confirm button (a GET changes nothing).
    let link = app.latest_link("ada@example.com", "/verify?token=");
    assert!(
        link.starts_with("http://127.0.0.1:8000/verify?token="),
        "{link}"
    );
    let verified: Option<i64> = app
        .db()
        .query_row("SELECT email_verified_at FROM users", (), |r| r.get(0))
        .unwrap();
    assert!(verified.is_none());
    let r = app.verify("ada@example.com");
    assert_eq!(r.status(), Status::SeeOther);
    assert!(location(&r).starts_with("/login?email=ada%40example.com"));

    let r = app.login("ada@example.com", PASSWORD);
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(location(&r), "/");
    assert!(app.session_cookie().is_some());
    let home = app.page("/");
    assert!(home.contains("Hello, Ada."));
    let settings = app.page("/settings");
    assert!(settings.contains("ada@example.com"));
    assert!(settings.contains("confirmed"));

    // Registration time, last sign-in and verification are recorded.
    let (created, last, verified): (i64, Option<i64>, Option<i64>) = app
        .db()
        .query_row(
            "SELECT created_at, last_sign_in_at, email_verified_at FROM users",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(created > 0 && last.is_some() && verified.is_some());

    let token = app.session_cookie().unwrap();
    let r = app.submit("/", "/logout", &[]);
    assert_eq!(r.status(), Status::SeeOther);
    assert!(app.session_cookie().is_none());
    // The old token is dead server-side too.
    let other = app.other_browser();
    let r = other
        .get("/settings")
        .cookie(rocket::http::Cookie::new("nova_art_session", token))
        .dispatch();
    assert_eq!(r.status(), Status::SeeOther);
    assert!(location(&r).starts_with("/login?next=%2Fsettings"));
}

#[test]
fn verification_link_works_once() {
    let app = TestApp::new();
    app.register("bo@example.com", PASSWORD, "Bo");
    let link = app.latest_link("bo@example.com", "/verify?token=");
    assert_eq!(app.verify("bo@example.com").status(), Status::SeeOther);
    // Used: the page says so, and posting it again fails.
    let path = common::local_path(&link);
    let r = app.get(&path);
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r.into_string().unwrap().contains("This link does not work"));
    let token = path.split("token=").nth(1).unwrap();
    let r = app.submit("/verify", "/verify", &[("token", token)]);
    assert_eq!(r.status(), Status::BadRequest);
}

#[test]
fn resend_replaces_the_old_link() {
    let app = TestApp::new();
    app.register("cy@example.com", PASSWORD, "Cy");
    let first = app.latest_link("cy@example.com", "/verify?token=");
    let r = app.submit("/verify", "/verify/resend", &[("email", "cy@example.com")]);
    assert_eq!(r.status(), Status::Ok);
    let second = app.latest_link("cy@example.com", "/verify?token=");
    assert_ne!(first, second);
    assert_eq!(
        app.get(&common::local_path(&first)).status(),
        Status::BadRequest
    );
    assert_eq!(app.get(&common::local_path(&second)).status(), Status::Ok);
    // Unknown addresses get the same answer and no mail.
    let r = app.submit(
        "/verify",
        "/verify/resend",
        &[("email", "nobody@example.com")],
    );
    assert_eq!(r.status(), Status::Ok);
    assert!(app.mails_to("nobody@example.com").is_empty());
}

#[test]
fn registration_without_verification_signs_in_at_once() {
    let app = TestApp::with(|c| c.registration.require_email_verification = false);
    let r = app.register("di@example.com", PASSWORD, "Di");
    assert_eq!(r.status(), Status::SeeOther);
    assert!(app.session_cookie().is_some());
    assert!(app.page("/").contains("Hello, Di."));
    assert!(app.mails_to("di@example.com").is_empty());
}

#[test]
fn closed_registration_is_refused() {
    let app = TestApp::with(|c| c.registration.open = false);
    assert!(app.page("/register").contains("Registration is closed"));
    let r = app.register("ed@example.com", PASSWORD, "Ed");
    assert_eq!(r.status(), Status::Forbidden);
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM users", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn bad_registration_input_is_explained() {
    let app = TestApp::new();
    // The browser checks the limits before sending: the attributes arrive
    // as attributes, not as escaped text.
    let form = app.page("/register");
    assert!(form.contains(r#" minlength="8""#) && form.contains(r#" maxlength="40""#));
    assert!(!form.contains("&quot;"), "escaped attributes in the form");
    let cases = [
        ("not-an-email", PASSWORD, "", "does not look like an e-mail"),
        ("fa@example.com", "short", "", "at least 8 characters"),
        ("fa@example.com", "password123", "", "too easy to guess"),
        (
            "fa@example.com",
            PASSWORD,
            &"x".repeat(41),
            "at most 40 characters",
        ),
    ];
    for (email, password, name, message) in cases {
        let r = app.register(email, password, name);
        assert_eq!(r.status(), Status::BadRequest, "{email} {password}");
        let body = r.into_string().unwrap();
        assert!(body.contains(message), "expected {message:?} in the page");
        // What was typed is kept (except the password).
        assert!(body.contains(&format!("value=\"{email}\"")));
        assert!(!body.contains(&format!("value=\"{password}\"")));
    }
    let r = app.submit(
        "/register",
        "/register",
        &[
            ("email", "fa@example.com"),
            ("password", PASSWORD),
            ("ref", "NOSUCHCODE"),
        ],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r
        .into_string()
        .unwrap()
        .contains("No account has this referral code"));
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM users", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn referral_code_links_the_new_account() {
    let app = TestApp::new();
    app.signed_in_user("host@example.com");
    let code: String = app
        .db()
        .query_row(
            "SELECT referral_code FROM users WHERE email = 'host@example.com'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(app
        .page("/settings")
        .contains(&format!("register?ref={code}")));
    app.submit("/", "/logout", &[]);
    assert!(app
        .page(&format!("/register?ref={code}"))
        .contains(&format!("value=\"{code}\"")));
    let r = app.submit(
        "/register",
        "/register",
        &[
            ("email", "guest@example.com"),
            ("password", PASSWORD),
            ("ref", &code.to_lowercase()),
        ],
    );
    assert_eq!(r.status(), Status::Ok);
    let referred: Option<i64> = app
        .db()
        .query_row(
            "SELECT referred_by FROM users WHERE email = 'guest@example.com'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(referred.is_some());
}

#[test]
fn registering_a_taken_address_looks_the_same_and_warns_the_owner() {
    let app = TestApp::new();
    let first = app.register("gi@example.com", PASSWORD, "Gi");
    assert_eq!(first.status(), Status::Ok);
    let again = app.register("GI@example.com", "another password 42", "Impostor");
    assert_eq!(again.status(), Status::Ok);
    assert!(again.into_string().unwrap().contains("Check your e-mail"));
    let mails = app.mails_to("gi@example.com");
    assert!(mails
        .iter()
        .any(|m| m.contains("Someone tried to create a new Novart Studio account")));
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM users", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn password_reset_flow() {
    let app = TestApp::new();
    app.signed_in_user("hu@example.com");
    let other = app.other_browser();
    let old_session = app.session_cookie().unwrap();

    app.submit("/", "/logout", &[]);
    let r = app.submit("/forgot", "/forgot", &[("email", "hu@example.com")]);
    assert_eq!(r.status(), Status::Ok);
    let link = app.latest_link("hu@example.com", "/reset?token=");
    let path = common::local_path(&link);
    let page = app.page(&path);
    assert!(page.contains("Choose a new password"));
    let token = path.split("token=").nth(1).unwrap().to_string();

    // A weak password is refused and the link still works afterwards.
    let r = app.submit(&path, "/reset", &[("token", &token), ("password", "short")]);
    assert_eq!(r.status(), Status::BadRequest);
    let r = app.submit(
        &path,
        "/reset",
        &[("token", &token), ("password", "a brand new passphrase")],
    );
    assert_eq!(r.status(), Status::SeeOther);

    // Used once: refused now.
    let r = app.submit(
        "/forgot",
        "/reset",
        &[("token", &token), ("password", "yet another passphrase")],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert_eq!(app.get(&path).status(), Status::BadRequest);

    // Old password fails, new one works, the owner was told.
    assert_eq!(
        app.login("hu@example.com", PASSWORD).status(),
        Status::Unauthorized
    );
    assert_eq!(
        app.login("hu@example.com", "a brand new passphrase")
            .status(),
        Status::SeeOther
    );
    assert!(app
        .mails_to("hu@example.com")
        .iter()
        .any(|m| m.contains("password of your Novart Studio account was just changed")));

    // Sessions from before the reset are gone.
    let r = other
        .get("/settings")
        .cookie(rocket::http::Cookie::new("nova_art_session", old_session))
        .dispatch();
    assert_eq!(r.status(), Status::SeeOther);
}

#[test]
fn expired_reset_link_is_refused() {
    let app = TestApp::new();
    app.signed_in_user("iv@example.com");
    app.submit("/", "/logout", &[]);
    app.submit("/forgot", "/forgot", &[("email", "iv@example.com")]);
    let link = app.latest_link("iv@example.com", "/reset?token=");
    app.db()
        .execute(
            "UPDATE auth_tokens SET expires_at = 1 WHERE purpose = 'reset_password'",
            (),
        )
        .unwrap();
    let path = common::local_path(&link);
    assert_eq!(app.get(&path).status(), Status::BadRequest);
    let token = path.split("token=").nth(1).unwrap();
    let r = app.submit(
        "/forgot",
        "/reset",
        &[("token", token), ("password", "a brand new passphrase")],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert_eq!(
        app.login("iv@example.com", PASSWORD).status(),
        Status::SeeOther
    );
}

#[test]
fn settings_change_name_and_password() {
    let app = TestApp::new();
    app.signed_in_user("jo@example.com");
    let r = app.submit(
        "/settings",
        "/settings/profile",
        &[("display_name", "  Jo Artist  ")],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert!(app.page("/settings").contains("value=\"Jo Artist\""));

    let r = app.submit("/settings", "/settings/profile", &[("display_name", "   ")]);
    assert_eq!(r.status(), Status::BadRequest);

    // A second device, signed in separately.
    let second = app.sign_in_elsewhere("jo@example.com", PASSWORD, "SecondDevice/1.0");
    assert_eq!(second.get("/settings").dispatch().status(), Status::Ok);
    let before = app.session_cookie().unwrap();

    let r = app.submit(
        "/settings",
        "/settings/password",
        &[
            ("current_password", "wrong password"),
            ("password", "a new passphrase here"),
        ],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r
        .into_string()
        .unwrap()
        .contains("current password is not right"));

    let r = app.submit(
        "/settings",
        "/settings/password",
        &[
            ("current_password", PASSWORD),
            ("password", "a new passphrase here"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    // This browser got a fresh token and stays signed in; the other device is out.
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after);
    assert_eq!(app.get("/settings").status(), Status::Ok);
    assert_eq!(
        second.get("/settings").dispatch().status(),
        Status::SeeOther
    );
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM sessions", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn sessions_can_be_listed_and_ended() {
    let app = TestApp::new();
    app.signed_in_user("ka@example.com");
    let second = app.sign_in_elsewhere("ka@example.com", PASSWORD, "SecondBrowser/1.0");
    let page = app.page("/settings");
    assert!(page.contains("SecondBrowser&#x2F;1.0"));
    assert!(page.contains("this device"));
    let r = app.submit("/settings", "/settings/sessions/end-others", &[]);
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(
        second.get("/settings").dispatch().status(),
        Status::SeeOther
    );
    assert_eq!(app.get("/settings").status(), Status::Ok);

    // A session id that is not mine changes nothing.
    let id: i64 = app
        .db()
        .query_row("SELECT id FROM sessions", (), |r| r.get(0))
        .unwrap();
    let r = app.submit(
        "/settings",
        &format!("/settings/sessions/{}/end", id + 1000),
        &[],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(app.get("/settings").status(), Status::Ok);
}

#[test]
fn idle_and_absolute_timeouts_end_sessions() {
    let app = TestApp::new();
    app.signed_in_user("li@example.com");
    assert_eq!(app.get("/settings").status(), Status::Ok);
    let idle = app.config.auth.session_idle_hours as i64 * 3600;
    app.db()
        .execute(
            "UPDATE sessions SET last_seen_at = last_seen_at - ?1 - 1",
            [idle],
        )
        .unwrap();
    assert_eq!(app.get("/settings").status(), Status::SeeOther);
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM sessions", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "an expired session is deleted");

    app.login("li@example.com", PASSWORD);
    assert_eq!(app.get("/settings").status(), Status::Ok);
    app.db()
        .execute("UPDATE sessions SET expires_at = 1", ())
        .unwrap();
    assert_eq!(app.get("/settings").status(), Status::SeeOther);
}

#[test]
fn sign_in_redirects_back_to_the_page_asked_for_but_never_off_site() {
    let app = TestApp::new();
    app.signed_in_user("mo@example.com");
    app.submit("/", "/logout", &[]);
    let r = app.get("/settings");
    assert_eq!(location(&r), "/login?next=%2Fsettings");
    let page = app.page("/login?next=%2Fsettings");
    let r = app.post_raw(
        "/login",
        &[
            ("csrf_token", &common::csrf_in(&page)),
            ("email", "mo@example.com"),
            ("password", PASSWORD),
            ("next", "/settings"),
        ],
    );
    assert_eq!(location(&r), "/settings");
    app.submit("/", "/logout", &[]);
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let r = app.submit(
            "/login",
            "/login",
            &[
                ("email", "mo@example.com"),
                ("password", PASSWORD),
                ("next", evil),
            ],
        );
        assert_eq!(location(&r), "/", "{evil}");
        app.submit("/", "/logout", &[]);
    }
}

#[test]
fn long_multibyte_passwords_work_in_full() {
    let app = TestApp::new();
    // 64 characters, 192 bytes: far past bcrypt's 72-byte limit.
    let long = "密".repeat(64);
    let r = app.register("ni@example.com", &long, "Ni");
    assert_eq!(r.status(), Status::Ok);
    app.verify("ni@example.com");
    // Same first 72 bytes, different ending: refused.
    let almost = format!("{}{}", "密".repeat(63), "码");
    assert_eq!(
        app.login("ni@example.com", &almost).status(),
        Status::Unauthorized
    );
    assert_eq!(
        app.login("ni@example.com", &long).status(),
        Status::SeeOther
    );
}

#[test]
fn the_sweep_removes_dead_sessions_and_keeps_live_ones() {
    let app = TestApp::new();
    app.signed_in_user("sw@example.com");
    let second = app.sign_in_elsewhere("sw@example.com", PASSWORD, "SecondDevice/1.0");
    let ids: Vec<i64> = {
        let db = app.db();
        let mut s = db.prepare("SELECT id FROM sessions ORDER BY id").unwrap();
        s.query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(ids.len(), 2);
    app.db()
        .execute("UPDATE sessions SET expires_at = 1 WHERE id = ?1", [ids[0]])
        .unwrap();
    let db = novart::domain::Db::open(&app.config).unwrap();
    assert_eq!(novart::jobs::sweep(&db, &app.config).unwrap(), 1);
    let left: Vec<i64> = {
        let db = app.db();
        let mut s = db.prepare("SELECT id FROM sessions").unwrap();
        s.query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(left, vec![ids[1]]);
    assert_eq!(
        second.get("/settings").dispatch().status(),
        Status::Ok,
        "the live session still works"
    );
}

#[test]
fn sessions_are_listed_by_browser_and_system() {
    let t = TestApp::new();
    t.signed_in_user("devices@example.com");
    t.sign_in_elsewhere(
        "devices@example.com",
        PASSWORD,
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    );
    t.sign_in_elsewhere(
        "devices@example.com",
        PASSWORD,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    );
    let page = t.page("/settings");
    assert!(page.contains(">Firefox on Linux</strong>"), "{page}");
    assert!(page.contains(">Safari on iOS</strong>"), "{page}");
    // The full User-Agent is still there on hover.
    assert!(
        page.contains("title=\"Mozilla&#x2F;5.0 (X11; Linux x86_64; rv:133.0)"),
        "{page}"
    );
    // The alert for the new device names it too.
    assert!(t.page("/messages").contains("Firefox on Linux"));
}
