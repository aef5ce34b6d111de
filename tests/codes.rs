//! Redemption codes: exactly once under concurrency, distinct answers, and
//! the web, API and CLI ways in.

mod common;

use std::sync::{Arc, Barrier};

use common::TestApp;
use novart::domain::codes::{self, NewCodes};
use novart::domain::wallet;
use novart::model::UserId;
use novart::{App, AppError};
use rocket::http::{ContentType, Header, Status};

fn setup() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(common::config_for(dir.path())).unwrap();
    (dir, app)
}

/// Users made straight in the database (no bcrypt), for many-user tests.
fn users(app: &App, n: usize) -> Vec<UserId> {
    let conn = app.db.get().unwrap();
    (0..n)
        .map(|i| {
            common::raw_user(
                &conn,
                &format!("r{i}@example.com"),
                &format!("REF{i:05}"),
                None,
                None,
            )
        })
        .collect()
}

fn make(app: &App, amount: i64, max_uses: i64, bonus: bool) -> String {
    let req = NewCodes {
        amount,
        count: 1,
        bonus,
        max_uses,
        expires_at: None,
        batch: None,
        actor: "test",
    };
    codes::create(&mut app.db.get().unwrap(), &req)
        .unwrap()
        .remove(0)
}

fn message(r: Result<codes::Redeemed, AppError>) -> String {
    match r {
        Err(AppError::Invalid {
            field: Some("code"),
            message,
        }) => message,
        other => panic!("expected a code error, got {other:?}"),
    }
}

#[test]
fn sixty_four_threads_one_single_use_code_one_success_per_round() {
    let (_dir, app) = setup();
    let app = Arc::new(app);
    let people = users(&app, 64);
    for round in 0..8 {
        let code = make(&app, 10, 1, false);
        let barrier = Arc::new(Barrier::new(64));
        let handles: Vec<_> = people
            .iter()
            .map(|&u| {
                let (app, barrier, code) = (app.clone(), barrier.clone(), code.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // 64 threads share a pool of 16 connections: take one after the start.
                    let mut conn = app.db.get().unwrap();
                    codes::redeem(&mut conn, &app.config, u, None, &code)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}"
        );
        for r in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(
                message(r),
                "This code has already been used.",
                "round {round}: no SQLITE_BUSY reaches a user"
            );
        }
    }
    let conn = app.db.get().unwrap();
    let total: i64 = conn
        .query_row("SELECT sum(balance) FROM wallets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(total, 80, "8 rounds × 10 credits, once each");
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
}

#[test]
fn each_refusal_has_its_own_message() {
    let (_dir, app) = setup();
    let u = users(&app, 3);
    let mut conn = app.db.get().unwrap();
    assert!(
        message(codes::redeem(&mut conn, &app.config, u[0], None, "hello"))
            .contains("does not exist")
    );
    assert!(message(codes::redeem(
        &mut conn,
        &app.config,
        u[0],
        None,
        "NVA-2222-3333-4444-5555"
    ))
    .contains("does not exist"));

    let code = make(&app, 7, 1, false);
    let r = codes::redeem(
        &mut conn,
        &app.config,
        u[0],
        None,
        &code.to_lowercase().replace('-', " "),
    )
    .unwrap();
    assert_eq!((r.credited, r.wallet.balance), (7, 7));
    assert_eq!(
        message(codes::redeem(&mut conn, &app.config, u[0], None, &code)),
        "You have already redeemed this code."
    );
    assert_eq!(
        message(codes::redeem(&mut conn, &app.config, u[1], None, &code)),
        "This code has already been used."
    );

    let code = make(&app, 5, 1, false);
    conn.execute(
        "UPDATE codes SET expires_at = 1000 WHERE id = (SELECT max(id) FROM codes)",
        (),
    )
    .unwrap();
    assert!(
        message(codes::redeem(&mut conn, &app.config, u[0], None, &code))
            .starts_with("This code expired on 1970-01-01")
    );

    let code = make(&app, 5, 1, false);
    assert_eq!(codes::revoke_code(&mut conn, &code).unwrap(), 1);
    assert!(
        message(codes::redeem(&mut conn, &app.config, u[0], None, &code)).contains("withdrawn")
    );

    // Multi-use codes: each account once, up to max_uses.
    let code = make(&app, 3, 2, true);
    let r = codes::redeem(&mut conn, &app.config, u[0], None, &code).unwrap();
    assert!(r.bonus);
    assert_eq!(r.wallet.bonus, 3);
    codes::redeem(&mut conn, &app.config, u[1], None, &code).unwrap();
    assert_eq!(
        message(codes::redeem(&mut conn, &app.config, u[2], None, &code)),
        "This code has already been used."
    );
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
    assert_eq!(wallet::get(&conn, u[2]).unwrap().total(), 0);

    // Codes are stored only as digests.
    let raw = code.replace("NVA-", "").replace('-', "");
    if common::pg::chosen() {
        // No column of any code row holds it.
        let rows: Vec<String> = conn
            .prepare("SELECT code_hash || ' ' || hint || ' ' || coalesce(batch, '') FROM codes")
            .unwrap()
            .query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| !r.contains(&raw)), "{rows:?}");
    } else {
        let dump = std::fs::read(app.config.db_path()).unwrap();
        assert!(!dump.windows(raw.len()).any(|w| w == raw.as_bytes()));
    }
}

#[test]
fn redeem_on_the_wallet_page_and_through_the_api() {
    let app = TestApp::with(|c| c.billing.signup_bonus = 0);
    app.signed_in_user("redeem@example.com");
    let engine_app = app.client.rocket().state::<App>().unwrap();
    let code = make(engine_app, 25, 1, false);
    let r = app.submit("/wallet", "/wallet/redeem", &[("code", &code)]);
    assert_eq!(r.status(), Status::SeeOther);
    let page = app.page("/wallet");
    assert!(page.contains("Code redeemed: 25 credits added."));
    assert!(page.contains("id=\"wallet-total\">25<"));
    let r = app.submit("/wallet", "/wallet/redeem", &[("code", &code)]);
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r
        .into_string()
        .unwrap()
        .contains("You have already redeemed this code."));

    let code = make(engine_app, 4, 1, true);
    let token = app.csrf("/");
    let r = app
        .client
        .post("/api/v1/redeem")
        .header(Header::new("x-csrf-token", token.clone()))
        .header(ContentType::JSON)
        .body(serde_json::json!({ "code": code }).to_string())
        .dispatch();
    assert_eq!(r.status(), Status::Ok);
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"credited": 4, "balance": 25, "bonus": 4})
    );
    let r = app
        .client
        .post("/api/v1/redeem")
        .header(Header::new("x-csrf-token", token))
        .header(ContentType::JSON)
        .body(r#"{"code": "NVA-NOPE"}"#)
        .dispatch();
    assert_eq!(r.status(), Status::BadRequest);
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["param"], "code");
}

#[test]
fn codes_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = common::novart(
        d,
        &[
            "codes",
            "create",
            "--amount",
            "10",
            "--count",
            "3",
            "--batch",
            "spring",
            "--expires",
            "30d",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one code per line and nothing else: {out}");
    for l in &lines {
        assert!(
            codes::normalize(l).is_some() && l.starts_with("NVA-") && l.len() == 23,
            "{l}"
        );
        assert!(
            !l.contains(['0', 'O', '1', 'I', 'L']) || l.starts_with("NVA-"),
            "{l}"
        );
        assert!(!l[4..].contains(['0', 'O', '1', 'I', 'L']), "{l}");
    }
    let o = common::novart(d, &["codes", "list", "--batch", "spring", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["status"], "active");
    assert!(v[0].get("code_hash").is_none());

    let o = common::novart(d, &["codes", "revoke", lines[0]]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("revoked 1 code(s)"));
    let o = common::novart(d, &["codes", "revoke", "--batch", "spring"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("revoked 2 code(s)"));
    let o = common::novart(d, &["codes", "revoke", "--batch", "spring"]);
    assert_eq!(o.status.code(), Some(1), "nothing left to revoke");
    let o = common::novart(
        d,
        &["codes", "create", "--amount", "10", "--expires", "soon"],
    );
    assert_eq!(o.status.code(), Some(2));
    let o = common::novart(d, &["codes", "create", "--amount", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

fn invited_user(app: &App, i: usize, referrer: UserId, ip: &str) -> UserId {
    let conn = app.db.get().unwrap();
    common::raw_user(
        &conn,
        &format!("invitee{i}@example.com"),
        &format!("INV{i:05}"),
        Some(referrer),
        Some(ip),
    )
}

#[test]
fn referral_rewards_pay_once_and_resist_abuse() {
    let (_dir, app) = setup();
    let referrer = users(&app, 1)[0];
    app.db
        .get()
        .unwrap()
        .execute(
            "UPDATE users SET registration_ip = '203.0.113.1' WHERE id = ?1",
            [referrer],
        )
        .unwrap();
    let reward = app.config.billing.referral_reward as i64;
    let bonus = |u| wallet::get(&app.db.get().unwrap(), u).unwrap().bonus;

    // A bonus code does not trigger it; the first paid code does, once.
    let a = invited_user(&app, 1, referrer, "198.51.100.1");
    let mut conn = app.db.get().unwrap();
    codes::redeem(&mut conn, &app.config, a, None, &make(&app, 5, 1, true)).unwrap();
    assert_eq!(bonus(referrer), 0);
    codes::redeem(&mut conn, &app.config, a, None, &make(&app, 5, 1, false)).unwrap();
    assert_eq!(bonus(referrer), reward);
    codes::redeem(&mut conn, &app.config, a, None, &make(&app, 5, 1, false)).unwrap();
    assert_eq!(
        bonus(referrer),
        reward,
        "a second paid code pays nothing more"
    );
    let (related, code_rows): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT related_user FROM ledger WHERE kind = 'referral_reward'),
                    (SELECT count(*) FROM ledger WHERE kind = 'redeem' AND code_id IS NOT NULL)",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(related, a.0, "the reward row names the invited account");
    assert_eq!(code_rows, 3, "each redeem row names its code");
    // Even if the trigger fired again, the ledger key stops a second reward.
    let tx = conn.transaction().unwrap();
    let again = novart::domain::referrals::on_event(
        &tx,
        &app.config,
        a,
        novart::config::ReferralTrigger::FirstRedeem,
        novart::domain::now(),
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(again, 0);

    // Registered from the referrer's own IP: a self-referral, no reward.
    let own = invited_user(&app, 2, referrer, "203.0.113.1");
    codes::redeem(&mut conn, &app.config, own, None, &make(&app, 5, 1, false)).unwrap();
    assert_eq!(bonus(referrer), reward);

    // Per-IP daily cap: 3 rewarded invitees from one IP, the 4th is not.
    for i in 0..4 {
        let u = invited_user(&app, 10 + i, referrer, "192.0.2.77");
        codes::redeem(&mut conn, &app.config, u, None, &make(&app, 5, 1, false)).unwrap();
    }
    assert_eq!(bonus(referrer), reward * 4, "1 + 3 capped");
    let invitees = novart::domain::referrals::invitees(&conn, referrer).unwrap();
    assert_eq!(invitees.len(), 6);
    assert_eq!(invitees.iter().filter(|i| i.rewarded).count(), 4);
    assert!(invitees
        .iter()
        .all(|i| i.email.starts_with('i') && i.email.contains("*@example.com")));
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
}

#[test]
fn referral_on_verification_through_the_web() {
    let app = TestApp::with(|c| {
        c.billing.referral_trigger = novart::config::ReferralTrigger::Verification;
        c.billing.referral_reward = 7;
    });
    app.signed_in_user("host@example.com");
    let code: String = app
        .db()
        .query_row("SELECT referral_code FROM users", (), |r| r.get(0))
        .unwrap();
    assert!(app
        .page("/wallet")
        .contains(&format!("register?ref={code}")));
    app.submit("/", "/logout", &[]);
    // Registered from another address than the referrer's (the test client has none: both NULL).
    let r = app.submit(
        "/register",
        "/register",
        &[
            ("email", "friend@example.com"),
            ("password", common::PASSWORD),
            ("ref", &code),
        ],
    );
    assert_eq!(r.status(), Status::Ok);
    app.verify("friend@example.com");
    app.login("host@example.com", common::PASSWORD);
    let page = app.page("/wallet");
    assert!(
        page.contains("f*****@example.com"),
        "the invitee is shown masked"
    );
    assert!(!page.contains("friend@example.com"));
    assert!(page.contains("rewarded"));
    assert!(page.contains("Referral reward"));
    assert!(
        page.contains("id=\"wallet-total\">27<"),
        "20 welcome + 7 reward"
    );
}

#[test]
fn wrong_codes_pause_redeeming_per_account_and_per_ip() {
    let (_dir, app) = setup();
    let u = users(&app, 4);
    let mut conn = app.db.get().unwrap();
    let good = make(&app, 5, 1, false);
    for i in 0..10 {
        let r = codes::redeem(
            &mut conn,
            &app.config,
            u[0],
            Some("198.51.100.9"),
            &format!("NVA-2222-3333-4444-{:04}", 5000 + i),
        );
        assert!(matches!(r, Err(AppError::Invalid { .. })), "attempt {i}");
    }
    // Paused now, even for a valid code; the answer says when to come back.
    match codes::redeem(&mut conn, &app.config, u[0], Some("198.51.100.9"), &good) {
        Err(AppError::RateLimited { retry_after_secs }) => {
            assert!((3500..=3600).contains(&retry_after_secs))
        }
        other => panic!("{other:?}"),
    }
    // Another account elsewhere is not affected.
    codes::redeem(&mut conn, &app.config, u[1], Some("192.0.2.1"), &good).unwrap();
    // From one IP across accounts: 30 failures pause that IP.
    for i in 0..30 {
        let who = u[2 + i % 2];
        let _ = codes::redeem(
            &mut conn,
            &app.config,
            who,
            Some("203.0.113.50"),
            "NVA-ABCD-ABCD-ABCD-ABCD",
        );
    }
    let other = make(&app, 5, 1, false);
    assert!(matches!(
        codes::redeem(&mut conn, &app.config, u[3], Some("203.0.113.50"), &other),
        Err(AppError::RateLimited { .. })
    ));
    // The pause ends with the hour.
    conn.execute(
        "UPDATE redeem_failures SET created_at = created_at - 3601",
        (),
    )
    .unwrap();
    codes::redeem(&mut conn, &app.config, u[3], Some("203.0.113.50"), &other).unwrap();
}

#[test]
fn the_api_answers_429_with_retry_after_when_paused() {
    let app = TestApp::with(|c| c.limits.redeem_failures_per_account_hour = 2);
    app.signed_in_user("brute@example.com");
    let post = |code: &str| {
        let token = app.csrf("/");
        app.client
            .post("/api/v1/redeem")
            .header(Header::new("x-csrf-token", token))
            .header(ContentType::JSON)
            .body(serde_json::json!({ "code": code }).to_string())
            .dispatch()
    };
    assert_eq!(post("NVA-2222-3333-4444-5555").status(), Status::BadRequest);
    assert_eq!(post("NVA-2222-3333-4444-6666").status(), Status::BadRequest);
    let r = post("NVA-2222-3333-4444-7777");
    assert_eq!(r.status(), Status::TooManyRequests);
    let retry: u64 = r.headers().get_one("Retry-After").unwrap().parse().unwrap();
    assert!(retry > 3000);
    let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    let r = app.submit(
        "/wallet",
        "/wallet/redeem",
        &[("code", "NVA-2222-3333-4444-8888")],
    );
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r
        .into_string()
        .unwrap()
        .contains("Too many attempts. Redeeming is paused; try again in 60 minutes."));
}
