//! The studio's JSON API (session + x-csrf-token), stored media, and the
//! reference-image intake, through HTTP.

mod common;

use common::TestApp;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::LocalResponse;
use serde_json::{json, Value};

fn app() -> TestApp {
    // No background workers: tests run the queue step by step.
    TestApp::with(|c| c.queue.workers = 0)
}

fn engine(app: &TestApp) -> &novart::jobs::queue::Engine {
    &app.client.rocket().state::<novart::App>().unwrap().engine
}

fn api<'a>(app: &'a TestApp, method: &str, path: &str, body: Option<Value>) -> LocalResponse<'a> {
    let token = app.csrf("/");
    let req = match method {
        "GET" => app.client.get(path.to_string()),
        _ => app.client.post(path.to_string()),
    };
    let req = req.header(Header::new("x-csrf-token", token));
    match body {
        Some(b) => req.header(ContentType::JSON).body(b.to_string()).dispatch(),
        None => req.dispatch(),
    }
}

fn json_of(r: LocalResponse<'_>) -> Value {
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn upload<'a>(app: &'a TestApp, bytes: Vec<u8>, ct: ContentType) -> LocalResponse<'a> {
    let token = app.csrf("/");
    app.client
        .post("/api/v1/uploads")
        .header(Header::new("x-csrf-token", token))
        .header(ct)
        .body(bytes)
        .dispatch()
}

#[test]
fn the_api_needs_a_session_and_the_csrf_header() {
    let app = app();
    let r = app.client.get("/api/v1/models").dispatch();
    assert_eq!(r.status(), Status::Unauthorized);
    let v = json_of(r);
    assert_eq!(v["error"]["type"], "authentication_error");

    app.signed_in_user("api@example.com");
    let r = app.client.get("/api/v1/models").dispatch();
    assert_eq!(
        r.status(),
        Status::Forbidden,
        "session without x-csrf-token"
    );
    assert_eq!(json_of(r)["error"]["code"], "forbidden");
    let r = app
        .client
        .post("/api/v1/tasks")
        .header(Header::new("x-csrf-token", "0".repeat(64)))
        .header(ContentType::JSON)
        .body(json!({"prompt": "x"}).to_string())
        .dispatch();
    assert_eq!(r.status(), Status::Forbidden);
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    let r = app
        .client
        .get("/api/v1/models")
        .header(Header::new("Authorization", "Bearer nva_x_y"))
        .dispatch();
    assert_eq!(r.status(), Status::Unauthorized);

    let r = api(&app, "GET", "/api/v1/models", None);
    assert_eq!(r.status(), Status::Ok);
    let v = json_of(r);
    assert_eq!(v["data"][0]["id"], "novart-builtin");
    assert_eq!(v["data"][0]["builtin"], true);
    assert!(v["data"][0]["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["aspect_ratio"] == "16:9"));
}

#[test]
fn create_run_fetch_and_download_a_task() {
    let app = app();
    app.signed_in_user("make@example.com");
    let r = api(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "a galaxy of stars", "aspect_ratio": "16:9", "n": 2, "seed": 5})),
    );
    assert_eq!(r.status(), Status::Created);
    let location = r.headers().get_one("Location").unwrap().to_string();
    let t = json_of(r);
    assert_eq!(t["status"], "queued");
    assert_eq!(t["width"], 1024);
    assert_eq!(t["height"], 576);
    assert_eq!(t["model"], "novart-builtin");
    assert_eq!(
        location,
        format!("/api/v1/tasks/{}", t["id"].as_str().unwrap())
    );
    assert!(t["outputs"].as_array().unwrap().is_empty());

    assert!(engine(&app).process_one("test").unwrap());
    let v = json_of(api(&app, "GET", &location, None));
    assert_eq!(v["status"], "succeeded");
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    // The API hands out signed links; the owner's session also opens the
    // plain address.
    assert!(outputs[0]["url"].as_str().unwrap().contains("signature="));
    let url = &format!("/media/{}", outputs[0]["id"].as_str().unwrap());

    // The owner gets the PNG with an ETag; ranges and revalidation work.
    let r = app.get(url);
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(r.content_type(), Some(ContentType::PNG));
    assert_eq!(
        r.headers().get_one("X-Content-Type-Options"),
        Some("nosniff")
    );
    let etag = r.headers().get_one("ETag").unwrap().to_string();
    let full = r.into_bytes().unwrap();
    assert_eq!(image::load_from_memory(&full).unwrap().width(), 1024);
    let r = app
        .client
        .get(url.to_string())
        .header(Header::new("Range", "bytes=0-7"))
        .dispatch();
    assert_eq!(r.status(), Status::PartialContent);
    assert_eq!(
        r.headers().get_one("Content-Range").unwrap(),
        format!("bytes 0-7/{}", full.len())
    );
    assert_eq!(r.into_bytes().unwrap(), full[..8].to_vec());
    let r = app
        .client
        .get(url.to_string())
        .header(Header::new("Range", "bytes=999999999-"))
        .dispatch();
    assert_eq!(r.status(), Status::RangeNotSatisfiable);
    let r = app
        .client
        .get(url.to_string())
        .header(Header::new("If-None-Match", etag))
        .dispatch();
    assert_eq!(r.status(), Status::NotModified);

    let r = app.get(&format!("{url}/preview"));
    assert_eq!(r.content_type(), Some(ContentType::JPEG));
    // Downloads are named after the prompt and the seed (and the image's
    // place in its task after the first).
    let r = app.get(&format!("{url}/download"));
    let disposition = r
        .headers()
        .get_one("Content-Disposition")
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"a-galaxy-of-stars-5")
            && disposition.contains(".png\"; filename*=UTF-8''a-galaxy-of-stars-5"),
        "{disposition}"
    );
    let downloads: i64 = app
        .db()
        .query_row("SELECT max(downloads) FROM assets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(downloads, 1);

    // Another user sees neither the task nor the image.
    app.submit("/", "/logout", &[]);
    app.signed_in_user("other@example.com");
    assert_eq!(app.get(url).status(), Status::NotFound);
    assert_eq!(api(&app, "GET", &location, None).status(), Status::NotFound);
    let v = json_of(api(&app, "GET", "/api/v1/tasks", None));
    assert!(v["data"].as_array().unwrap().is_empty());
}

#[test]
fn bad_task_requests_get_the_envelope_with_the_parameter() {
    let app = app();
    app.signed_in_user("bad@example.com");
    for (body, param) in [
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "x".repeat(10_000)}), "prompt"),
        (json!({"prompt": "x", "model": "dall-e-9"}), "model"),
        (json!({"prompt": "x", "size": "100x100"}), "size"),
        (json!({"prompt": "x", "n": 50}), "n"),
        (json!({"prompt": "x", "promt": "typo"}), "body"),
        (
            json!({"prompt": "x", "reference_images": ["ref_nope"]}),
            "reference_images",
        ),
        (
            json!({"prompt": "x", "reference_images": ["!!!not base64"]}),
            "reference_images",
        ),
    ] {
        let r = api(&app, "POST", "/api/v1/tasks", Some(body.clone()));
        assert_eq!(r.status(), Status::BadRequest, "{body}");
        let v = json_of(r);
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let token = app.csrf("/");
    let r = app
        .client
        .post("/api/v1/tasks")
        .header(Header::new("x-csrf-token", token))
        .header(ContentType::JSON)
        .body("{not json")
        .dispatch();
    assert_eq!(r.status(), Status::BadRequest);
    assert_eq!(json_of(r)["error"]["param"], "body");
}

#[test]
fn list_paginates_and_cancel_works() {
    let app = app();
    app.signed_in_user("list@example.com");
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = json_of(api(
            &app,
            "POST",
            "/api/v1/tasks",
            Some(json!({"prompt": format!("p{i}")})),
        ));
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let page1 = json_of(api(&app, "GET", "/api/v1/tasks?limit=3", None));
    let got: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), &ids[3], &ids[2]]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = json_of(api(
        &app,
        "GET",
        &format!("/api/v1/tasks?limit=3&cursor={cursor}"),
        None,
    ));
    assert_eq!(page2["data"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());

    let r = api(
        &app,
        "POST",
        &format!("/api/v1/tasks/{}/cancel", ids[0]),
        None,
    );
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(json_of(r)["status"], "canceled");
    let v = json_of(api(&app, "GET", "/api/v1/tasks?status=canceled", None));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let r = api(&app, "GET", "/api/v1/tasks?status=weird", None);
    assert_eq!(json_of(r)["error"]["param"], "status");
}

#[test]
fn reference_uploads_are_checked_and_cleaned() {
    let app = TestApp::with(|c| {
        c.queue.workers = 0;
        c.storage.max_upload_bytes = 200_000;
        c.storage.max_upload_pixels = 1_000_000;
    });
    app.signed_in_user("ref@example.com");

    let r = upload(&app, png(64, 48), ContentType::PNG);
    assert_eq!(r.status(), Status::Created);
    let v = json_of(r);
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ref_"));
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(64), Some(48))
    );

    // SVG and HTML are refused.
    for bad in [
        &b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"[..],
        &b"<!doctype html><script>alert(1)</script>"[..],
    ] {
        let r = upload(&app, bad.to_vec(), ContentType::PNG);
        assert_eq!(r.status(), Status::BadRequest);
        assert_eq!(json_of(r)["error"]["param"], "reference_images");
    }
    // Truncated PNG.
    let mut cut = png(64, 64);
    cut.truncate(cut.len() / 2);
    assert_eq!(
        upload(&app, cut, ContentType::PNG).status(),
        Status::BadRequest
    );

    // A tiny file declaring 65535×65535: refused from the header, no decoding.
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&65535u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&65535u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]); // a valid IHDR checksum, as an attacker would write
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = upload(&app, bomb, ContentType::PNG);
    assert_eq!(r.status(), Status::PayloadTooLarge);
    assert!(json_of(r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("65535×65535"));

    // Over the byte limit: 413.
    let r = upload(&app, vec![0u8; 300_000], ContentType::PNG);
    assert_eq!(r.status(), Status::PayloadTooLarge);

    // A PNG with HTML appended (polyglot): stored as a clean re-encoded PNG.
    let mut poly = png(32, 32);
    poly.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");
    let r = upload(&app, poly, ContentType::PNG);
    assert_eq!(r.status(), Status::Created);
    let pid = json_of(r)["id"].as_str().unwrap().to_string();
    let path: String = app
        .db()
        .query_row(
            "SELECT path FROM assets WHERE public_id = ?1",
            [&pid],
            |r| r.get(0),
        )
        .unwrap();
    let stored = std::fs::read(common::s3::stored_path(&app.config, &path)).unwrap();
    assert!(
        !stored.windows(6).any(|w| w == b"script"),
        "appended HTML survived"
    );
    assert!(
        path.ends_with(&format!("{pid}.png")),
        "server-chosen name: {path}"
    );

    // A JPEG carrying EXIF (with GPS) comes out without it.
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        40,
        30,
        image::Rgb([10, 200, 10]),
    ))
    .write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let exif =
        b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x88\x25\0\x04\0\0\0\x01\0\0\0\x1aGPSLatitude52.5200N";
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    app1.extend_from_slice(exif);
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend_from_slice(&app1);
    with_exif.extend_from_slice(&jpeg[2..]);
    let r = upload(&app, with_exif, ContentType::JPEG);
    assert_eq!(r.status(), Status::Created);
    let jid = json_of(r)["id"].as_str().unwrap().to_string();
    let path: String = app
        .db()
        .query_row(
            "SELECT path FROM assets WHERE public_id = ?1",
            [&jid],
            |r| r.get(0),
        )
        .unwrap();
    let stored = std::fs::read(common::s3::stored_path(&app.config, &path)).unwrap();
    assert!(!stored.windows(4).any(|w| w == b"Exif") && !stored.windows(3).any(|w| w == b"GPS"));

    // A task can use the uploaded reference; the builtin renderer blends it in.
    let r = api(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "night", "size": "512x512", "reference_images": [id]})),
    );
    assert_eq!(r.status(), Status::Created);
    assert!(engine(&app).process_one("t").unwrap());
    let status: String = app
        .db()
        .query_row("SELECT status FROM tasks", (), |r| r.get(0))
        .unwrap();
    assert_eq!(status, "succeeded");

    // Base64 works too.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    let r = api(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "x", "reference_images": [format!("data:image/png;base64,{b64}")]})),
    );
    assert_eq!(r.status(), Status::Created);
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn library_lists_filters_and_deletes() {
    let app = app();
    app.signed_in_user("lib@example.com");
    assert!(app.page("/library").contains("Your library is empty"));
    let r = api(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "<b>tiles</b> of a library", "n": 2})),
    );
    assert_eq!(r.status(), Status::Created);
    assert!(engine(&app).process_one("t").unwrap());
    let page = app.page("/library");
    assert_eq!(page.matches("class=\"tile\"").count(), 2);
    assert!(
        page.contains("&lt;b&gt;tiles&lt;&#x2F;b&gt;"),
        "prompt escaped in alt text and captions"
    );
    assert!(!page.contains("<b>tiles</b>"));
    assert_eq!(
        app.page("/library?since=hour")
            .matches("class=\"tile\"")
            .count(),
        2
    );
    assert!(app
        .page("/library?model=other-model")
        .contains("No images match this filter"));

    let (id, path): (String, String) = app
        .db()
        .query_row(
            "SELECT public_id, path FROM assets ORDER BY id LIMIT 1",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let r = app.submit("/library", &format!("/library/{id}/delete"), &[]);
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(app.page("/library").matches("class=\"tile\"").count(), 1);
    assert!(
        !common::s3::stored_path(&app.config, &path).exists(),
        "the file is gone with its row"
    );
    assert_eq!(app.get(&format!("/media/{id}")).status(), Status::NotFound);
    // Without the token nothing is deleted.
    let (other, _): (String, String) = app
        .db()
        .query_row("SELECT public_id, path FROM assets LIMIT 1", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        app.post_raw(&format!("/library/{other}/delete"), &[])
            .status(),
        Status::Forbidden
    );
    assert_eq!(app.page("/library").matches("class=\"tile\"").count(), 1);
}

#[test]
fn the_studio_works_without_javascript() {
    let app = app();
    app.signed_in_user("nojs@example.com");
    let page = app.page("/studio");
    assert!(page.contains("Nothing here yet"));
    assert!(page.contains("built-in renderer, no AI model"));
    let r = app.submit(
        "/studio",
        "/studio",
        &[
            ("prompt", "plain form"),
            ("model", "novart-builtin"),
            ("aspect_ratio", "3:2"),
            ("resolution", "1152"),
            ("n", "1"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let (w, h): (u32, u32) = app
        .db()
        .query_row("SELECT width, height FROM tasks", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((w, h), (1152, 768));
    let page = app.page("/studio");
    assert!(page.contains("plain form") && page.contains("Waiting"));
    // Errors come back on the page, with what was typed.
    let r = app.submit(
        "/studio",
        "/studio",
        &[("prompt", ""), ("model", "novart-builtin")],
    );
    assert_eq!(r.status(), Status::BadRequest);
    assert!(r
        .into_string()
        .unwrap()
        .contains("Describe the image you want"));
    // "Use these settings" fills the form from a task.
    let id: String = app
        .db()
        .query_row("SELECT public_id FROM tasks", (), |r| r.get(0))
        .unwrap();
    let page = app.page(&format!("/studio?from={id}"));
    assert!(page.contains(">plain form</textarea>"));
    assert!(page.contains("value=\"3:2\" checked"));
}

/// A page of tasks carries each task's own images (fetched for the whole
/// page at once): the list agrees with each task read alone, for tasks
/// with one and several images, among another account's tasks.
#[test]
fn a_page_of_tasks_carries_each_tasks_own_images() {
    let app = app();
    let t = novart::App::new(app.config.clone()).unwrap();
    let other = common::verified_user(&t, "other@example.com");
    app.signed_in_user("pages@example.com");
    let mut conn = t.db.get().unwrap();
    novart::domain::wallet::grant(&mut conn, other, 100, false, "test", "credits").unwrap();
    let mut mine = Vec::new();
    for i in 0..6u32 {
        let r = api(
            &app,
            "POST",
            "/api/v1/tasks",
            Some(
                json!({ "prompt": format!("harbour {i}"), "model": "novart-builtin", "size": "512x512", "n": 1 + i % 3 }),
            ),
        );
        assert_eq!(r.status(), Status::Created);
        mine.push(json_of(r)["id"].as_str().unwrap().to_string());
        let input = novart::domain::tasks::NewTaskInput {
            prompt: format!("not mine {i}"),
            model: "novart-builtin".into(),
            size: Some("512x512".into()),
            n: Some(2),
            ..Default::default()
        };
        novart::domain::tasks::submit(
            &mut conn,
            &t.engine.config,
            &t.engine.catalog,
            other,
            &input,
        )
        .unwrap();
    }
    while engine(&app).process_one("test").unwrap() {}
    let list = json_of(api(&app, "GET", "/api/v1/tasks?limit=100", None));
    let listed = list["data"].as_array().expect("a list");
    assert_eq!(listed.len(), 6);
    for item in listed {
        let id = item["id"].as_str().unwrap();
        assert!(mine.contains(&id.to_string()));
        let alone = json_of(api(&app, "GET", &format!("/api/v1/tasks/{id}"), None));
        let ids = |v: &Value| -> Vec<String> {
            v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            ids(item).len() as u64,
            item["n"].as_u64().unwrap(),
            "{item}"
        );
        assert_eq!(ids(item), ids(&alone));
    }
}

/// Cards are rendered once and then reused (`Templates::fragment`): what the
/// studio shows still follows every change to a task, and each session (its
/// own CSRF token in the cancel form), account and language gets its own.
#[test]
fn studio_cards_follow_each_change_and_each_viewer() {
    let app = app();
    let t = novart::App::new(app.config.clone()).unwrap();
    let a = common::verified_user(&t, "cards-a@example.com");
    let b = common::verified_user(&t, "cards-b@example.com");
    let mut conn = t.db.get().unwrap();
    let client = novart::model::Client {
        ip: Some("127.0.0.1"),
        user_agent: Some("test"),
    };
    let mut session = |u| {
        novart::domain::accounts::open_session(&mut conn, &app.config, u, &client)
            .unwrap()
            .token
    };
    let (a1, a2, b1) = (session(a), session(a), session(b));
    let page = |token: &str, lang: &str| {
        app.client
            .get("/studio")
            .cookie(rocket::http::Cookie::new(
                "nova_art_session",
                token.to_string(),
            ))
            .cookie(rocket::http::Cookie::new("lang", lang.to_string()))
            .dispatch()
            .into_string()
            .unwrap()
    };
    let input = novart::domain::tasks::NewTaskInput {
        prompt: "a paper boat on a pond".into(),
        model: "novart-builtin".into(),
        size: Some("512x512".into()),
        ..Default::default()
    };
    let task = novart::domain::tasks::submit(
        &mut t.db.get().unwrap(),
        &t.engine.config,
        &t.engine.catalog,
        a,
        &input,
    )
    .unwrap();
    let card = |html: &str| -> String {
        let start = html
            .find(&format!("id=\"task-{}\"", task.public_id))
            .expect("the card is on the page");
        html[start..start + html[start..].find("</article>").unwrap()].to_string()
    };

    let first = page(&a1, "en");
    let c = card(&first);
    assert!(c.contains("Waiting") && c.contains("/cancel"), "{c}");
    assert!(c.contains(&common::csrf_in(&first)), "this session's token");
    // The same card for another session of the same account: its own token.
    let second = page(&a2, "en");
    let (t1, t2) = (common::csrf_in(&first), common::csrf_in(&second));
    assert_ne!(t1, t2);
    assert!(card(&second).contains(&t2) && !card(&second).contains(&t1));
    // Shown again: the same HTML.
    assert_eq!(card(&page(&a1, "en")), c);
    // Another account never sees it.
    assert!(!page(&b1, "en").contains("a paper boat"));
    // In Chinese, the card's texts are Chinese.
    let zh = card(&page(&a1, "zh-CN"));
    assert!(zh.contains("等待中") && zh.contains("取消") && !zh.contains("Waiting"));

    // The task finishes: the next page shows its image, not the old card.
    assert!(t.engine.process_one("w").unwrap());
    let done = card(&page(&a1, "en"));
    assert!(done.contains("Done") && done.contains("preview"), "{done}");
    assert!(!done.contains("Waiting") && !done.contains("/cancel"));

    // The form is a fragment too: it follows the balance.
    let balance = |html: &str| {
        html.split("id=\"available\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap()
            .to_string()
    };
    let before: i64 = balance(&page(&a1, "en")).parse().unwrap();
    novart::domain::wallet::grant(&mut t.db.get().unwrap(), a, 7, false, "test", "credits")
        .unwrap();
    assert_eq!(balance(&page(&a1, "en")), (before + 7).to_string());
}

#[test]
fn downloads_are_named_after_the_prompt_and_seed_in_any_script() {
    let app = app();
    app.signed_in_user("names@example.com");
    let r = api(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(json!({"prompt": "月光下的灯塔, \"oil\" painting", "n": 2, "seed": 77})),
    );
    assert_eq!(r.status(), Status::Created);
    let a = json_of(r)["id"].as_str().unwrap().to_string();
    let state = app.client.rocket().state::<novart::App>().unwrap();
    while state.engine.process_one("w").unwrap() {}
    let v = json_of(api(&app, "GET", &format!("/api/v1/tasks/{a}"), None));
    let names: Vec<String> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let url = common::local_path(o["url"].as_str().unwrap());
            let path = url.split('?').next().unwrap().to_string();
            app.get(&format!("{path}/download"))
                .headers()
                .get_one("Content-Disposition")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names[0],
        "attachment; filename=\"oil-painting-77.png\"; filename*=UTF-8''%E6%9C%88%E5%85%89%E4%B8%8B%E7%9A%84%E7%81%AF%E5%A1%94-oil-painting-77.png"
    );
    assert!(
        names[1].starts_with("attachment; filename=\"oil-painting-77-2.png\""),
        "{}",
        names[1]
    );
}

#[test]
fn the_library_searches_prompts_and_counts_what_it_shows() {
    let app = app();
    app.signed_in_user("search@example.com");
    for (prompt, n) in [("a paper BOAT on a puddle", 2), ("a red fox in snow", 1)] {
        let r = api(
            &app,
            "POST",
            "/api/v1/tasks",
            Some(json!({ "prompt": prompt, "n": n })),
        );
        assert_eq!(r.status(), Status::Created);
    }
    let state = app.client.rocket().state::<novart::App>().unwrap();
    while state.engine.process_one("w").unwrap() {}
    let page = app.page("/library");
    assert!(page.contains("3 images"), "{page}");
    assert!(page.contains("the oldest is deleted in"), "{page}");
    let page = app.page("/library?q=boat");
    assert!(
        page.contains("a paper BOAT") && !page.contains("a red fox"),
        "{page}"
    );
    assert!(page.contains("2 images"), "{page}");
    assert!(
        page.contains("value=\"boat\""),
        "the search stays in its field"
    );
    let page = app.page("/library?q=zebra");
    assert!(page.contains("No images match this filter"), "{page}");
}
