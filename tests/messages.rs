//! The inbox: announcements reach every account or one, the navigation shows
//! the unread count, and messages are marked read one by one or all at once.

mod common;

use common::TestApp;
use rocket::http::Status;

fn user_id(t: &TestApp, email: &str) -> novart::model::UserId {
    let a = t.client.rocket().state::<novart::App>().unwrap();
    novart::domain::accounts::find(&a.db.get().unwrap(), email)
        .unwrap()
        .id
}

#[test]
fn announcements_unread_badge_and_marking_read() {
    let t = TestApp::new();
    t.signed_in_user("first@example.com");
    let a = t.client.rocket().state::<novart::App>().unwrap();
    let mut conn = a.db.get().unwrap();
    novart::domain::accounts::create_by_admin(
        &mut conn,
        &t.config,
        "second@example.com",
        common::PASSWORD,
        "",
        novart::model::Role::User,
        true,
    )
    .unwrap();

    let html = t.page("/messages");
    assert!(html.contains("No messages yet"));
    assert!(!html.contains("unread\">"), "no badge without messages");

    let n = novart::domain::messages::announce(
        &mut conn,
        "Maintenance tonight",
        "The studio pauses at 02:00 UTC for ten minutes.\nTasks wait in the queue.",
        None,
    )
    .unwrap();
    assert_eq!(n, 2, "every account");
    let n = novart::domain::messages::announce(
        &mut conn,
        "Just you",
        "Hello <b>first</b>",
        Some(user_id(&t, "first@example.com")),
    )
    .unwrap();
    assert_eq!(n, 1);

    let html = t.page("/messages");
    assert!(html.contains("Maintenance tonight"));
    assert!(html.contains("Just you"));
    assert!(
        html.contains("Hello &lt;b&gt;first&lt;&#x2F;b&gt;"),
        "escaped"
    );
    assert!(
        html.contains("aria-label=\"2 unread\""),
        "badge in the navigation"
    );
    let second = user_id(&t, "second@example.com");
    assert_eq!(novart::domain::messages::unread(&conn, second).unwrap(), 1);

    // Mark one read.
    let first = user_id(&t, "first@example.com");
    let list = novart::domain::messages::list(&conn, first).unwrap();
    let id = list.iter().find(|m| m.title == "Just you").unwrap().id;
    let r = t.submit("/messages", &format!("/messages/{id}/read"), &[]);
    assert_eq!(r.status(), Status::SeeOther);
    assert!(t.page("/studio").contains("aria-label=\"1 unread\""));
    // Someone else's message id changes nothing.
    let theirs = novart::domain::messages::list(&conn, second).unwrap()[0].id;
    t.submit("/messages", &format!("/messages/{theirs}/read"), &[]);
    assert_eq!(novart::domain::messages::unread(&conn, second).unwrap(), 1);
    // CSRF is required.
    assert_eq!(
        t.post_raw("/messages/read-all", &[]).status(),
        Status::Forbidden
    );
    let r = t.submit("/messages", "/messages/read-all", &[]);
    assert_eq!(r.status(), Status::SeeOther);
    let html = t.page("/messages");
    assert!(!html.contains("unread\""), "{}", &html[..200]);
    assert_eq!(novart::domain::messages::unread(&conn, first).unwrap(), 0);
    assert_eq!(novart::domain::messages::unread(&conn, second).unwrap(), 1);

    // Bad input is refused with the field named.
    let e = novart::domain::messages::announce(&mut conn, "", "x", None).unwrap_err();
    assert!(matches!(
        e,
        novart::AppError::Invalid {
            field: Some("title"),
            ..
        }
    ));
}

#[test]
fn security_alerts_for_a_changed_password_and_a_new_key() {
    let t = TestApp::new();
    t.signed_in_user("alerts@example.com");
    let r = t.submit(
        "/settings",
        "/settings/password",
        &[
            ("current_password", common::PASSWORD),
            ("password", "a brand new passphrase"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let html = t.page("/messages");
    assert!(html.contains("Your password was changed"), "{html}");
    assert!(html.contains("Security"));
    assert!(html.contains("aria-label=\"1 unread\""));

    let r = t.submit(
        "/developer",
        "/developer/keys",
        &[("name", "ci"), ("permissions", "generate")],
    );
    assert_eq!(r.status(), Status::Created);
    let html = t.page("/messages");
    assert!(html.contains("A new API key was created"));
    assert!(html.contains("“ci”"));
    assert!(html.contains("aria-label=\"2 unread\""));
    // The alert never contains the secret.
    let a = t.client.rocket().state::<novart::App>().unwrap();
    let conn = a.db.get().unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM messages WHERE title LIKE 'A new API key%'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    let prefix: String = conn
        .query_row("SELECT prefix FROM api_keys", (), |r| r.get(0))
        .unwrap();
    assert!(body.contains(&format!("nva_{prefix}_…")));
}
