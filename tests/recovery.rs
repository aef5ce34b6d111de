//! Account-recovery links void each other: a password reset voids a pending
//! e-mail change (and every other open link); a confirmed e-mail change
//! voids the links mailed to the old address and ends the other sessions;
//! confirming a change needs the session that asked for it, or the password.

mod common;

use common::{csrf_in, form_body, local_path, TestApp, PASSWORD};
use rocket::http::{ContentType, Status};
use rocket::local::blocking::Client;

fn state(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn address_of(t: &TestApp, email: &str) -> bool {
    novart::domain::accounts::find(&state(t).db.get().unwrap(), email).is_ok()
}

/// Posts a form from `client`, with the CSRF token of `from_page`.
fn post(
    client: &Client,
    from_page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> (Status, String) {
    let page = client
        .get(from_page.to_string())
        .dispatch()
        .into_string()
        .unwrap();
    let csrf = csrf_in(&page);
    let mut all = vec![("csrf_token", csrf.as_str())];
    all.extend_from_slice(fields);
    let r = client
        .post(action.to_string())
        .header(ContentType::Form)
        .body(form_body(&all))
        .dispatch();
    (r.status(), r.into_string().unwrap_or_default())
}

fn ask_change(client: &Client, to: &str) {
    let (s, body) = post(
        client,
        "/settings",
        "/settings/email",
        &[("new_email", to), ("email_password", PASSWORD)],
    );
    assert_eq!(s, Status::SeeOther, "{body}");
}

fn token_of(link: &str) -> String {
    local_path(link).split("token=").nth(1).unwrap().to_string()
}

fn signed_in(client: &Client) -> bool {
    client.get("/settings").dispatch().status() == Status::Ok
}

#[test]
fn a_password_reset_voids_a_pending_e_mail_change() {
    let t = TestApp::new();
    t.signed_in_user("owner@example.com");
    // Someone who knew the password signs in elsewhere and asks to move the
    // account to their address.
    let intruder = t.sign_in_elsewhere("owner@example.com", PASSWORD, "Intruder/1.0");
    ask_change(&intruder, "intruder@example.com");
    let link = t.latest_link("intruder@example.com", "/settings/email/confirm");

    // The owner notices and resets the password by e-mail.
    let owner = t.other_browser();
    let (s, _) = post(
        &owner,
        "/forgot",
        "/forgot",
        &[("email", "owner@example.com")],
    );
    assert_eq!(s, Status::Ok);
    let reset = t.latest_link("owner@example.com", "/reset");
    let (s, body) = post(
        &owner,
        &local_path(&reset),
        "/reset",
        &[
            ("token", &token_of(&reset)),
            ("password", "a brand new secret 42"),
        ],
    );
    assert_eq!(s, Status::SeeOther, "{body}");

    // The pending change is void: from a signed-out browser, with the old
    // password or the new one, and in the intruder's (ended) session.
    let stranger = t.other_browser();
    let page = stranger.get(local_path(&link)).dispatch();
    assert_eq!(page.status(), Status::BadRequest);
    for password in [PASSWORD, "a brand new secret 42", ""] {
        let (s, _) = post(
            &stranger,
            "/login",
            "/settings/email/confirm",
            &[("token", &token_of(&link)), ("confirm_password", password)],
        );
        assert_eq!(s, Status::BadRequest);
    }
    assert!(
        !signed_in(&intruder),
        "the reset ended the intruder's session"
    );
    assert!(address_of(&t, "owner@example.com"));
    assert!(!address_of(&t, "intruder@example.com"));
}

#[test]
fn a_password_change_in_settings_voids_open_links_too() {
    let t = TestApp::new();
    t.signed_in_user("keep@example.com");
    let intruder = t.sign_in_elsewhere("keep@example.com", PASSWORD, "Intruder/1.0");
    ask_change(&intruder, "taker@example.com");
    let link = t.latest_link("taker@example.com", "/settings/email/confirm");
    let r = t.submit(
        "/settings",
        "/settings/password",
        &[
            ("current_password", PASSWORD),
            ("password", "another long secret 7"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let (s, _) = post(
        &t.other_browser(),
        "/login",
        "/settings/email/confirm",
        &[
            ("token", &token_of(&link)),
            ("confirm_password", "another long secret 7"),
        ],
    );
    assert_eq!(s, Status::BadRequest);
    assert!(address_of(&t, "keep@example.com"));
}

#[test]
fn a_confirmed_e_mail_change_voids_links_sent_to_the_old_address_and_other_sessions() {
    let t = TestApp::new();
    t.signed_in_user("before@example.com");
    let other_device = t.sign_in_elsewhere("before@example.com", PASSWORD, "Phone/1.0");
    // A reset link goes to the old address (asked for from a signed-out
    // browser).
    let (s, _) = post(
        &t.other_browser(),
        "/forgot",
        "/forgot",
        &[("email", "before@example.com")],
    );
    assert_eq!(s, Status::Ok);
    let reset = t.latest_link("before@example.com", "/reset");

    // The owner moves the account to a new address, in this browser.
    ask_change(&t.client, "after@example.com");
    let link = t.latest_link("after@example.com", "/settings/email/confirm");
    let page = t.page(&local_path(&link));
    assert!(
        !page.contains("name=\"confirm_password\" type=\"password\""),
        "the asking session needs no password"
    );
    let (s, body) = post(
        &t.client,
        "/settings",
        "/settings/email/confirm",
        &[("token", &token_of(&link))],
    );
    assert_eq!(s, Status::SeeOther, "{body}");
    assert!(address_of(&t, "after@example.com"));

    // The reset link mailed to the old address no longer works.
    let stranger = t.other_browser();
    let (s, _) = post(
        &stranger,
        &local_path(&reset),
        "/reset",
        &[
            ("token", &token_of(&reset)),
            ("password", "taken over secret 99"),
        ],
    );
    assert_eq!(s, Status::BadRequest);
    assert_eq!(
        common::sign_in(&stranger, "after@example.com"),
        Status::SeeOther,
        "the password is unchanged"
    );
    // The other device was signed out; this one stays signed in.
    assert!(!signed_in(&other_device));
    assert!(signed_in(&t.client));
    assert!(t
        .mails_to("before@example.com")
        .iter()
        .any(|m| m.contains("after@example.com")));
}

#[test]
fn confirming_elsewhere_needs_the_password() {
    let t = TestApp::new();
    t.signed_in_user("mine@example.com");
    ask_change(&t.client, "elsewhere@example.com");
    let link = t.latest_link("elsewhere@example.com", "/settings/email/confirm");
    let token = token_of(&link);

    // A signed-out browser (the mail opened on another computer): the page
    // asks for the password, and without it nothing changes.
    let laptop = t.other_browser();
    let page = laptop
        .get(local_path(&link))
        .dispatch()
        .into_string()
        .unwrap();
    assert!(page.contains("name=\"confirm_password\""), "{page}");
    for (password, why) in [("", "no password"), ("not the password", "a wrong one")] {
        let (s, body) = post(
            &laptop,
            &local_path(&link),
            "/settings/email/confirm",
            &[("token", &token), ("confirm_password", password)],
        );
        assert_eq!(s, Status::BadRequest, "{why}");
        assert!(
            body.contains("name=\"confirm_password\""),
            "the form is shown again: {body}"
        );
        assert!(address_of(&t, "mine@example.com"), "{why}");
    }
    // Another session of the same account is not the one that asked.
    let phone = t.sign_in_elsewhere("mine@example.com", PASSWORD, "Phone/1.0");
    let (s, _) = post(
        &phone,
        "/settings",
        "/settings/email/confirm",
        &[("token", &token)],
    );
    assert_eq!(s, Status::BadRequest);
    assert!(address_of(&t, "mine@example.com"));

    // With the password it goes through, and every session ends.
    let (s, body) = post(
        &laptop,
        &local_path(&link),
        "/settings/email/confirm",
        &[("token", &token), ("confirm_password", PASSWORD)],
    );
    assert_eq!(s, Status::SeeOther, "{body}");
    assert!(address_of(&t, "elsewhere@example.com"));
    assert!(!signed_in(&t.client) && !signed_in(&phone));
}
