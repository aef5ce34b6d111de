//! One-time links are single use under concurrency: many threads presenting
//! the same reset link at once, exactly one succeeds.

mod common;

use std::sync::{Arc, Barrier};

use novart::domain::accounts;
use novart::model::Role;
use novart::App;

#[test]
fn a_reset_link_is_used_once_by_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_for(dir.path());
    let app = Arc::new(App::new(config.clone()).unwrap());
    {
        let mut conn = app.db.get().unwrap();
        accounts::create_by_admin(
            &mut conn,
            &config,
            "race@example.com",
            common::PASSWORD,
            "Race",
            Role::User,
            true,
        )
        .unwrap();
    }
    for round in 0..3 {
        {
            let mut conn = app.db.get().unwrap();
            accounts::request_password_reset(&mut conn, &config, &app.mailer, "race@example.com")
                .unwrap();
        }
        let link = common::mails_to(&config.outbox_dir(), "race@example.com")
            .iter()
            .rev()
            .find_map(|m| common::find_link(m, "/reset?token="))
            .unwrap();
        let token = link.split("token=").nth(1).unwrap().to_string();
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (app, barrier, token, config) =
                    (app.clone(), barrier.clone(), token.clone(), config.clone());
                std::thread::spawn(move || {
                    let mut conn = app.db.get().unwrap();
                    barrier.wait();
                    accounts::reset_password(
                        &mut conn,
                        &config,
                        &app.mailer,
                        &token,
                        &format!("new passphrase {round} {i}"),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            let e = r.as_ref().unwrap_err();
            assert!(
                matches!(
                    e,
                    novart::AppError::Invalid {
                        field: Some("token"),
                        ..
                    }
                ),
                "no SQLITE_BUSY reaches a user: {e:?}"
            );
        }
    }
}
