//! The OpenAI-compatible images API, driven by the `async-openai` crate (a
//! client nobody here wrote) and by raw HTTP where the SDK hides details.

mod common;

use async_openai::config::OpenAIConfig;
use async_openai::types::images::{
    CreateImageEditRequestArgs, CreateImageRequestArgs, Image, ImageInput, ImageModel,
    ImageResponseFormat, ImageSize,
};
use async_openai::types::InputSource;
use async_openai::Client;
use base64::Engine;
use common::fake_http::{serve, Resp};
use common::{http, live, PASSWORD};
use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::domain::apikeys::{self, Authority, KeySpec};
use novart::model::{Role, UserId};
use serde_json::{json, Value};

fn user_and_key(config: &novart::Config, email: &str) -> (novart::App, UserId, String) {
    let app = novart::App::new(config.clone()).unwrap();
    let mut conn = app.db.get().unwrap();
    let user = novart::domain::accounts::create_by_admin(
        &mut conn,
        config,
        email,
        PASSWORD,
        "",
        Role::User,
        true,
    )
    .unwrap()
    .id;
    novart::domain::wallet::grant(&mut conn, user, 100, false, "test", "credits").unwrap();
    let (_, key) = apikeys::create(
        &mut conn,
        config,
        &app.engine.catalog,
        user,
        KeySpec::defaults(config, "sdk"),
        Authority::Admin,
    )
    .unwrap();
    drop(conn);
    (app, user, key)
}

fn client(base: &str, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_key(key)
            .with_api_base(format!("{base}/v1")),
    )
}

fn png(w: u32, h: u32, rgba: [u8; 4]) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(w, h, image::Rgba(rgba));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn tasks_count(app: &novart::App) -> i64 {
    app.db
        .get()
        .unwrap()
        .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
        .unwrap()
}

#[test]
fn async_openai_generates_images() {
    let server = live(|c| c.queue.workers = 2);
    let (app, user, key) = user_and_key(&server.config, "sdk@example.com");
    let oa = client(&server.base, &key);
    rocket::execute(async {
        // b64_json, with the SDK's default model name mapped to ours.
        let req = CreateImageRequestArgs::default()
            .prompt("a lighthouse at dusk")
            .n(2)
            .size(ImageSize::S1024x1024)
            .response_format(ImageResponseFormat::B64Json)
            .build()
            .unwrap();
        let resp = oa
            .images()
            .generate(req)
            .await
            .expect("generation works through the SDK");
        assert_eq!(resp.data.len(), 2);
        assert!(resp.created > 0);
        for img in &resp.data {
            let Image::B64Json { b64_json, .. } = img.as_ref() else {
                panic!("asked for b64_json: {img:?}")
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64_json.as_str())
                .unwrap();
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (1024, 1024));
        }

        // url: a signed link that works without credentials.
        let req = CreateImageRequestArgs::default()
            .prompt("a red fox")
            .model(ImageModel::Other("novart-builtin".into()))
            .response_format(ImageResponseFormat::Url)
            .build()
            .unwrap();
        let resp = oa.images().generate(req).await.unwrap();
        let Image::Url { url, .. } = resp.data[0].as_ref() else {
            panic!("asked for url")
        };
        let mut r = http().get(url).call().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        let bytes = r.body_mut().read_to_vec().unwrap();
        assert!(image::load_from_memory(&bytes).is_ok());

        // Models.
        let models = oa.models().list().await.unwrap();
        assert!(models.data.iter().any(|m| m.id == "novart-builtin"));

        // Errors come back as the SDK's ApiError with our envelope.
        let bad = CreateImageRequestArgs::default()
            .prompt("")
            .build()
            .unwrap();
        match oa.images().generate(bad).await {
            Err(async_openai::error::OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 400);
                assert_eq!(e.api_error.param.as_deref(), Some("prompt"));
                assert_eq!(e.api_error.r#type.as_deref(), Some("invalid_request_error"));
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        let wrong = client(
            &server.base,
            "nva_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        );
        match wrong.models().list().await {
            Err(async_openai::error::OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 401);
                assert_eq!(e.api_error.r#type.as_deref(), Some("authentication_error"));
            }
            other => panic!("expected 401, got {other:?}"),
        }

        // Edit with a mask: the opaque half of the mask keeps the original.
        let original = png(64, 64, [250, 10, 10, 255]);
        let mut mask_img = image::RgbaImage::from_pixel(64, 64, image::Rgba([0, 0, 0, 255]));
        for y in 0..64 {
            for x in 32..64 {
                mask_img.put_pixel(x, y, image::Rgba([0, 0, 0, 0]));
            }
        }
        let mut mask = Vec::new();
        mask_img
            .write_to(
                &mut std::io::Cursor::new(&mut mask),
                image::ImageFormat::Png,
            )
            .unwrap();
        let req = CreateImageEditRequestArgs::default()
            .image(ImageInput {
                source: InputSource::VecU8 {
                    filename: "photo.png".into(),
                    vec: original,
                },
            })
            .mask(ImageInput {
                source: InputSource::VecU8 {
                    filename: "mask.png".into(),
                    vec: mask,
                },
            })
            .prompt("paint the right half blue")
            .size(ImageSize::S1024x1024)
            .response_format(ImageResponseFormat::B64Json)
            .build()
            .unwrap();
        let resp = oa
            .images()
            .edit(req)
            .await
            .expect("edits work through the SDK");
        let Image::B64Json { b64_json, .. } = resp.data[0].as_ref() else {
            panic!()
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64_json.as_str())
            .unwrap();
        let out = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let left = out.get_pixel(100, 512);
        assert!(
            left[0] > 200 && left[1] < 60 && left[2] < 60,
            "kept: {left:?}"
        );
        assert_ne!(
            out.get_pixel(900, 512),
            left,
            "the transparent half was painted"
        );
    });
    let conn = app.db.get().unwrap();
    let masks: i64 = conn
        .query_row(
            "SELECT count(*) FROM task_references WHERE role = 'mask'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(masks, 1);
    let charged: i64 = conn
        .query_row("SELECT -sum(delta_balance + delta_bonus) FROM ledger WHERE user_id = ?1 AND kind IN ('task_charge', 'task_refund')", [user], |r| r.get(0))
        .unwrap();
    assert_eq!(
        charged, 4,
        "2 + 1 + 1 images, the failed request charged nothing"
    );
}

#[test]
fn failures_and_timeouts_say_do_not_retry_and_never_charge_twice() {
    let upstream = serve(|_| {
        Resp::json(
            400,
            json!({"error": {"message": "Unsupported thing", "type": "invalid_request_error"}}),
        )
    });
    let server = live(|c| {
        c.queue.workers = 1;
        c.api.sync_wait_secs = 2;
        c.providers = vec![ProviderConfig {
            timeout_secs: 2,
            ..ProviderConfig::new(
                "up",
                ProviderKind::Openai,
                &format!("{}/v1", upstream.url()),
            )
        }];
        c.models = vec![ModelConfig {
            id: "broken".into(),
            name: "Broken".into(),
            providers: vec!["up".into()],
            upstream_model: String::new(),
            price: 1,
            sizes: vec!["512x512".into()],
            max_n: 1,
            reference_images: false,
            description: String::new(),
            charge_extra_images: false,
        }];
    });
    let (app, _user, key) = user_and_key(&server.config, "fail@example.com");
    let agent = http();
    let post = |body: Value| {
        agent
            .post(&format!("{}/v1/images/generations", server.base))
            .header("Authorization", &format!("Bearer {key}"))
            .send_json(body)
            .unwrap()
    };
    let mut r = post(json!({"prompt": "x", "model": "broken"}));
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["error"]["code"], "generation_failed");
    assert!(v["error"]["message"].as_str().unwrap().contains("refunded"));
    assert_eq!(tasks_count(&app), 1);

    // The SDK gets an error; the one task was refunded.
    let oa = client(&server.base, &key);
    rocket::execute(async {
        let req = CreateImageRequestArgs::default()
            .prompt("y")
            .model(ImageModel::Other("broken".into()))
            .build()
            .unwrap();
        assert!(oa.images().generate(req).await.is_err());
    });
    let conn = app.db.get().unwrap();
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
    let net: i64 = conn
        .query_row("SELECT sum(delta_balance + delta_bonus) FROM ledger WHERE kind IN ('task_charge', 'task_refund')", (), |r| r.get(0))
        .unwrap();
    assert_eq!(net, 0, "every failed task was refunded");
    drop(conn);

    // Before acceptance: no x-should-retry, the normal envelope.
    let r = post(json!({"prompt": "x", "model": "nope"}));
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("x-should-retry").is_none());
}

#[test]
fn a_timed_out_call_retried_picks_up_the_same_task() {
    let server = live(|c| {
        c.queue.workers = 0; // nothing runs: every call times out
        c.api.sync_wait_secs = 1;
    });
    let (app, _user, key) = user_and_key(&server.config, "slow@example.com");
    let agent = http();
    let body = json!({"prompt": "patience", "size": "1024x1024"});
    let mut first = None;
    for _ in 0..3 {
        let mut r = agent
            .post(&format!("{}/v1/images/generations", server.base))
            .header("Authorization", &format!("Bearer {key}"))
            .send_json(&body)
            .unwrap();
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()["x-should-retry"], "false");
        let v: Value = r.body_mut().read_json().unwrap();
        let msg = v["error"]["message"].as_str().unwrap().to_string();
        let id = msg
            .split("/api/v1/tasks/")
            .nth(1)
            .unwrap()
            .trim_end_matches('.')
            .to_string();
        assert_eq!(
            *first.get_or_insert(id.clone()),
            id,
            "the retry waits for the same task"
        );
    }
    assert_eq!(tasks_count(&app), 1, "retries never made a second task");
    // The SDK (which retries 5xx on its own) does not multiply tasks either.
    let oa = client(&server.base, &key);
    rocket::execute(async {
        let req = CreateImageRequestArgs::default()
            .prompt("patience")
            .size(ImageSize::S1024x1024)
            .build()
            .unwrap();
        assert!(oa.images().generate(req).await.is_err());
    });
    assert_eq!(
        tasks_count(&app),
        2,
        "one new task for the SDK's differently-shaped body, whatever its retries"
    );
}

#[test]
fn edits_check_their_input() {
    let server = live(|c| c.queue.workers = 0);
    let (_app, _user, key) = user_and_key(&server.config, "edit@example.com");
    let agent = http();
    let send = |ct: &str, body: Vec<u8>| {
        agent
            .post(&format!("{}/v1/images/edits", server.base))
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", ct)
            .send(&body[..])
            .unwrap()
    };
    // Not multipart.
    let mut r = send("application/json", b"{}".to_vec());
    assert_eq!(r.status(), 400);
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["error"]["param"], "image");
    // No image.
    let b = "XyZ";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--{b}--\r\n"
    );
    let r = send(
        &format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    );
    assert_eq!(r.status(), 400);
    // An image that is not one.
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n<html>not an image</html>\r\n--{b}--\r\n"
    );
    let r = send(
        &format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    );
    assert_eq!(r.status(), 400);
    // Too large.
    let mut big = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
    )
    .into_bytes();
    big.extend(vec![b'x'; 11 * 1024 * 1024]);
    big.extend(format!("\r\n--{b}--\r\n").into_bytes());
    let r = send(&format!("multipart/form-data; boundary={b}"), big);
    assert_eq!(r.status(), 413);
}
