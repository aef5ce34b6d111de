//! Uploads under abuse, in one run against a baseline: `cargo bench --bench
//! uploads` (builds release). The real `novart` binary is started twice on a
//! fresh data directory, once with `storage.max_parallel_decodes = 16` (the
//! baseline: every upload decodes at once, as before the decode limit) and
//! once with the default of 2. Each time, at once:
//!
//! - 16 uploads of a 6324x6324 PNG (40 megapixels, small on the wire);
//! - 8 clients each sending 2 task requests with 1,500 base64 images from
//!   an account without credits (refused on their count);
//! - a creator signing in and opening the studio, again and again.
//!
//! Printed: the server's peak resident memory, how the uploads ended, the
//! time until all were answered, and the creator's sign-in + studio latency.
//! BENCH_UPLOAD_SIDE (6324) and BENCH_UPLOADS (16) change the upload burst.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{free_port, peak_rss, start, stop};
use novart::model::Role;

const PASSWORD: &str = "benchmark password";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn wide_png(side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let v = if (x / 97 + y / 89) % 2 == 0 { 40 } else { 210 };
        image::Rgb([v, (x % 7) as u8 * 30, 120])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn cookies(r: &ureq::http::Response<ureq::Body>) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Signs the creator in and opens the studio; the time it took.
fn creator_round(base: &str) -> Duration {
    let started = Instant::now();
    let mut r = agent().get(&format!("{base}/login")).call().unwrap();
    let pre = cookies(&r);
    let page = r.body_mut().read_to_string().unwrap();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let body = format!(
        "csrf_token={csrf}&email=creator%40example.com&password={}",
        PASSWORD.replace(' ', "+")
    );
    let r = agent()
        .post(&format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Cookie", &pre)
        .send(body)
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "the creator signs in");
    let session = cookies(&r);
    let r = agent()
        .get(&format!("{base}/studio"))
        .header("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the studio opens");
    started.elapsed()
}

struct Outcome {
    peak_mb: f64,
    created: usize,
    busy: usize,
    other: usize,
    uploads_secs: f64,
    creator_ms: Vec<f64>,
}

fn scenario(decodes: &str, png: &[u8], uploads: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("novart");
    let mut config = novart::Config::for_data_dir(&data);
    config.queue.workers = 0;
    config.billing.signup_bonus = 0;
    let key = {
        let app = novart::App::new(config.clone()).unwrap();
        let mut conn = app.db.get().unwrap();
        for (email, name) in [
            ("abuser@example.com", "Abuser"),
            ("creator@example.com", "Creator"),
        ] {
            novart::domain::accounts::create_by_admin(
                &mut conn,
                &config,
                email,
                PASSWORD,
                name,
                Role::User,
                true,
            )
            .unwrap();
        }
        let abuser = novart::domain::accounts::find(&conn, "abuser@example.com")
            .unwrap()
            .id;
        let mut spec = novart::domain::apikeys::KeySpec::defaults(&config, "abuse");
        (spec.rpm, spec.concurrency, spec.daily_cap) = (1_000_000, 1_000_000, 1_000_000);
        novart::domain::apikeys::create(
            &mut conn,
            &config,
            &app.engine.catalog,
            abuser,
            spec,
            novart::domain::apikeys::Authority::Admin,
        )
        .unwrap()
        .1
    };
    let port = free_port();
    let (child, _) = start(
        &data,
        port,
        &[
            ("NOVART_STORAGE__MAX_PARALLEL_DECODES", decodes),
            ("NOVART_STORAGE__DECODE_WAIT_MS", "60000"),
            ("NOVART_LIMITS__SIGN_IN_PER_IP_15MIN", "1000000"),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let tiny = {
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(out)
    };
    let flood =
        serde_json::json!({ "prompt": "x", "reference_images": vec![tiny; 1500] }).to_string();
    let auth = format!("Bearer {key}");
    let (outcome, peak_kb) = peak_rss(child.id(), || {
        std::thread::scope(|s| {
            let started = Instant::now();
            let ups: Vec<_> = (0..uploads)
                .map(|_| {
                    s.spawn(|| {
                        agent()
                            .post(&format!("{base}/api/v1/uploads"))
                            .header("Authorization", &auth)
                            .header("Content-Type", "image/png")
                            .send(png)
                            .unwrap()
                            .status()
                            .as_u16()
                    })
                })
                .collect();
            let floods: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..2 {
                            agent()
                                .post(&format!("{base}/api/v1/tasks"))
                                .header("Authorization", &auth)
                                .header("Content-Type", "application/json")
                                .send(flood.as_str())
                                .unwrap();
                        }
                    })
                })
                .collect();
            let mut creator_ms = Vec::new();
            while ups.iter().any(|u| !u.is_finished()) || creator_ms.len() < 3 {
                creator_ms.push(creator_round(&base).as_secs_f64() * 1000.0);
            }
            let statuses: Vec<u16> = ups.into_iter().map(|u| u.join().unwrap()).collect();
            let uploads_secs = started.elapsed().as_secs_f64();
            for f in floods {
                f.join().unwrap();
            }
            Outcome {
                peak_mb: 0.0,
                created: statuses.iter().filter(|s| **s == 201).count(),
                busy: statuses.iter().filter(|s| **s == 503).count(),
                other: statuses.iter().filter(|s| **s != 201 && **s != 503).count(),
                uploads_secs,
                creator_ms,
            }
        })
    });
    stop(child);
    Outcome {
        peak_mb: peak_kb as f64 / 1024.0,
        ..outcome
    }
}

fn main() {
    let side: u32 = common::env_or("BENCH_UPLOAD_SIDE", 6324);
    let uploads: usize = common::env_or("BENCH_UPLOADS", 16);
    let png = wide_png(side);
    println!(
        "{uploads} parallel uploads of a {side}x{side} PNG ({:.0} KB) with 16 flood requests of 1,500 images, while a creator signs in and opens the studio",
        png.len() as f64 / 1024.0
    );
    for (name, decodes) in [
        ("baseline: 16 decodes at once", "16"),
        ("default: 2 decodes at once", "2"),
    ] {
        let mut o = scenario(decodes, &png, uploads);
        o.creator_ms.sort_by(|a, b| a.total_cmp(b));
        let p50 = o.creator_ms[o.creator_ms.len() / 2];
        let max = o.creator_ms.last().copied().unwrap_or(0.0);
        println!(
            "{name:<30} peak RSS {:>7.0} MB  uploads {} stored, {} busy (503), {} other, all answered in {:.1} s  creator sign-in + studio p50 {:.0} ms, max {:.0} ms ({} rounds)",
            o.peak_mb, o.created, o.busy, o.other, o.uploads_secs, p50, max, o.creator_ms.len()
        );
    }
}
