//! Credits are exact: every wallet equals the sum of its ledger and never goes
//! negative, charges happen with the task insert, refunds happen once.

mod common;

use std::sync::{Arc, Barrier};

use novart::domain::tasks::{self, Failure, NewTaskInput};
use novart::domain::wallet;
use novart::model::{TaskStatus, UserId};
use novart::{App, AppError};
use proptest::prelude::*;

fn app(bonus: u32) -> (tempfile::TempDir, App, UserId) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(dir.path());
    config.billing.signup_bonus = bonus;
    let (app, user) = common::app_with_user(&config, "w@example.com");
    (dir, app, user)
}

fn submit(app: &App, user: UserId, n: u32) -> Result<novart::model::Task, AppError> {
    let input = NewTaskInput {
        prompt: "coins".into(),
        model: "novart-builtin".into(),
        size: Some("512x512".into()),
        n: Some(n),
        ..Default::default()
    };
    tasks::submit(
        &mut app.db.get().unwrap(),
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
}

/// The invariants: wallet = ledger sums, no bucket below zero, at most one
/// refund per task and never more than its charge.
fn check(app: &App) {
    let conn = app.db.get().unwrap();
    assert!(
        novart::domain::wallet::mismatches(&conn)
            .unwrap()
            .is_empty(),
        "a wallet differs from its ledger"
    );
    let negative: i64 = conn
        .query_row(
            "SELECT count(*) FROM wallets WHERE balance < 0 OR bonus < 0",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(negative, 0);
    let over: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks t WHERE
                (SELECT count(*) FROM ledger l WHERE l.task_id = t.id AND l.kind = 'task_refund') > 1
             OR (SELECT coalesce(sum(delta_balance + delta_bonus), 0) FROM ledger l WHERE l.task_id = t.id) > 0", (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(over, 0, "a task was refunded twice or more than it cost");
}

#[derive(Debug, Clone)]
enum Op {
    Grant(i64, bool),
    Deduct(i64),
    Submit(u32),
    Cancel(usize),
    Fail,
    Run,
    Redeem(i64, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..40, any::<bool>()).prop_map(|(a, b)| Op::Grant(a, b)),
        (1i64..40).prop_map(Op::Deduct),
        (1u32..5).prop_map(Op::Submit),
        (0usize..8).prop_map(Op::Cancel),
        Just(Op::Fail),
        Just(Op::Run),
        (1i64..30, any::<bool>()).prop_map(|(a, b)| Op::Redeem(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn balances_always_equal_the_ledger(ops in prop::collection::vec(op(), 1..25)) {
        let (_dir, app, user) = app(5);
        let mut ids: Vec<String> = Vec::new();
        for op in ops {
            let mut conn = app.db.get().unwrap();
            let before = wallet::get(&conn, user).unwrap();
            match op {
                Op::Grant(a, bonus) => { wallet::grant(&mut conn, user, a, bonus, "admin", "test").unwrap(); }
                Op::Deduct(a) => {
                    let r = wallet::deduct(&mut conn, user, a, "admin", "test");
                    prop_assert_eq!(r.is_err(), before.total() < a);
                }
                Op::Submit(n) => {
                    drop(conn);
                    match submit(&app, user, n) {
                        Ok(t) => ids.push(t.public_id),
                        Err(AppError::InsufficientBalance(_)) => prop_assert!(before.total() < n as i64),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                Op::Cancel(i) => {
                    if let Some(id) = ids.get(i % ids.len().max(1)) {
                        let _ = tasks::cancel(&mut conn, user, id);
                    }
                }
                Op::Fail => {
                    if let Some(t) = tasks::claim(&mut conn, &app.config, "w").unwrap() {
                        tasks::fail(&mut conn, &app.config, &t, Failure::Final { message: "no", raw: "no" }).unwrap();
                    }
                }
                Op::Run => { drop(conn); app.engine.process_one("w").unwrap(); }
                Op::Redeem(amount, bonus) => {
                    let req = novart::domain::codes::NewCodes { amount, count: 1, bonus, max_uses: 1, expires_at: None, batch: None, actor: "t" };
                    let code = novart::domain::codes::create(&mut conn, &req).unwrap().remove(0);
                    let r = novart::domain::codes::redeem(&mut conn, &app.config, user, None, &code).unwrap();
                    prop_assert_eq!(r.wallet.total(), before.total() + amount);
                    prop_assert!(novart::domain::codes::redeem(&mut conn, &app.config, user, None, &code).is_err());
                }
            }
            check(&app);
        }
    }
}

#[test]
fn charging_takes_bonus_first_and_refunds_go_back_where_they_came_from() {
    let (_dir, app, user) = app(3);
    let mut conn = app.db.get().unwrap();
    wallet::grant(&mut conn, user, 10, false, "admin", "test").unwrap();
    let t = submit(&app, user, 4).unwrap();
    let w = wallet::get(&conn, user).unwrap();
    assert_eq!((w.balance, w.bonus), (9, 0), "3 from bonus, 1 from paid");
    tasks::cancel(&mut conn, user, &t.public_id).unwrap();
    let w = wallet::get(&conn, user).unwrap();
    assert_eq!((w.balance, w.bonus), (10, 3));
    // Canceling again refunds nothing more.
    tasks::cancel(&mut conn, user, &t.public_id).unwrap();
    assert_eq!(wallet::get(&conn, user).unwrap().total(), 13);
    check(&app);
}

#[test]
fn concurrent_submissions_cannot_overspend() {
    let (_dir, app, user) = app(20);
    let app = Arc::new(app);
    let barrier = Arc::new(Barrier::new(40));
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                submit(&app, user, 1)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 20, "exactly as many as the balance pays for");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(r, Err(AppError::InsufficientBalance(_))), "{r:?}");
    }
    assert_eq!(
        wallet::get(&app.db.get().unwrap(), user).unwrap().total(),
        0
    );
    check(&app);
}

#[test]
fn fail_cancel_and_lease_recovery_racing_refund_once() {
    for round in 0..10 {
        let (_dir, app, user) = app(10);
        let app = Arc::new(app);
        let t = submit(&app, user, 2).unwrap();
        let claimed = tasks::claim(&mut app.db.get().unwrap(), &app.config, "w")
            .unwrap()
            .unwrap();
        app.db
            .get()
            .unwrap()
            .execute("UPDATE tasks SET lease_until = 1", ())
            .unwrap();
        let barrier = Arc::new(Barrier::new(3));
        let mut handles = Vec::new();
        {
            let (app, barrier, task) = (app.clone(), barrier.clone(), claimed.clone());
            handles.push(std::thread::spawn(move || {
                barrier.wait();
                let _ = tasks::fail(
                    &mut app.db.get().unwrap(),
                    &app.config,
                    &task,
                    Failure::Final {
                        message: "x",
                        raw: "x",
                    },
                );
            }));
        }
        {
            let (app, barrier, id) = (app.clone(), barrier.clone(), t.public_id.clone());
            handles.push(std::thread::spawn(move || {
                barrier.wait();
                let _ = tasks::cancel(&mut app.db.get().unwrap(), user, &id);
            }));
        }
        {
            let (app, barrier) = (app.clone(), barrier.clone());
            handles.push(std::thread::spawn(move || {
                barrier.wait();
                let mut conn = app.db.get().unwrap();
                let _ = tasks::recover_leases(&mut conn, &app.config, i64::MAX);
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let conn = app.db.get().unwrap();
        let refunds: i64 = conn
            .query_row(
                "SELECT count(*) FROM ledger WHERE kind = 'task_refund'",
                (),
                |r| r.get(0),
            )
            .unwrap();
        let status = tasks::get(&conn, user, &t.public_id).unwrap().task.status;
        match status {
            TaskStatus::Failed | TaskStatus::Canceled => {
                assert_eq!(refunds, 1, "round {round}: {status:?}");
                assert_eq!(wallet::get(&conn, user).unwrap().total(), 10);
            }
            // Recovery put it back in the queue: still charged, no refund.
            TaskStatus::Queued => assert_eq!(refunds, 0, "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
        check(&app);
    }
}

#[test]
fn partial_success_refunds_the_missing_images() {
    let (_dir, app, user) = app(10);
    let t = submit(&app, user, 4).unwrap();
    let claimed = tasks::claim(&mut app.db.get().unwrap(), &app.config, "w")
        .unwrap()
        .unwrap();
    let mut png = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let two: Vec<_> = (0..2)
        .map(|_| novart::domain::assets::prepare_result(&png).unwrap())
        .collect();
    app.engine
        .finish(&claimed, "w", Ok(("builtin".into(), two)))
        .unwrap();
    let conn = app.db.get().unwrap();
    assert_eq!(
        tasks::get(&conn, user, &t.public_id).unwrap().outputs.len(),
        2
    );
    assert_eq!(
        wallet::get(&conn, user).unwrap().total(),
        8,
        "charged 4, refunded 2"
    );
    check(&app);
}

mod http {
    use super::common::TestApp;
    use rocket::http::{ContentType, Header, Status};
    use serde_json::{json, Value};

    fn api_post(app: &TestApp, body: Value) -> (Status, Value) {
        let token = app.csrf("/");
        let r = app
            .client
            .post("/api/v1/tasks")
            .header(Header::new("x-csrf-token", token))
            .header(ContentType::JSON)
            .body(body.to_string())
            .dispatch();
        let status = r.status();
        (
            status,
            serde_json::from_str(&r.into_string().unwrap()).unwrap(),
        )
    }

    fn account(app: &TestApp) -> Value {
        let token = app.csrf("/");
        let r = app
            .client
            .get("/api/v1/account")
            .header(Header::new("x-csrf-token", token))
            .dispatch();
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    }

    #[test]
    fn the_api_refuses_with_402_and_the_wallet_shows_every_change() {
        let app = TestApp::with(|c| {
            c.queue.workers = 0;
            c.billing.signup_bonus = 5;
        });
        app.signed_in_user("pay@example.com");
        assert_eq!(account(&app)["available"], 5);
        let (status, v) = api_post(&app, json!({"prompt": "four", "n": 4}));
        assert_eq!(status, Status::Created);
        assert_eq!(v["cost"], 4);
        assert_eq!(account(&app)["available"], 1);
        let (status, v) = api_post(&app, json!({"prompt": "two more", "n": 2}));
        assert_eq!(status, Status::PaymentRequired);
        assert_eq!(v["error"]["code"], "insufficient_balance");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("costs 2 credits"));
        let n: i64 = app
            .db()
            .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the refused task was not created");

        // The studio form without JavaScript says the same, with the way to the wallet.
        let r = app.submit(
            "/studio",
            "/studio",
            &[("prompt", "x"), ("model", "novart-builtin"), ("n", "2")],
        );
        assert_eq!(r.status(), Status::PaymentRequired);
        let body = r.into_string().unwrap();
        assert!(body.contains("costs 2 credits") && body.contains("href=\"/wallet\""));

        // Cancel: refunded, and the wallet lists charge and refund.
        let id: String = app
            .db()
            .query_row("SELECT public_id FROM tasks", (), |r| r.get(0))
            .unwrap();
        let token = app.csrf("/");
        app.client
            .post(format!("/api/v1/tasks/{id}/cancel"))
            .header(Header::new("x-csrf-token", token))
            .dispatch();
        assert_eq!(account(&app)["available"], 5);
        let page = app.page("/wallet");
        assert!(
            page.contains("Welcome credits") && page.contains("Images") && page.contains("Refund")
        );
        assert!(page.contains("id=\"wallet-total\">5<"));
        assert!(
            app.page("/wallet?kind=task_refund").matches("<tr>").count() == 2,
            "header + one row"
        );

        let r = app.get("/wallet/ledger.csv");
        assert_eq!(
            r.content_type().unwrap().to_string(),
            "text/csv; charset=utf-8"
        );
        let csv = r.into_string().unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "time_utc,kind,delta_balance,delta_bonus,balance_after,bonus_after,task,reason"
        );
        assert_eq!(lines.len(), 4, "{csv}");
        // Newest first: the refund, the charge, the welcome credits.
        assert!(lines[1].contains(",task_refund,0,4,0,5,"), "{csv}");
        assert!(lines[2].contains(",task_charge,0,-4,0,1,"), "{csv}");
        assert!(
            lines[3].ends_with(",signup_bonus,0,5,0,5,,Welcome credits"),
            "{csv}"
        );
    }
}
