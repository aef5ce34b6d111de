//! Every amount that enters (grants, deductions, codes, prices, rewards) is
//! bounded; totals use checked arithmetic; `novart doctor` flags any wallet
//! or amount outside the bounds.

mod common;

use common::novart;
use novart::model::{MAX_AMOUNT, MAX_BUCKET};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn user(d: &std::path::Path, email: &str) {
    let o = common::novart_with_stdin(
        d,
        &[
            "user",
            "create",
            "--email",
            email,
            "--verified",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn wallet(d: &std::path::Path, email: &str) -> (i64, i64) {
    let db = common::db_at(&d.join("data"));
    db.query_row(
        "SELECT balance, bonus FROM wallets w JOIN users u ON u.id = w.user_id WHERE u.email = ?1",
        [email],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn the_cli_refuses_amounts_past_the_maximum_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    user(d, "rich@example.com");
    let before = wallet(d, "rich@example.com");
    let max = MAX_AMOUNT.to_string();
    let over = (MAX_AMOUNT + 1).to_string();
    for amount in ["9223372036854775807", "5000000000000000000", over.as_str()] {
        for cmd in [
            vec![
                "credits",
                "grant",
                "rich@example.com",
                amount,
                "--reason",
                "x",
            ],
            vec![
                "credits",
                "grant",
                "rich@example.com",
                amount,
                "--bonus",
                "--reason",
                "x",
            ],
            vec![
                "credits",
                "deduct",
                "rich@example.com",
                amount,
                "--reason",
                "x",
            ],
            vec!["codes", "create", "--amount", amount],
        ] {
            let o = novart(d, &cmd);
            assert!(!o.status.success(), "{cmd:?}: {}", text(&o));
            assert!(
                text(&o).contains(&max),
                "the message names the maximum: {cmd:?}: {}",
                text(&o)
            );
        }
    }
    assert_eq!(wallet(d, "rich@example.com"), before);
    let o = novart(d, &["codes", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    // The maximum itself is fine.
    let o = novart(
        d,
        &[
            "credits",
            "grant",
            "rich@example.com",
            &max,
            "--reason",
            "x",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(novart(d, &["doctor"]).status.success());
}

#[test]
fn a_wallet_cannot_grow_past_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_for(dir.path());
    let (app, user) = common::app_with_user(&config, "full@example.com");
    let mut conn = app.db.get().unwrap();
    // Filled close to the bound, with a ledger row that says so.
    common::in_tx(&mut conn, |tx| {
        novart::domain::wallet::apply(
            tx,
            &novart::domain::wallet::Change {
                user,
                kind: "admin_grant",
                delta_balance: MAX_BUCKET - 10,
                delta_bonus: 0,
                task: None,
                code: None,
                related_user: None,
                idem_key: "fill".into(),
                actor: "test",
                reason: "fill",
            },
            0,
        )
    })
    .unwrap();
    let err =
        novart::domain::wallet::grant(&mut conn, user, 11, false, "admin", "more").unwrap_err();
    assert!(err.to_string().contains(&MAX_BUCKET.to_string()), "{err}");
    let w = novart::domain::wallet::get(&conn, user).unwrap();
    assert_eq!(w.balance, MAX_BUCKET - 10);
    novart::domain::wallet::grant(&mut conn, user, 10, false, "admin", "exactly").unwrap();
    // Paid and bonus both full: the total still adds up.
    novart::domain::wallet::grant(&mut conn, user, MAX_AMOUNT, true, "admin", "bonus").unwrap();
    let w = novart::domain::wallet::get(&conn, user).unwrap();
    let bonus = MAX_AMOUNT + i64::from(config.billing.signup_bonus);
    assert_eq!((w.balance, w.bonus), (MAX_BUCKET, bonus));
    assert_eq!(w.total(), MAX_BUCKET + bonus);
}

#[test]
fn prices_and_rewards_past_the_maximum_stop_start_up() {
    let mut c = novart::Config::for_data_dir(std::path::Path::new("/tmp/unused"));
    c.billing.signup_bonus = u32::MAX;
    let e = c.validate().unwrap_err();
    assert_eq!(e.key, "billing.signup_bonus");
    let mut c = novart::Config::for_data_dir(std::path::Path::new("/tmp/unused"));
    c.billing.referral_reward = 2_000_000_000;
    assert_eq!(c.validate().unwrap_err().key, "billing.referral_reward");
    let mut c = novart::Config::for_data_dir(std::path::Path::new("/tmp/unused"));
    let (_, mut models) = c.catalogue();
    models[0].price = u64::MAX / 2;
    c.models = models;
    let e = c.validate().unwrap_err();
    assert!(e.key.ends_with("price"), "{}", e.key);
}

#[test]
fn doctor_flags_amounts_outside_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    user(d, "odd@example.com");
    assert!(novart(d, &["doctor"]).status.success());
    // A wallet and its ledger from before the bounds: they agree, and the
    // total would overflow.
    let db = common::db_at(&d.join("data"));
    db.execute_batch(
        "UPDATE wallets SET balance = 9223372036854775807, bonus = 20
           WHERE user_id = (SELECT id FROM users WHERE email = 'odd@example.com');
         INSERT INTO ledger (user_id, kind, delta_balance, delta_bonus, balance_after, bonus_after, idem_key, actor, reason, created_at)
           SELECT id, 'admin_grant', 9223372036854775807, 0, 9223372036854775807, 20, 'old', 'admin', 'old', 0
           FROM users WHERE email = 'odd@example.com';",
    )
    .unwrap();
    let o = novart(d, &["doctor"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("amounts in bounds"), "{}", text(&o));
    assert!(text(&o).contains("9223372036854775807"), "{}", text(&o));
    // Pages that show the wallet still answer.
    let o = novart(d, &["user", "show", "odd@example.com", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
}
