//! storage.encrypt_assets: stored images, previews, uploads and exports are
//! not readable files on disk, are served decrypted, and a lost or changed
//! key stops start-up with a message naming the key.

mod common;

use std::io::Read;

use common::TestApp;
use novart::config::Config;
use novart::domain::tasks::NewTaskInput;
use rocket::http::{ContentType, Status};

const KEY: &str = "q2XJm3vD3bC8e1p0Zr8l3mQ9t1Yw6Vb2Nn4Hc5Kx7s0=";

/// The stored files (images, previews, uploads) as they lie on disk, in
/// the data directory or the S3 server's.
fn stored_files(config: &novart::Config) -> Vec<std::path::PathBuf> {
    common::s3::stored_keys(config, "assets")
        .iter()
        .map(|k| common::s3::stored_path(config, k))
        .collect()
}

fn make_image(t: &TestApp) -> String {
    let app = t.client.rocket().state::<novart::App>().unwrap();
    let me = novart::domain::accounts::find(&app.db.get().unwrap(), "enc@example.com")
        .unwrap()
        .id;
    let input = NewTaskInput {
        prompt: "a locked chest".into(),
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
    t.db()
        .query_row(
            "SELECT public_id FROM assets WHERE kind = 'result'",
            (),
            |r| r.get(0),
        )
        .unwrap()
}

fn upload(t: &TestApp) {
    let csrf = t.csrf("/studio");
    let r = t
        .client
        .post("/api/v1/uploads")
        .header(ContentType::PNG)
        .header(rocket::http::Header::new("x-csrf-token", csrf))
        .body(common::fake_http::png(64, 48))
        .dispatch();
    assert_eq!(r.status(), Status::Created, "{:?}", r.into_string());
}

#[test]
fn with_encryption_files_on_disk_are_not_images_and_are_served_decrypted() {
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        c.storage.encrypt_assets = true;
        c.storage.encryption_key = KEY.into();
    });
    t.signed_in_user("enc@example.com");
    let id = make_image(&t);
    upload(&t);
    let files = stored_files(&t.config);
    assert_eq!(
        files.len(),
        4,
        "image, preview, upload, its preview: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            image::guess_format(&bytes).is_err(),
            "{} is a readable image",
            f.display()
        );
        assert!(image::load_from_memory(&bytes).is_err());
        assert!(bytes.starts_with(b"NVAE1"));
    }
    let r = t.get(&format!("/media/{id}"));
    assert_eq!(r.status(), Status::Ok);
    let png = r.into_bytes().unwrap();
    assert_eq!(image::guess_format(&png).unwrap(), image::ImageFormat::Png);
    image::load_from_memory(&png).expect("the served image decodes");
    let preview = t.get(&format!("/media/{id}/preview")).into_bytes().unwrap();
    assert_eq!(
        image::guess_format(&preview).unwrap(),
        image::ImageFormat::Jpeg
    );

    // The export carries the images decrypted.
    let csrf = t.csrf("/settings");
    let zip_bytes = t
        .post_raw("/settings/export", &[("csrf_token", &csrf)])
        .into_bytes()
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let name = format!("images/{id}.png");
    let mut inside = Vec::new();
    zip.by_name(&name)
        .unwrap()
        .read_to_end(&mut inside)
        .unwrap();
    assert_eq!(inside, png);
}

#[test]
fn without_encryption_files_are_plain_images() {
    let t = TestApp::with(|c| c.queue.workers = 0);
    t.signed_in_user("enc@example.com");
    make_image(&t);
    for f in stored_files(&t.config) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            image::guess_format(&bytes).is_ok(),
            "{} should be an image",
            f.display()
        );
    }
}

#[test]
fn a_lost_or_changed_key_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let with_key = |key: &str, on: bool| {
        let mut c = Config::for_data_dir(dir.path());
        c.storage.encrypt_assets = on;
        c.storage.encryption_key = key.into();
        c
    };
    novart::App::new(with_key(KEY, true)).expect("first start with a key");
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let e = novart::App::new(with_key(other, true))
        .err()
        .expect("another key is refused");
    assert!(e.to_string().contains("storage.encryption_key"), "{e}");
    let e = novart::App::new(with_key("", false))
        .err()
        .expect("no key is refused");
    assert!(e.to_string().contains("storage.encryption_key"), "{e}");
    novart::App::new(with_key(KEY, false))
        .expect("the same key may read old files with encryption off");
    novart::App::new(with_key(KEY, true)).expect("and start again");

    // Config mistakes name the key before anything starts.
    for (on, key, what) in [(true, "", "must be set"), (false, "c2hvcnQ=", "32 bytes")] {
        let c = with_key(key, on);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("storage.encryption_key") && e.contains(what),
            "{e}"
        );
    }
}

#[test]
fn large_files_are_sealed_in_chunks_and_refuse_truncation() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::for_data_dir(dir.path());
    c.storage.encrypt_assets = true;
    c.storage.encryption_key = KEY.into();
    let plain: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("big.tmp");
    // Stored under a key of the data directory (the local backend).
    let key = "exports/big.zip";
    let dst = dir.path().join(key);
    std::fs::write(&src, &plain).unwrap();
    novart::domain::vault::store_large(&c, &src, key).unwrap();
    assert!(!src.exists());
    let sealed = std::fs::read(&dst).unwrap();
    assert!(sealed.starts_with(b"NVAE2"));
    assert!(
        !sealed.windows(64).any(|w| w == &plain[1000..1064]),
        "no plain bytes"
    );
    let mut back = Vec::new();
    novart::domain::vault::open_large(&c, key)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, plain);

    // Cut after the first chunk: an error, not a shorter file.
    std::fs::write(&dst, &sealed[..sealed.len() / 2]).unwrap();
    let mut r = novart::domain::vault::open_large(&c, key).unwrap();
    assert!(r.read_to_end(&mut Vec::new()).is_err());
    // Another key cannot read it.
    std::fs::write(&dst, &sealed).unwrap();
    let mut other = c.clone();
    other.storage.encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into();
    let mut r = novart::domain::vault::open_large(&other, key).unwrap();
    assert!(r.read_to_end(&mut Vec::new()).is_err());
    // Off: stored as it is.
    let off = Config::for_data_dir(dir.path());
    std::fs::write(&src, &plain).unwrap();
    novart::domain::vault::store_large(&off, &src, key).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), plain);
}
