//! Images are private by default; the owner can publish one to /gallery or
//! share it by an unguessable link, and take either back at any time.

mod common;

use common::{TestApp, PASSWORD};
use novart::domain::tasks::NewTaskInput;
use rocket::http::{ContentType, Status};
use rocket::local::blocking::Client;

fn state(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn post(client: &Client, path: &str) -> Status {
    let page = client.get("/library").dispatch().into_string().unwrap();
    client
        .post(path.to_string())
        .header(ContentType::Form)
        .body(common::form_body(&[(
            "csrf_token",
            &common::csrf_in(&page),
        )]))
        .dispatch()
        .status()
}

#[test]
fn publish_share_and_take_back() {
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        c.storage.public_retention_hours = 24 * 30;
    });
    let app = state(&t);
    t.signed_in_user("owner@example.com");
    let me = novart::domain::accounts::find(&app.db.get().unwrap(), "owner@example.com")
        .unwrap()
        .id;
    let input = NewTaskInput {
        prompt: "a private harbour at night".into(),
        model: app.engine.catalog.models[0].id.clone(),
        ..Default::default()
    };
    novart::domain::tasks::submit(
        &mut app.db.get().unwrap(),
        &app.engine.config,
        &app.engine.catalog,
        me,
        &input,
    )
    .unwrap();
    while app.engine.process_one("t").unwrap() {}
    let (id, created, expires): (String, i64, i64) = t
        .db()
        .query_row(
            "SELECT public_id, created_at, expires_at FROM assets",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let media = format!("/media/{id}");
    let anonymous = Client::tracked(novart::build_rocket(t.config.clone()).unwrap()).unwrap();
    let anon = |path: &str| anonymous.get(path.to_string()).dispatch().status();
    common::verified_user(app, "stranger@example.com");
    let stranger = t.sign_in_elsewhere("stranger@example.com", PASSWORD, "Other/1.0");

    // Private by default.
    assert_eq!(anon(&media), Status::Unauthorized);
    assert_eq!(
        stranger.get(media.clone()).dispatch().status(),
        Status::NotFound
    );
    assert!(!t.page("/gallery").contains(&id));
    assert!(t.page("/library").contains("Publish to the gallery"));
    assert_eq!(t.get(&media).status(), Status::Ok, "the owner sees it");
    assert_eq!(
        post(&stranger, &format!("/library/{id}/publish")),
        Status::NotFound,
        "only the owner publishes"
    );

    // Published: in the gallery, visible to all, kept for the public retention.
    assert_eq!(
        post(&t.client, &format!("/library/{id}/publish")),
        Status::SeeOther
    );
    let gallery = anonymous.get("/gallery").dispatch().into_string().unwrap();
    assert!(gallery.contains(&id), "listed in the gallery");
    assert!(
        !gallery.contains("private harbour"),
        "no prompts in the gallery"
    );
    assert_eq!(anon(&media), Status::Ok);
    assert_eq!(anon(&format!("{media}/preview")), Status::Ok);
    assert_eq!(stranger.get(media.clone()).dispatch().status(), Status::Ok);
    let public_expiry: i64 = t
        .db()
        .query_row("SELECT expires_at FROM assets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(public_expiry, created + 30 * 24 * 3600);
    assert!(t.page("/library").contains("Remove from the gallery"));

    // Withdrawn: private again, normal retention.
    assert_eq!(
        post(&t.client, &format!("/library/{id}/unpublish")),
        Status::SeeOther
    );
    assert_eq!(anon(&media), Status::Unauthorized);
    // The library's tile (rendered once per content) shows the change.
    let library = t.page("/library");
    assert!(
        library.contains("Publish to the gallery") && !library.contains("Remove from the gallery")
    );
    assert!(!anonymous
        .get("/gallery")
        .dispatch()
        .into_string()
        .unwrap()
        .contains(&id));
    let back: i64 = t
        .db()
        .query_row("SELECT expires_at FROM assets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(back, expires);

    // Shared by link: whoever has it sees the image, nobody else.
    assert_eq!(
        post(&t.client, &format!("/library/{id}/share")),
        Status::SeeOther
    );
    let library = t.page("/library");
    let link = library
        .split("readonly value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#x2F;", "/");
    let share_path = common::local_path(&link);
    let share_id = share_path.trim_start_matches("/s/").to_string();
    assert!(share_id.len() >= 20, "unguessable: {share_id}");
    let page = anonymous.get(share_path.clone()).dispatch();
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().unwrap().replace("&#x2F;", "/");
    assert!(html.contains(&format!("/media/{id}?share={share_id}")));
    assert_eq!(anon(&format!("{media}?share={share_id}")), Status::Ok);
    assert_eq!(
        anon(&format!("{media}/download?share={share_id}")),
        Status::Ok
    );
    assert_eq!(
        anon(&format!("{media}?share=wrong{share_id}")),
        Status::Unauthorized
    );
    assert_eq!(anon(&media), Status::Unauthorized, "still not public");
    assert_eq!(anon("/s/not-a-real-link"), Status::NotFound);

    assert_eq!(
        post(&t.client, &format!("/library/{id}/unshare")),
        Status::SeeOther
    );
    assert_eq!(anon(&share_path), Status::NotFound);
    assert_eq!(
        anon(&format!("{media}?share={share_id}")),
        Status::Unauthorized
    );
}
