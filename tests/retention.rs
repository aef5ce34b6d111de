//! The retention sweep with a fake clock: nothing outlives its retention, and
//! neither orphan files nor dangling rows survive.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use novart::domain::retention::sweep;
use novart::domain::tasks::{self, NewTaskInput};
use novart::domain::{now, uploads};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(20, 20, image::Rgb([1, 2, 3]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn results_after_48_hours_references_after_24_and_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_for(dir.path());
    let (app, user) = common::app_with_user(&config, "keep@example.com");
    let mut conn = app.db.get().unwrap();
    let reference = uploads::ingest_reference(&mut conn, &config, user, &png()).unwrap();
    let input = NewTaskInput {
        prompt: "x".into(),
        model: "novart-builtin".into(),
        n: Some(2),
        ..Default::default()
    };
    let task = tasks::submit(
        &mut conn,
        &app.engine.config,
        &app.engine.catalog,
        user,
        &input,
    )
    .unwrap();
    assert!(app.engine.process_one("w").unwrap());
    let assets = common::s3::stored_path(&config, "assets");
    assert_eq!(
        files(&assets).len(),
        6,
        "2 results + 1 reference, each with a preview"
    );

    let t0 = now();
    assert_eq!(sweep(&app.db, &config, t0).unwrap(), Default::default());

    let r = sweep(&app.db, &config, t0 + 24 * 3600 + 1).unwrap();
    assert_eq!((r.references_deleted, r.results_deleted), (1, 0));
    assert_eq!(files(&assets).len(), 4);
    assert!(!files(&assets)
        .iter()
        .any(|f| f.to_string_lossy().contains(&reference.public_id)));

    let r = sweep(&app.db, &config, t0 + 48 * 3600 + 1).unwrap();
    assert_eq!(r.results_deleted, 2);
    assert!(
        files(&assets).is_empty(),
        "no file past its retention: {:?}",
        files(&assets)
    );
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM assets", (), |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "no row past its retention");
    // The task itself stays in the history, without outputs.
    let v = tasks::get(&conn, user, &task.public_id).unwrap();
    assert!(v.outputs.is_empty());
}

#[test]
fn orphan_files_and_dangling_rows_are_mended() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_for(dir.path());
    let (app, user) = common::app_with_user(&config, "o@example.com");
    let mut conn = app.db.get().unwrap();
    let a = uploads::ingest_reference(&mut conn, &config, user, &png()).unwrap();
    let b = uploads::ingest_reference(&mut conn, &config, user, &png()).unwrap();
    // a's file vanished (crash after deleting the file): its row must go.
    std::fs::remove_file(common::s3::stored_path(&config, &a.path)).unwrap();
    // Two strays with no row: an old one (removed) and a fresh one (kept: a
    // worker may be about to commit its row).
    let old = common::s3::stored_path(&config, "assets/1/stray-old.png");
    let fresh = common::s3::stored_path(&config, "assets/1/stray-fresh.png");
    std::fs::write(&old, b"x").unwrap();
    std::fs::write(&fresh, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let r = sweep(&app.db, &config, now()).unwrap();
    assert_eq!(r.dangling_rows_deleted, 1);
    // a's preview lost its row too and is old enough? No: it is fresh, so it
    // waits for the next sweep; the stray from an hour ago is gone.
    assert!(!old.exists());
    assert!(fresh.exists());
    let ids: Vec<String> = conn
        .prepare("SELECT public_id FROM assets")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, vec![b.public_id.clone()]);
    assert!(common::s3::stored_path(&config, &b.path).exists());
}
