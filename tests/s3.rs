//! Images in S3-compatible storage, against a real server process (s3s-fs,
//! which checks every request's signature): start-up checks, faults while
//! storing, missing objects, presigned downloads, and moving an instance
//! between the data directory and a bucket.

mod common;

use common::s3::{self, Server};
use common::TestApp;
use novart::config::Backend;
use novart::domain::tasks::{self, NewTaskInput};
use rocket::http::{Header, Status};
use sha2::{Digest, Sha256};

fn server(test: &str) -> Option<&'static Server> {
    s3::required(test)
}

/// An app on the bucket with no background workers, a signed-in creator and
/// one finished task of `n` images; returns the app and the image ids.
fn app_with_images(server: &Server, n: u32) -> (TestApp, Vec<String>) {
    let t = bucket_app(server);
    let ids = make_images(&t, n);
    (t, ids)
}

/// `config` with its bucket at an address where nothing listens (the
/// storage server down).
fn unreachable_store(config: &novart::Config) -> novart::Config {
    let mut down = config.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    down.storage.s3.endpoint = format!("http://127.0.0.1:{port}");
    down
}

/// An app whose images live in a bucket of its own, with its creator
/// (s3@example.com) signed in; no workers (the tests run the queue).
fn bucket_app(server: &Server) -> TestApp {
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        s3::use_s3(c, server);
    });
    t.signed_in_user("s3@example.com");
    t
}

/// The id of the creator `bucket_app` signed in.
fn creator(conn: &novart::domain::Connection) -> novart::model::UserId {
    novart::domain::accounts::find(conn, "s3@example.com")
        .unwrap()
        .id
}

/// Queues a task for `user`.
fn submit(
    app: &novart::App,
    conn: &mut novart::domain::Connection,
    user: novart::model::UserId,
    input: &NewTaskInput,
) -> novart::model::Task {
    tasks::submit(conn, &app.engine.config, &app.engine.catalog, user, input).unwrap()
}

/// `novart storage migrate --to <to>` on `on_s3`'s data directory, its
/// bucket given by environment as an operator would.
fn migrate(on_s3: &novart::Config, to: &str) -> std::process::Command {
    let data = &on_s3.storage.data_dir;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_novart"));
    c.args(["storage", "migrate", "--to", to])
        .current_dir(data.parent().unwrap())
        .env_remove("NOVART_CONFIG")
        .env("NOVART_STORAGE__DATA_DIR", data)
        .envs(s3::bucket_env(on_s3));
    c
}

fn app_of(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn make_images(t: &TestApp, n: u32) -> Vec<String> {
    let app = app_of(t);
    let mut conn = app.db.get().unwrap();
    let user = creator(&conn);
    let input = NewTaskInput {
        prompt: "a lighthouse".into(),
        model: "novart-builtin".into(),
        n: Some(n),
        ..Default::default()
    };
    let task = submit(app, &mut conn, user, &input);
    assert!(app.engine.process_one("w").unwrap());
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert_eq!(v.task.status.as_str(), "succeeded", "{:?}", v.task.error);
    v.outputs.iter().map(|o| o.id.clone()).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn images_live_in_the_bucket_and_are_served_with_ranges() {
    let Some(server) = server("images_live_in_the_bucket_and_are_served_with_ranges") else {
        return;
    };
    let (t, ids) = app_with_images(server, 2);
    // Nothing on the local disk; every image and preview in the bucket.
    assert!(!t.config.assets_dir().exists());
    let keys = s3::stored_keys(&t.config, "assets/");
    assert_eq!(keys.len(), 4, "{keys:?}");
    let r = t.get(&format!("/media/{}", ids[0]));
    assert_eq!(r.status(), Status::Ok);
    let etag = r.headers().get_one("ETag").unwrap().to_string();
    let full = r.into_bytes().unwrap();
    assert!(
        !t.config.assets_dir().exists(),
        "{:?}",
        s3::stored_keys(
            &{
                let mut c = t.config.clone();
                c.storage.backend = Backend::Local;
                c
            },
            "assets/"
        )
    );
    let key = keys
        .iter()
        .find(|k| k.contains(&ids[0]) && k.ends_with(".png"))
        .unwrap();
    let in_bucket = std::fs::read(
        server
            .root
            .join(&t.config.storage.s3.bucket)
            .join("novart")
            .join(key),
    )
    .unwrap();
    assert_eq!(sha(&in_bucket), sha(&full), "served bytes are the object's");
    let r = t
        .client
        .get(format!("/media/{}", ids[0]))
        .header(Header::new("Range", "bytes=10-19"))
        .dispatch();
    assert_eq!(r.status(), Status::PartialContent);
    assert_eq!(r.into_bytes().unwrap(), full[10..20].to_vec());
    let r = t
        .client
        .get(format!("/media/{}", ids[0]))
        .header(Header::new("If-None-Match", etag))
        .dispatch();
    assert_eq!(r.status(), Status::NotModified);
    // Deleting the image deletes its objects.
    let app = app_of(&t);
    let conn = app.db.get().unwrap();
    let user = creator(&conn);
    novart::domain::assets::delete_own(&conn, &app.config, user, &ids[1]).unwrap();
    assert_eq!(s3::stored_keys(&t.config, "assets/").len(), 2);
}

#[test]
fn a_missing_object_is_a_404_and_doctor_names_it() {
    let Some(server) = server("a_missing_object_is_a_404_and_doctor_names_it") else {
        return;
    };
    let (t, ids) = app_with_images(server, 1);
    let base = server.root.join(&t.config.storage.s3.bucket).join("novart");
    for k in s3::stored_keys(&t.config, "assets/") {
        std::fs::remove_file(base.join(k)).unwrap();
    }
    assert_eq!(
        t.get(&format!("/media/{}", ids[0])).status(),
        Status::NotFound
    );
    assert_eq!(
        t.get(&format!("/media/{}/preview", ids[0])).status(),
        Status::NotFound
    );
    let app = app_of(&t);
    let checks = novart::domain::doctor::run(&app.db.get().unwrap(), &app.config).unwrap();
    let files = checks.iter().find(|c| c.name == "stored files").unwrap();
    assert!(!files.ok);
    assert!(files.details[0].contains(&ids[0]), "{:?}", files.details);
}

#[test]
fn storage_down_while_storing_retries_later_and_charges_once() {
    let Some(server) = server("storage_down_while_storing_retries_later_and_charges_once") else {
        return;
    };
    let t = bucket_app(server);
    let app = app_of(&t);
    let mut conn = app.db.get().unwrap();
    let user = creator(&conn);
    let before = novart::domain::wallet::get(&conn, user).unwrap().total();
    let input = NewTaskInput {
        prompt: "a harbour".into(),
        model: "novart-builtin".into(),
        ..Default::default()
    };
    let task = submit(app, &mut conn, user, &input);
    // A worker whose storage does not answer (nothing listens there).
    let down = unreachable_store(&app.config);
    let broken = novart::jobs::queue::Engine::new(app.db.clone(), &down);
    assert!(broken.process_one("w").unwrap());
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert_eq!(
        v.task.status.as_str(),
        "queued",
        "retried later, not failed"
    );
    assert!(v.outputs.is_empty());
    assert!(s3::stored_keys(&t.config, "assets/").is_empty());
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM assets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "no row points at an object that was not written");
    // Storage back: the retry succeeds, charged once.
    conn.execute("UPDATE tasks SET not_before = 0", ()).unwrap();
    assert!(app.engine.process_one("w").unwrap());
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert_eq!(v.task.status.as_str(), "succeeded");
    assert_eq!(s3::stored_keys(&t.config, "assets/").len(), 2);
    let after = novart::domain::wallet::get(&conn, user).unwrap().total();
    assert_eq!(before - after, v.task.cost, "charged once");
    assert!(novart::domain::wallet::mismatches(&conn)
        .unwrap()
        .is_empty());
}

/// A worker that cannot read a task's reference image because the store
/// does not answer puts the task back in the queue (temporary); the next
/// attempt with the store back succeeds.
#[test]
fn storage_down_while_reading_references_retries_later() {
    let Some(server) = server("storage_down_while_reading_references_retries_later") else {
        return;
    };
    let t = bucket_app(server);
    let app = app_of(&t);
    let mut conn = app.db.get().unwrap();
    let user = creator(&conn);
    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([9, 80, 160]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let reference =
        novart::domain::uploads::ingest_reference(&mut conn, &app.config, user, &png).unwrap();
    let input = NewTaskInput {
        prompt: "the same harbour at night".into(),
        model: "novart-builtin".into(),
        references: vec![novart::domain::tasks::ImageInput::Uploaded(
            reference.public_id.clone(),
        )],
        ..Default::default()
    };
    let task = submit(app, &mut conn, user, &input);
    let down = unreachable_store(&app.config);
    let broken = novart::jobs::queue::Engine::new(app.db.clone(), &down);
    assert!(broken.process_one("w").unwrap());
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert_eq!(v.task.status.as_str(), "queued", "{:?}", v.task.error);
    conn.execute("UPDATE tasks SET not_before = 0", ()).unwrap();
    assert!(app.engine.process_one("w").unwrap());
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert_eq!(v.task.status.as_str(), "succeeded", "{:?}", v.task.error);
}

/// An image deleted while the bucket does not answer loses its row; the
/// object it leaves is reported by doctor once past the grace period and
/// removed by the next sweep: rows and objects never disagree silently.
#[test]
fn a_delete_the_bucket_refused_is_reported_then_swept() {
    let Some(server) = server("a_delete_the_bucket_refused_is_reported_then_swept") else {
        return;
    };
    let t = bucket_app(server);
    let ids = make_images(&t, 1);
    let app = app_of(&t);
    let conn = app.db.get().unwrap();
    let user = creator(&conn);
    let down = unreachable_store(&app.config);
    novart::domain::assets::delete_own(&conn, &down, user, &ids[0]).unwrap();
    assert_eq!(
        t.get(&format!("/media/{}", ids[0])).status(),
        Status::NotFound
    );
    let left = s3::stored_keys(&t.config, "assets/");
    assert_eq!(
        left.len(),
        2,
        "image and preview stay in the bucket: {left:?}"
    );
    // Past the grace period (a worker may be between writing and recording).
    for k in &left {
        std::fs::File::options()
            .write(true)
            .open(s3::stored_path(&t.config, k))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
    }
    let checks = novart::domain::doctor::run(&conn, &app.config).unwrap();
    let orphans = checks.iter().find(|c| c.name == "orphan files").unwrap();
    assert!(!orphans.ok, "doctor reports the leftovers");
    assert_eq!(orphans.details.len(), 2, "{:?}", orphans.details);
    let report =
        novart::domain::retention::sweep(&app.db, &app.config, novart::domain::now()).unwrap();
    assert_eq!(report.orphan_files_deleted, 2);
    assert!(s3::stored_keys(&t.config, "assets/").is_empty());
    let checks = novart::domain::doctor::run(&conn, &app.config).unwrap();
    assert!(checks.iter().find(|c| c.name == "orphan files").unwrap().ok);
}

#[test]
fn presigned_downloads_redirect_to_a_signed_bucket_address() {
    let Some(server) = server("presigned_downloads_redirect_to_a_signed_bucket_address") else {
        return;
    };
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        s3::use_s3(c, server);
        c.storage.s3.presign_downloads = true;
    });
    t.signed_in_user("s3@example.com");
    let ids = make_images(&t, 1);
    let r = t.get(&format!("/media/{}", ids[0]));
    assert_eq!(r.status(), Status::Found);
    let location = r.headers().get_one("Location").unwrap().to_string();
    assert!(location.starts_with(&server.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="));
    assert!(!location.contains(s3::SECRET_KEY));
    let got = common::http()
        .get(&location)
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    assert!(image::load_from_memory(&got).is_ok());
    // Someone else still gets no address.
    let other = t.other_browser();
    let r = other.get(format!("/media/{}", ids[0])).dispatch();
    assert_ne!(r.status(), Status::Found);
}

#[test]
fn a_wrong_secret_stops_start_up_naming_the_key() {
    let Some(server) = server("a_wrong_secret_stops_start_up_naming_the_key") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = novart::Config::for_data_dir(dir.path());
    s3::use_s3(&mut config, server);
    config.storage.s3.secret_access_key = "not-the-secret-at-all".into();
    let err = novart::App::new(config).err().expect("refused").to_string();
    assert!(err.contains("storage.s3.secret_access_key"), "{err}");
    assert!(!err.contains("not-the-secret-at-all"), "{err}");
    // Presigning with encryption at rest is refused by the config check.
    let mut config = novart::Config::for_data_dir(dir.path());
    s3::use_s3(&mut config, server);
    config.storage.s3.presign_downloads = true;
    config.storage.encrypt_assets = true;
    config.storage.encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into();
    let err = config.validate().unwrap_err();
    assert_eq!(err.key, "storage.s3.presign_downloads");
}

#[test]
fn migrate_to_s3_and_back_keeps_every_image() {
    let Some(server) = server("migrate_to_s3_and_back_keeps_every_image") else {
        return;
    };
    // A local instance with images, through the real binary.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut local = novart::Config::for_data_dir(&data);
    local.queue.workers = 0;
    let sums: Vec<(String, String)> = {
        let app = novart::App::new(local.clone()).unwrap();
        let user = common::verified_user(&app, "s3@example.com");
        let mut conn = app.db.get().unwrap();
        for prompt in ["one", "two", "three"] {
            let input = NewTaskInput {
                prompt: prompt.into(),
                model: "novart-builtin".into(),
                ..Default::default()
            };
            tasks::submit(
                &mut conn,
                &app.engine.config,
                &app.engine.catalog,
                user,
                &input,
            )
            .unwrap();
            assert!(app.engine.process_one("w").unwrap());
        }
        s3::stored_keys(&local, "assets/")
            .into_iter()
            .map(|k| {
                let b = std::fs::read(data.join(&k)).unwrap();
                (k, sha(&b))
            })
            .collect()
    };
    assert_eq!(sums.len(), 6);
    let mut on_s3 = local.clone();
    s3::use_s3(&mut on_s3, server);
    // Pointed at the bucket before the files are moved: refused.
    let err = novart::App::new(on_s3.clone()).err().unwrap().to_string();
    assert!(
        err.contains("storage.backend") && err.contains("novart storage migrate --to s3"),
        "{err}"
    );

    // An earlier run was interrupted: two files are there already, one of
    // them cut short.
    let bucket = server.root.join(&on_s3.storage.s3.bucket).join("novart");
    for (i, (k, _)) in sums.iter().take(2).enumerate() {
        let mut b = std::fs::read(data.join(k)).unwrap();
        if i == 1 {
            b.truncate(b.len() / 2);
        }
        std::fs::create_dir_all(bucket.join(k).parent().unwrap()).unwrap();
        std::fs::write(bucket.join(k), b).unwrap();
    }
    let run = |to: &str| {
        let out = migrate(&on_s3, to).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run("s3");
    assert!(ok, "{text}");
    assert!(
        text.contains("5 file(s) copied and verified, 1 already there"),
        "{text}"
    );
    assert!(!text.contains(s3::SECRET_KEY));
    // Every image served from the bucket equals the original.
    {
        let app = novart::App::new(on_s3.clone()).unwrap();
        for (k, sum) in &sums {
            let b = std::fs::read(bucket.join(k)).unwrap();
            assert_eq!(&sha(&b), sum, "{k}");
        }
        let conn = app.db.get().unwrap();
        let asset: (String,) = conn
            .query_row("SELECT public_id FROM assets LIMIT 1", (), |r| {
                Ok((r.get(0)?,))
            })
            .unwrap();
        let a = novart::domain::assets::viewable(&conn, &asset.0, None, true, None).unwrap();
        let served = novart::domain::assets::read_image(&app.config, &a, false).unwrap();
        let want = &sums.iter().find(|(k, _)| *k == a.path).unwrap().1;
        assert_eq!(&sha(&served), want);
    }
    // A second run changes nothing.
    let (ok, text) = run("s3");
    assert!(!ok && text.contains("already on \"s3\""), "{text}");
    // And back to the data directory, after the local copies are gone.
    std::fs::remove_dir_all(data.join("assets")).unwrap();
    let (ok, text) = run("local");
    assert!(ok, "{text}");
    assert!(text.contains("6 file(s) copied and verified"), "{text}");
    for (k, sum) in &sums {
        assert_eq!(&sha(&std::fs::read(data.join(k)).unwrap()), sum);
    }
    novart::App::new(local).expect("the local instance starts again");
}

#[test]
fn migrate_refuses_while_the_server_runs() {
    let Some(server) = server("migrate_refuses_while_the_server_runs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = novart::Config::for_data_dir(&data);
    novart::App::new(config.clone()).unwrap();
    let _lock = novart::domain::backup::lock_data_dir(&config).unwrap();
    let mut on_s3 = config.clone();
    s3::use_s3(&mut on_s3, server);
    let out = migrate(&on_s3, "s3").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the server is running"), "{err}");
}

/// `storage migrate` killed with SIGKILL part-way through, then run again:
/// it finishes, every file arrives once and intact, and what the first run
/// had copied is not copied again.
#[test]
fn migrate_killed_half_way_finishes_when_run_again() {
    use std::io::BufRead;
    let Some(server) = server("migrate_killed_half_way_finishes_when_run_again") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut local = novart::Config::for_data_dir(&data);
    local.queue.workers = 0;
    {
        let app = novart::App::new(local.clone()).unwrap();
        let user = common::verified_user(&app, "s3@example.com");
        let mut conn = app.db.get().unwrap();
        for i in 0..100u32 {
            let mut png = Vec::new();
            image::RgbImage::from_pixel(16, 16, image::Rgb([(i % 256) as u8, (i / 256) as u8, 7]))
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            novart::domain::uploads::ingest_reference(&mut conn, &local, user, &png).unwrap();
        }
    }
    let keys = s3::stored_keys(&local, "assets/");
    assert_eq!(keys.len(), 200, "an upload and its preview each");
    let sums: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.clone(), sha(&std::fs::read(data.join(k)).unwrap())))
        .collect();
    let mut on_s3 = local.clone();
    s3::use_s3(&mut on_s3, server);
    let command = || migrate(&on_s3, "s3");
    // Killed as soon as it reports its first hundred files.
    let mut child = command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    progress.read_line(&mut line).unwrap();
    assert!(line.contains("/200 file(s)"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    let copied_before = s3::stored_keys(&on_s3, "assets/").len();
    eprintln!("killed after {copied_before} of 200 files");
    assert!(
        (100..200).contains(&copied_before),
        "killed part-way: {copied_before} of 200 copied"
    );
    // The instance still runs on the data directory meanwhile.
    novart::App::new(local.clone()).expect("the local instance is untouched");

    let out = command().output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let copied: u64 = text
        .split(" file(s) copied and verified, ")
        .next()
        .and_then(|s| s.rsplit(['\n', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        copied <= (200 - copied_before + 1) as u64 && copied > 0,
        "the second run copies only what is missing (and at most the one cut short): {text}"
    );
    let in_bucket = s3::stored_keys(&on_s3, "assets/");
    assert_eq!(in_bucket, keys, "every file once, nothing more");
    for (k, sum) in &sums {
        let b = std::fs::read(s3::stored_path(&on_s3, k)).unwrap();
        assert_eq!(&sha(&b), sum, "{k}");
    }
    novart::App::new(on_s3).expect("the instance starts on the bucket");
}
