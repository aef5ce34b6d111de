//! Abusive task and upload requests: refused on their cheap checks before
//! anything is decoded or stored, leaving no file and no row; the costly
//! work never holds a database connection, so other users go on signing in
//! and loading pages while the abuse runs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{http, live, PASSWORD};
use serde_json::{json, Value};

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A large-area PNG that is small on the wire (one colour compresses well).
fn wide_png(side: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(side, side, image::Luma([200]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Posts `body` with the key; the status, the JSON answer and Retry-After.
fn post(
    base: &str,
    key: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value, Option<String>) {
    let mut r = http()
        .post(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_json().unwrap_or(Value::Null),
        retry,
    )
}

fn post_json(base: &str, key: &str, path: &str, body: &str) -> (u16, Value, Option<String>) {
    post(base, key, path, "application/json", body.as_bytes())
}

fn post_bytes(base: &str, key: &str, path: &str, body: &[u8]) -> (u16, Option<String>) {
    let (status, _, retry) = post(base, key, path, "image/png", body);
    (status, retry)
}

/// Every file under the data directory's assets.
/// The stored images and previews, in the data directory or the bucket.
fn asset_files(config: &novart::Config) -> Vec<String> {
    common::s3::stored_keys(config, "assets")
}

fn count(db: &novart::domain::Connection, sql: &str) -> i64 {
    db.query_row(sql, (), |r| r.get(0)).unwrap()
}

#[test]
fn refused_task_requests_decode_nothing_and_leave_no_file_or_row() {
    let srv = live(|c| {
        c.queue.workers = 0;
        c.billing.signup_bonus = 0;
    });
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (_, broke) = common::user_with_key(&app, "broke@example.com", 0);
    let (rich_user, rich) = common::user_with_key(&app, "rich@example.com", 100);
    let tiny = format!("data:image/png;base64,{}", b64(&png(8, 8)));
    let db = novart::domain::Db::connect(&srv.config).unwrap();
    let tasks_before = std::cell::Cell::new(0);
    let nothing_written = |why: &str| {
        assert_eq!(asset_files(&srv.config), Vec::<String>::new(), "{why}");
        assert_eq!(count(&db, "SELECT count(*) FROM assets"), 0, "{why}");
        assert_eq!(
            count(&db, "SELECT count(*) FROM tasks"),
            tasks_before.get(),
            "{why}"
        );
    };

    // 2,000 references in one call, from an account with no credits: the
    // count is refused before a single image is read.
    let many = json!({ "prompt": "a lighthouse", "reference_images": vec![tiny.clone(); 2000] });
    let (s, v, _) = post_json(&srv.base, &broke, "/api/v1/tasks", &many.to_string());
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("At most 4 reference images"),
        "{v}"
    );
    nothing_written("too many references");

    // A valid count but no credits: 402, nothing stored.
    let refs = json!({ "prompt": "a lighthouse", "reference_images": vec![tiny.clone(); 3] });
    let (s, v, _) = post_json(&srv.base, &broke, "/api/v1/tasks", &refs.to_string());
    assert_eq!(s, 402, "{v}");
    nothing_written("no credits");

    // Each cheap refusal with attached images, from an account that could pay.
    for (body, status) in [
        (
            json!({ "prompt": "x", "model": "no-such-model", "reference_images": [tiny] }),
            400,
        ),
        (json!({ "prompt": "", "reference_images": [tiny] }), 400),
        (
            json!({ "prompt": "x", "n": 99, "reference_images": [tiny] }),
            400,
        ),
        (
            json!({ "prompt": "x", "seed": -1, "reference_images": [tiny] }),
            400,
        ),
        (
            json!({ "prompt": "x", "webhook_url": "ftp://example.com/", "reference_images": [tiny] }),
            400,
        ),
        (
            json!({ "prompt": "a fake passport", "reference_images": [tiny] }),
            422,
        ),
        (json!({ "prompt": "x", "mask": tiny }), 400),
        (
            json!({ "prompt": "x", "reference_images": [tiny, "not base64 !!"] }),
            400,
        ),
        (
            json!({ "prompt": "x", "reference_images": [tiny, b64(b"<svg></svg>")] }),
            400,
        ),
        (
            json!({ "prompt": "x", "reference_images": [tiny, "ref_doesnotexist"] }),
            400,
        ),
        // A private webhook target: refused after the name is resolved, still
        // before anything is stored.
        (
            json!({ "prompt": "x", "webhook_url": "http://127.0.0.1:9/", "reference_images": [tiny] }),
            400,
        ),
    ] {
        let (s, v, _) = post_json(&srv.base, &rich, "/api/v1/tasks", &body.to_string());
        assert_eq!(s, status, "{body}: {v}");
        nothing_written(&body.to_string());
    }
    // The key's daily cap used up (one task today, a cap of one): refused
    // before decoding, nothing stored.
    let (s, v, _) = post_json(&srv.base, &rich, "/api/v1/tasks", r#"{"prompt":"one"}"#);
    assert_eq!(s, 201, "{v}");
    tasks_before.set(1);
    db.execute(
        "UPDATE api_keys SET daily_cap = 1 WHERE user_id = ?1",
        [rich_user.0],
    )
    .unwrap();
    let (s, v, _) = post_json(&srv.base, &rich, "/api/v1/tasks", &refs.to_string());
    assert_eq!(s, 429, "{v}");
    nothing_written("daily cap");
    // A body larger than a valid request can be: 413 before it is parsed.
    let limit = novart::domain::uploads::max_task_body_bytes(&srv.config) as usize;
    let huge = format!(
        "{{\"prompt\":\"x\",\"negative_prompt\":\"{}\"}}",
        "a".repeat(limit)
    );
    let (s, v, _) = post_json(&srv.base, &rich, "/api/v1/tasks", &huge);
    assert_eq!(s, 413, "{v}");
    nothing_written("too large");
}

#[test]
fn the_json_body_limit_is_what_a_valid_request_can_carry() {
    let config = novart::Config::for_data_dir(Path::new("/tmp/unused"));
    let max = config.storage.max_upload_bytes;
    let limit = novart::domain::uploads::max_task_body_bytes(&config);
    // Four references and a mask, each at the upload limit in base64 with a
    // data: prefix, fit; a sixth image does not.
    let image = max.div_ceil(3) * 4 + "\"data:image/webp;base64,\",".len() as u64;
    assert!(5 * image + 20_000 <= limit, "{limit}");
    assert!(6 * image > limit, "{limit}");
}

/// A normal user's sign-in and studio page while abusive requests run:
/// thousands of attached images from an account without credits, and
/// large-area uploads decoding in parallel. Prints the latencies.
#[test]
fn abuse_in_parallel_does_not_stall_other_users() {
    let srv = live(|c| {
        c.queue.workers = 0;
        c.billing.signup_bonus = 0;
        c.storage.max_parallel_decodes = 2;
        c.storage.decode_wait_ms = 1000;
    });
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (_, abuser) = common::user_with_key(&app, "abuser@example.com", 0);
    common::verified_user(&app, "creator@example.com");
    let tiny = b64(&png(8, 8));
    let flood = json!({ "prompt": "x", "reference_images": vec![tiny; 1500] }).to_string();
    let wide = wide_png(5000);

    let (refused, uploads) = std::thread::scope(|s| {
        let floods: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| post_json(&srv.base, &abuser, "/api/v1/tasks", &flood).0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let wides: Vec<_> = (0..8)
            .map(|_| s.spawn(|| post_bytes(&srv.base, &abuser, "/api/v1/uploads", &wide)))
            .collect();

        // Meanwhile a creator signs in and opens the studio, five times.
        let mut latencies = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let mut r = http().get(&format!("{}/login", srv.base)).call().unwrap();
            let page = r.body_mut().read_to_string().unwrap();
            let csrf = common::csrf_in(&page);
            let pre = common::cookies_of(&r);
            let r = http()
                .post(&format!("{}/login", srv.base))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Cookie", &pre)
                .send(common::form_body(&[
                    ("csrf_token", &csrf),
                    ("email", "creator@example.com"),
                    ("password", PASSWORD),
                ]))
                .unwrap();
            assert_eq!(r.status().as_u16(), 303, "the creator signs in");
            let session = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("nova_art_session="))
                .and_then(|v| v.split(';').next())
                .unwrap()
                .to_string();
            let signed_in = started.elapsed();
            let r = http()
                .get(&format!("{}/studio", srv.base))
                .header("Cookie", &session)
                .call()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "the studio opens");
            latencies.push((signed_in, started.elapsed()));
            std::thread::sleep(Duration::from_millis(300));
        }
        for (i, (sign_in, studio)) in latencies.iter().enumerate() {
            println!(
                "under abuse, round {i}: sign-in {:.0} ms, sign-in + studio {:.0} ms",
                sign_in.as_secs_f64() * 1000.0,
                studio.as_secs_f64() * 1000.0
            );
        }
        let refused: Vec<u16> = floods.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let uploads: Vec<(u16, Option<String>)> =
            wides.into_iter().map(|t| t.join().unwrap()).collect();
        (refused, uploads)
    });
    assert!(refused.iter().all(|s| *s == 400), "{refused:?}");
    // Large uploads either went through or were told to come back.
    for (s, retry) in &uploads {
        assert!(*s == 201 || (*s == 503 && retry.is_some()), "{uploads:?}");
    }
    let stored = uploads.iter().filter(|(s, _)| *s == 201).count() as i64;
    assert!(stored >= 1, "{uploads:?}");
    // What is stored is exactly the accepted uploads: none of the refused
    // calls left a file or a row.
    let db = novart::domain::Db::connect(&srv.config).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM assets"), stored);
    assert_eq!(count(&db, "SELECT count(*) FROM tasks"), 0);
    assert_eq!(
        asset_files(&srv.config).len() as i64,
        2 * stored,
        "an image and its preview per accepted upload"
    );
}

#[test]
fn uploads_beyond_the_decode_limit_wait_then_get_503_with_retry_after() {
    let srv = live(|c| {
        c.queue.workers = 0;
        c.storage.max_parallel_decodes = 1;
        c.storage.decode_wait_ms = 0;
    });
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (_, key) = common::user_with_key(&app, "many@example.com", 0);
    let wide = wide_png(4000);
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..6)
            .map(|_| s.spawn(|| post_bytes(&srv.base, &key, "/api/v1/uploads", &wide)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        !busy.is_empty(),
        "one decode at a time, no waiting: {answers:?}"
    );
    assert!(
        busy.iter().all(|(_, r)| r.as_deref() == Some("2")),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 503),
        "{answers:?}"
    );
    let stored = answers.iter().filter(|(s, _)| *s == 201).count();
    assert!(stored >= 1);
    assert_eq!(asset_files(&srv.config).len(), 2 * stored);
}
