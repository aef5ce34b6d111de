//! The durable task queue, driven directly through the engine (no HTTP):
//! submission rules, processing, fairness, failover, retries, cancel and
//! lease recovery.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::domain::catalog::Catalog;
use novart::domain::tasks::{self, NewTaskInput};
use novart::jobs::queue::{Engine, Providers};
use novart::model::{Role, TaskStatus, UserId};
use novart::providers::{Cause, Control, GenRequest, Provider, ProviderError};
use novart::{App, AppError, Config};

struct Setup {
    _dir: tempfile::TempDir,
    app: App,
}

fn setup(f: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(dir.path());
    f(&mut config);
    config.validate().unwrap();
    let app = App::new(config).unwrap();
    Setup { _dir: dir, app }
}

fn user(app: &App, email: &str) -> UserId {
    let mut conn = app.db.get().unwrap();
    novart::domain::accounts::create_by_admin(
        &mut conn,
        &app.config,
        email,
        common::PASSWORD,
        "",
        Role::User,
        true,
    )
    .unwrap()
    .id
}

fn input(prompt: &str) -> NewTaskInput {
    NewTaskInput {
        prompt: prompt.into(),
        model: "novart-builtin".into(),
        size: Some("512x512".into()),
        ..Default::default()
    }
}

fn submit(
    engine: &Engine,
    user: UserId,
    inp: &NewTaskInput,
) -> Result<novart::model::Task, AppError> {
    let mut conn = engine.db.get().unwrap();
    tasks::submit(&mut conn, &engine.config, &engine.catalog, user, inp)
}

fn status(engine: &Engine, user: UserId, id: &str) -> tasks::TaskView {
    let conn = engine.db.get().unwrap();
    tasks::get(&conn, user, id).unwrap()
}

#[test]
fn a_task_runs_on_the_builtin_renderer_and_stores_its_images() {
    let s = setup(|_| {});
    let e = &s.app.engine;
    let u = user(&s.app, "q@example.com");
    let mut inp = input("sunset over the sea");
    inp.n = Some(2);
    inp.size = Some("768x512".into());
    inp.seed = Some(7);
    let t = submit(e, u, &inp).unwrap();
    assert_eq!(t.status, TaskStatus::Queued);
    assert_eq!(t.cost, 2, "price 1 × 2 images");
    assert!(e.process_one("test").unwrap());
    assert!(!e.process_one("test").unwrap(), "nothing left");
    let v = status(e, u, &t.public_id);
    assert_eq!(v.task.status, TaskStatus::Succeeded);
    assert_eq!(v.task.progress, 1.0);
    assert_eq!(v.outputs.len(), 2);
    for o in &v.outputs {
        assert_eq!((o.width, o.height), (768, 512));
        assert!(o.url.starts_with("/media/img_"));
        assert!(o.expires_at > novart::domain::now() + 47 * 3600);
    }
    // Files and previews exist on disk; previews are small JPEGs.
    let conn = e.db.get().unwrap();
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT path, preview_path FROM assets")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    for (path, preview) in rows {
        let full = image::open(common::s3::stored_path(&s.app.config, &path)).unwrap();
        assert_eq!((full.width(), full.height()), (768, 512));
        let p = image::open(common::s3::stored_path(&s.app.config, &preview)).unwrap();
        assert_eq!(p.width().max(p.height()), 384);
    }
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let s = setup(|_| {});
    let e = &s.app.engine;
    let u = user(&s.app, "bad@example.com");
    let cases: Vec<(NewTaskInput, &str)> = vec![
        (
            NewTaskInput {
                model: "nope".into(),
                ..input("x")
            },
            "model",
        ),
        (
            NewTaskInput {
                size: Some("123x77".into()),
                ..input("x")
            },
            "size",
        ),
        (
            NewTaskInput {
                size: Some("huge".into()),
                ..input("x")
            },
            "size",
        ),
        (
            NewTaskInput {
                n: Some(5),
                ..input("x")
            },
            "n",
        ),
        (
            NewTaskInput {
                n: Some(0),
                ..input("x")
            },
            "n",
        ),
        (input("   "), "prompt"),
        (input(&"a".repeat(10_000)), "prompt"),
        (
            NewTaskInput {
                seed: Some(-1),
                ..input("x")
            },
            "seed",
        ),
        (
            NewTaskInput {
                webhook_url: Some("ftp://x".into()),
                ..input("x")
            },
            "webhook_url",
        ),
        (
            NewTaskInput {
                size: None,
                aspect_ratio: Some("7:5".into()),
                ..input("x")
            },
            "aspect_ratio",
        ),
        (
            NewTaskInput {
                negative_prompt: Some("n".repeat(2001)),
                ..input("x")
            },
            "negative_prompt",
        ),
    ];
    for (inp, field) in cases {
        match submit(e, u, &inp) {
            Err(AppError::Invalid {
                field: Some(f),
                message,
            }) => {
                assert_eq!(f, field, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected an error on {field}, got {other:?}"),
        }
    }
    let n: i64 =
        e.db.get()
            .unwrap()
            .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
            .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn one_users_many_tasks_do_not_starve_anothers_one() {
    let s = setup(|c| c.queue.per_user_concurrency = 1);
    let e = &s.app.engine;
    let a = user(&s.app, "a@example.com");
    let b = user(&s.app, "b@example.com");
    let c = user(&s.app, "c@example.com");
    for i in 0..20 {
        submit(e, a, &input(&format!("a{i}"))).unwrap();
    }
    let tb = submit(e, b, &input("b")).unwrap();
    let tc = submit(e, c, &input("c")).unwrap();
    // One worker, running each task to the end before the next claim.
    let mut order = Vec::new();
    for _ in 0..4 {
        let mut conn = e.db.get().unwrap();
        let t = tasks::claim(&mut conn, &e.config, "w").unwrap().unwrap();
        order.push(t.public_id.clone());
        drop(conn);
        let outcome = e.execute(&t, &novart::providers::Unattended);
        e.finish(&t, "w", outcome).unwrap();
    }
    assert!(order[..3].contains(&tb.public_id), "{order:?}");
    assert!(order[..3].contains(&tc.public_id), "{order:?}");

    // With A already running one task, the per-user limit holds A back.
    let mut conn = e.db.get().unwrap();
    let first = tasks::claim(&mut conn, &e.config, "w1").unwrap().unwrap();
    assert_eq!(first.user_id, a);
    assert!(
        tasks::claim(&mut conn, &e.config, "w2").unwrap().is_none(),
        "A is at its limit and nobody else waits"
    );
}

/// A scripted fake provider: answers from a list, counting calls.
struct Scripted {
    answers: std::sync::Mutex<Vec<Result<Vec<Vec<u8>>, ProviderError>>>,
    calls: Arc<AtomicUsize>,
}

impl Provider for Scripted {
    fn generate(
        &self,
        _req: &GenRequest,
        _ctl: &dyn Control,
    ) -> Result<Vec<Vec<u8>>, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut a = self.answers.lock().unwrap();
        if a.is_empty() {
            Err(ProviderError::Unavailable {
                cause: Cause::Broken,
                raw: "script ran out".into(),
            })
        } else {
            a.remove(0)
        }
    }
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn scripted_engine(
    s: &Setup,
    first: Vec<Result<Vec<Vec<u8>>, ProviderError>>,
    second: Vec<Result<Vec<Vec<u8>>, ProviderError>>,
) -> (Engine, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let mut config = s.app.config.clone();
    let provider = |id: &str| ProviderConfig {
        timeout_secs: 5,
        concurrency: 1,
        ..ProviderConfig::new(id, ProviderKind::Builtin, "")
    };
    config.providers = vec![provider("one"), provider("two")];
    config.models = vec![ModelConfig {
        id: "m".into(),
        name: "M".into(),
        providers: vec!["one".into(), "two".into()],
        upstream_model: String::new(),
        price: 1,
        sizes: vec!["512x512".into()],
        max_n: 4,
        reference_images: false,
        description: String::new(),
        charge_extra_images: false,
    }];
    let catalog = Catalog::from_config(&config);
    let mut providers = Providers::from_catalog(&catalog);
    let (c1, c2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    providers.insert(
        "one",
        Box::new(Scripted {
            answers: std::sync::Mutex::new(first),
            calls: c1.clone(),
        }),
        1,
    );
    providers.insert(
        "two",
        Box::new(Scripted {
            answers: std::sync::Mutex::new(second),
            calls: c2.clone(),
        }),
        1,
    );
    (
        Engine::with_providers(s.app.db.clone(), &config, catalog, providers),
        c1,
        c2,
    )
}

fn m_input() -> NewTaskInput {
    NewTaskInput {
        prompt: "x".into(),
        model: "m".into(),
        ..Default::default()
    }
}

#[test]
fn failover_on_unavailable_but_not_on_refusal() {
    let s = setup(|_| {});
    let u = user(&s.app, "f@example.com");
    let down = || {
        Err(ProviderError::Unavailable {
            cause: Cause::Refused,
            raw: "connection refused".into(),
        })
    };
    let (e, c1, c2) = scripted_engine(&s, vec![down()], vec![Ok(vec![png()])]);
    let t = submit(&e, u, &m_input()).unwrap();
    e.process_one("w").unwrap();
    let v = status(&e, u, &t.public_id);
    assert_eq!(v.task.status, TaskStatus::Succeeded);
    assert_eq!(v.task.attempts, 1);
    assert_eq!(
        (c1.load(Ordering::SeqCst), c2.load(Ordering::SeqCst)),
        (1, 1)
    );
    let provider: String =
        e.db.get()
            .unwrap()
            .query_row("SELECT provider FROM tasks", (), |r| r.get(0))
            .unwrap();
    assert_eq!(provider, "two");

    let refused = Err(ProviderError::Refused {
        message: "This prompt is not allowed.".into(),
        raw: "content_policy_violation".into(),
    });
    let (e, c1, c2) = scripted_engine(&s, vec![refused], vec![Ok(vec![png()])]);
    let t = submit(&e, u, &m_input()).unwrap();
    e.process_one("w").unwrap();
    let v = status(&e, u, &t.public_id);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert_eq!(v.task.error.as_deref(), Some("This prompt is not allowed."));
    assert_eq!(
        (c1.load(Ordering::SeqCst), c2.load(Ordering::SeqCst)),
        (1, 0),
        "no failover on a refusal"
    );
}

#[test]
fn garbage_and_empty_answers_fail_with_a_readable_message() {
    let s = setup(|_| {});
    let u = user(&s.app, "g@example.com");
    for (answer, message) in [
        (
            Ok(vec![b"<html>502 Bad Gateway</html>".to_vec()]),
            "not an image",
        ),
        (Ok(vec![]), "returned no images"),
        (Ok(vec![vec![0x89, b'P', b'N', b'G', 0, 0]]), "not an image"),
    ] {
        let (e, _, _) = scripted_engine(&s, vec![answer], vec![]);
        let t = submit(&e, u, &m_input()).unwrap();
        e.process_one("w").unwrap();
        let v = status(&e, u, &t.public_id);
        assert_eq!(v.task.status, TaskStatus::Failed);
        assert!(
            v.task.error.as_deref().unwrap().contains(message),
            "{:?}",
            v.task.error
        );
        let raw: String =
            e.db.get()
                .unwrap()
                .query_row(
                    "SELECT error_raw FROM tasks WHERE public_id = ?1",
                    [&t.public_id],
                    |r| r.get(0),
                )
                .unwrap();
        assert!(raw.starts_with("one:"), "raw error for admins: {raw}");
    }
    // Three failures in a row: one message in the inbox, not three.
    let conn = s.app.db.get().unwrap();
    let failed: Vec<String> = novart::domain::messages::list(&conn, u)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "task")
        .map(|m| m.body)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("not an image") && failed[0].contains("refunded"),
        "{failed:?}"
    );
    novart::domain::messages::mark_all_read(&mut s.app.db.get().unwrap(), u).unwrap();
    let (e, _, _) = scripted_engine(&s, vec![Ok(vec![])], vec![]);
    submit(&e, u, &m_input()).unwrap();
    e.process_one("w").unwrap();
    let n = novart::domain::messages::list(&conn, u)
        .unwrap()
        .iter()
        .filter(|m| m.kind == "task")
        .count();
    assert_eq!(n, 2, "once read, the next failure is reported again");
}

#[test]
fn temporary_failures_are_retried_with_backoff_then_fail() {
    let s = setup(|c| c.queue.max_attempts = 2);
    let u = user(&s.app, "r@example.com");
    let down = || Err(ProviderError::status(503, "HTTP 503".into()));
    let (e, _, _) = scripted_engine(&s, vec![down(), down()], vec![down(), down()]);
    let t = submit(&e, u, &m_input()).unwrap();
    e.process_one("w").unwrap();
    let v = status(&e, u, &t.public_id);
    assert_eq!(
        v.task.status,
        TaskStatus::Queued,
        "back in the queue for a retry"
    );
    assert!(v.task.error.is_some());
    // Not before its backoff ends.
    assert!(!e.process_one("w").unwrap());
    e.db.get()
        .unwrap()
        .execute("UPDATE tasks SET not_before = 0", ())
        .unwrap();
    e.process_one("w").unwrap();
    let v = status(&e, u, &t.public_id);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert_eq!(v.task.attempts, 2);
    assert_eq!(
        v.task.error.as_deref(),
        Some("The image service had an error (HTTP 503)."),
        "the creator is told the upstream's status, not a timeout"
    );
}

#[test]
fn cancel_queued_and_running_tasks() {
    let s = setup(|_| {});
    let e = &s.app.engine;
    let u = user(&s.app, "c@example.com");
    let other = user(&s.app, "o@example.com");
    let t = submit(e, u, &input("to cancel")).unwrap();
    // Another user cannot see or cancel it.
    {
        let mut conn = e.db.get().unwrap();
        assert!(matches!(
            tasks::cancel(&mut conn, other, &t.public_id),
            Err(AppError::NotFound)
        ));
        let v = tasks::cancel(&mut conn, u, &t.public_id).unwrap();
        assert_eq!(v.task.status, TaskStatus::Canceled);
        assert!(matches!(
            tasks::cancel(&mut conn, u, &t.public_id).map(|v| v.task.status),
            Ok(TaskStatus::Canceled)
        ));
    }
    assert!(!e.process_one("w").unwrap(), "a canceled task never runs");

    // Running: canceled while the provider works; its result is discarded.
    let t = submit(e, u, &input("running")).unwrap();
    let claimed = tasks::claim(&mut e.db.get().unwrap(), &e.config, "w")
        .unwrap()
        .unwrap();
    let outcome = e.execute(&claimed, &novart::providers::Unattended);
    tasks::cancel(&mut e.db.get().unwrap(), u, &t.public_id).unwrap();
    assert_eq!(
        e.finish(&claimed, "w", outcome).unwrap(),
        TaskStatus::Canceled
    );
    let n: i64 =
        e.db.get()
            .unwrap()
            .query_row("SELECT count(*) FROM assets", (), |r| r.get(0))
            .unwrap();
    assert_eq!(n, 0, "no rows kept");
    let files = walk(&common::s3::stored_path(&s.app.config, "assets"));
    assert!(files.is_empty(), "no files kept: {files:?}");

    // Finished tasks cannot be canceled.
    let t = submit(e, u, &input("done")).unwrap();
    e.process_one("w").unwrap();
    assert!(matches!(
        tasks::cancel(&mut e.db.get().unwrap(), u, &t.public_id),
        Err(AppError::Conflict(_))
    ));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_dead_workers_task_is_retried_then_failed() {
    let s = setup(|c| c.queue.max_attempts = 2);
    let e = &s.app.engine;
    let u = user(&s.app, "l@example.com");
    let t = submit(e, u, &input("lease")).unwrap();
    let mut conn = e.db.get().unwrap();
    tasks::claim(&mut conn, &e.config, "dead-worker")
        .unwrap()
        .unwrap();
    // Lease still valid: nothing to recover.
    assert_eq!(novart::jobs::recover(e, novart::domain::now()).unwrap(), 0);
    conn.execute("UPDATE tasks SET lease_until = 1", ())
        .unwrap();
    assert_eq!(novart::jobs::recover(e, novart::domain::now()).unwrap(), 1);
    assert_eq!(status(e, u, &t.public_id).task.status, TaskStatus::Queued);
    conn.execute("UPDATE tasks SET not_before = 0", ()).unwrap();
    tasks::claim(&mut conn, &e.config, "dead-again")
        .unwrap()
        .unwrap();
    // At start-up every running task belongs to a dead process.
    assert_eq!(novart::jobs::recover(e, i64::MAX).unwrap(), 1);
    let v = status(e, u, &t.public_id);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert!(v.task.error.unwrap().contains("interrupted"));
}

#[test]
fn many_threads_claim_each_task_exactly_once() {
    let s = setup(|c| {
        c.queue.per_user_concurrency = 1000;
        c.billing.signup_bonus = 1000;
    });
    let e = &s.app.engine;
    let users: Vec<UserId> = (0..4)
        .map(|i| user(&s.app, &format!("t{i}@example.com")))
        .collect();
    for i in 0..200 {
        submit(e, users[i % 4], &input(&format!("p{i}"))).unwrap();
    }
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..16)
        .map(|w| {
            let (e, claimed) = (e.clone(), claimed.clone());
            std::thread::spawn(move || loop {
                let mut conn = e.db.get().unwrap();
                match tasks::claim(&mut conn, &e.config, &format!("w{w}")).unwrap() {
                    Some(t) => claimed.lock().unwrap().push(t.id),
                    None => break,
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ids = claimed.lock().unwrap().clone();
    assert_eq!(ids.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "a task was claimed twice");
    assert_queue_counts_exact(e);
}

#[test]
fn many_threads_at_once_never_pass_the_per_creator_limit() {
    // Sixteen workers claim at the same moment (on PostgreSQL each claim
    // runs beside the others, locking only rows): each creator still gets
    // at most `per_user_concurrency` tasks running.
    let s = setup(|c| {
        c.queue.per_user_concurrency = 3;
        c.billing.signup_bonus = 1000;
    });
    let e = &s.app.engine;
    let users: Vec<UserId> = (0..2)
        .map(|i| user(&s.app, &format!("l{i}@example.com")))
        .collect();
    for i in 0..40 {
        submit(e, users[i % 2], &input(&format!("l{i}"))).unwrap();
    }
    let start = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|w| {
            let (e, start) = (e.clone(), start.clone());
            std::thread::spawn(move || {
                let mut conn = e.db.get().unwrap();
                start.wait();
                let mut mine = Vec::new();
                while let Some(t) = tasks::claim(&mut conn, &e.config, &format!("w{w}")).unwrap() {
                    mine.push(t.user_id);
                }
                mine
            })
        })
        .collect();
    let mut per_user = std::collections::HashMap::new();
    for h in handles {
        for u in h.join().unwrap() {
            *per_user.entry(u).or_insert(0) += 1;
        }
    }
    assert_eq!(per_user.get(&users[0]), Some(&3), "{per_user:?}");
    assert_eq!(per_user.get(&users[1]), Some(&3), "{per_user:?}");
    assert_queue_counts_exact(e);
}

#[test]
fn a_cancel_racing_the_claims_always_cancels_and_refunds_once() {
    // Workers claim while the creator cancels every task: each cancel
    // finds its task queued or running and cancels it (never "already
    // running" because a claim moved it meanwhile), refunded once.
    let s = setup(|c| {
        c.queue.per_user_concurrency = 1000;
        c.billing.signup_bonus = 1000;
    });
    let e = &s.app.engine;
    let u = user(&s.app, "race@example.com");
    let ids: Vec<String> = (0..60)
        .map(|i| submit(e, u, &input(&format!("r{i}"))).unwrap().public_id)
        .collect();
    let start = Arc::new(std::sync::Barrier::new(9));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (e, start) = (e.clone(), start.clone());
            std::thread::spawn(move || {
                let mut conn = e.db.get().unwrap();
                start.wait();
                while tasks::claim(&mut conn, &e.config, &format!("w{w}"))
                    .unwrap()
                    .is_some()
                {}
            })
        })
        .collect();
    let mut conn = e.db.get().unwrap();
    start.wait();
    for id in &ids {
        let v = tasks::cancel(&mut conn, u, id).unwrap();
        assert_eq!(v.task.status, TaskStatus::Canceled);
    }
    for w in workers {
        w.join().unwrap();
    }
    let (balance, refunds): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT balance + bonus FROM wallets WHERE user_id = ?1),
                    (SELECT count(*) FROM ledger WHERE user_id = ?1 AND kind = 'task_refund')",
            [u],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(refunds, 60);
    assert_eq!(balance, 1000);
    assert_queue_counts_exact(e);
}

/// The per-creator queue counts (kept by triggers) match the tasks table.
fn assert_queue_counts_exact(e: &Engine) {
    let conn = e.db.get().unwrap();
    let mismatches: i64 = conn
        .query_row(
            "SELECT count(*) FROM queue_users q WHERE q.queued <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'queued')
                OR q.running <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'running')", (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatches, 0);
}

#[test]
fn queue_counts_stay_exact_through_every_transition() {
    let s = setup(|c| c.queue.per_user_concurrency = 1000);
    let e = &s.app.engine;
    let users: Vec<UserId> = (0..3)
        .map(|i| user(&s.app, &format!("k{i}@example.com")))
        .collect();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(submit(e, users[i % 3], &input(&format!("k{i}"))).unwrap());
    }
    assert_queue_counts_exact(e);
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let e = e.clone();
            std::thread::spawn(move || while e.process_one(&format!("w{w}")).unwrap() {})
        })
        .collect();
    // Cancel some while the workers run.
    for t in ids.iter().step_by(4) {
        let _ = tasks::cancel(&mut e.db.get().unwrap(), t.user_id, &t.public_id);
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_queue_counts_exact(e);
    let (queued, running): (i64, i64) =
        e.db.get()
            .unwrap()
            .query_row(
                "SELECT sum(queued), sum(running) FROM queue_users",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    assert_eq!((queued, running), (0, 0));
}

/// The running tasks, as (public id, worker).
fn running(e: &Engine) -> Vec<(String, String)> {
    let conn = e.db.get().unwrap();
    let mut stmt = conn
        .prepare("SELECT public_id, worker FROM tasks WHERE status = 'running' ORDER BY id")
        .unwrap();
    stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn the_commit_that_finishes_a_task_claims_the_workers_next_one() {
    // One task at a time per creator: the next one of the same creator can
    // only be claimed if the finish is recorded before the claim.
    let s = setup(|c| c.queue.per_user_concurrency = 1);
    let u = user(&s.app, "chain@example.com");
    let refusal = || {
        Err(ProviderError::Failed {
            message: "The image service refused this prompt.".into(),
            raw: "400 content policy".into(),
        })
    };
    let (e, _, _) = scripted_engine(&s, vec![Ok(vec![png()]), refusal()], vec![]);
    let ids: Vec<String> = (0..3)
        .map(|_| submit(&e, u, &m_input()).unwrap().public_id)
        .collect();

    let first = tasks::claim(&mut e.db.get().unwrap(), &e.config, "w1")
        .unwrap()
        .unwrap();
    assert_eq!(first.public_id, ids[0]);
    let outcome = e.execute(&first, &novart::providers::Unattended);
    let (now, next) = e.finish_then(&first, "w1", outcome, true).unwrap();
    assert_eq!(now, TaskStatus::Succeeded);
    let next = next.expect("the next task was claimed with the finish");
    assert_eq!(next.public_id, ids[1]);
    assert_eq!(running(&e), vec![(ids[1].clone(), "w1".to_string())]);
    assert_eq!(status(&e, u, &ids[0]).outputs.len(), 1, "images kept");

    // A failure chains the same way, and its refund and message stand.
    let outcome = e.execute(&next, &novart::providers::Unattended);
    let (now, last) = e.finish_then(&next, "w1", outcome, true).unwrap();
    assert_eq!(now, TaskStatus::Failed);
    let last = last.expect("claimed after a failure too");
    assert_eq!(last.public_id, ids[2]);
    assert_eq!(running(&e), vec![(ids[2].clone(), "w1".to_string())]);
    let refunds: i64 =
        e.db.get()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM ledger WHERE kind = 'task_refund' AND user_id = ?1",
                [u],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(refunds, 1);

    // Without `claim`, or with nothing waiting, no task is claimed.
    let outcome = e.execute(&last, &novart::providers::Unattended);
    let (_, none) = e.finish_then(&last, "w1", outcome, false).unwrap();
    assert!(none.is_none());
    assert!(running(&e).is_empty());
    submit(&e, u, &m_input()).unwrap();
    let t = tasks::claim(&mut e.db.get().unwrap(), &e.config, "w2")
        .unwrap()
        .unwrap();
    let outcome = e.execute(&t, &novart::providers::Unattended);
    assert!(e.finish_then(&t, "w2", outcome, true).unwrap().1.is_none());
    assert!(running(&e).is_empty());
    assert_queue_counts_exact(&e);
}

#[test]
fn a_canceled_tasks_finish_still_hands_the_worker_its_next_task() {
    let s = setup(|c| c.queue.per_user_concurrency = 10);
    let e = &s.app.engine;
    let u = user(&s.app, "cancel-chain@example.com");
    let a = submit(e, u, &input("a")).unwrap();
    let b = submit(e, u, &input("b")).unwrap();
    let claimed = tasks::claim(&mut e.db.get().unwrap(), &e.config, "w")
        .unwrap()
        .unwrap();
    assert_eq!(claimed.public_id, a.public_id);
    let outcome = e.execute(&claimed, &novart::providers::Unattended);
    tasks::cancel(&mut e.db.get().unwrap(), u, &a.public_id).unwrap();
    let (now, next) = e.finish_then(&claimed, "w", outcome, true).unwrap();
    assert_eq!(now, TaskStatus::Canceled);
    assert_eq!(next.unwrap().public_id, b.public_id);
    assert!(
        status(e, u, &a.public_id).outputs.is_empty(),
        "nothing kept"
    );
}

#[test]
fn many_draining_workers_run_each_task_exactly_once() {
    let s = setup(|c| {
        c.queue.per_user_concurrency = 1000;
        c.billing.signup_bonus = 1000;
    });
    let e = &s.app.engine;
    let users: Vec<UserId> = (0..4)
        .map(|i| user(&s.app, &format!("d{i}@example.com")))
        .collect();
    for i in 0..120 {
        submit(e, users[i % 4], &input(&format!("d{i}"))).unwrap();
    }
    let handles: Vec<_> = (0..12)
        .map(|w| {
            let e = e.clone();
            std::thread::spawn(move || e.drain(&format!("w{w}")).unwrap())
        })
        .collect();
    let ran: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(ran, 120);
    let (succeeded, attempts, results): (i64, i64, i64) =
        e.db.get()
            .unwrap()
            .query_row(
                "SELECT (SELECT count(*) FROM tasks WHERE status = 'succeeded'),
                        (SELECT sum(attempts) FROM tasks),
                        (SELECT count(*) FROM assets WHERE kind = 'result')",
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
    assert_eq!((succeeded, attempts, results), (120, 120, 120));
    assert_queue_counts_exact(e);
}

/// Three creators with five waiting tasks each: every task's place in line
/// is the order in which the queue then hands them out, and the time
/// estimate is unknown until the model has run times, then grows with the
/// place.
#[test]
fn queue_positions_match_the_order_tasks_are_served() {
    let s = setup(|c| {
        c.queue.workers = 2;
        c.queue.per_user_concurrency = 5;
    });
    let e = &s.app.engine;
    let users: Vec<UserId> = ["q1", "q2", "q3"]
        .iter()
        .map(|n| user(&s.app, &format!("{n}@example.com")))
        .collect();
    for u in &users {
        let mut conn = e.db.get().unwrap();
        novart::domain::wallet::grant(&mut conn, *u, 20, false, "test", "credits").unwrap();
    }
    // Creators submit in bursts: all of q1's, then q2's, then q3's.
    let mut ids = Vec::new();
    for u in &users {
        for i in 0..5 {
            ids.push((*u, submit(e, *u, &input(&format!("task {i}"))).unwrap()));
        }
    }
    let placed = |u: UserId, id: &str| {
        let conn = e.db.get().unwrap();
        let mut v = tasks::get(&conn, u, id).unwrap();
        tasks::place_in_queue(&conn, &e.config, &e.catalog, std::slice::from_mut(&mut v)).unwrap();
        v.queue.unwrap()
    };
    let mut expected: Vec<(u32, String)> = ids
        .iter()
        .map(|(u, t)| (placed(*u, &t.public_id).position, t.public_id.clone()))
        .collect();
    assert!(
        ids.iter()
            .all(|(u, t)| placed(*u, &t.public_id).eta_secs.is_none()),
        "no run times yet: no estimate"
    );
    expected.sort();
    let positions: Vec<u32> = expected.iter().map(|p| p.0).collect();
    assert_eq!(
        positions,
        (1..=15).collect::<Vec<u32>>(),
        "15 distinct places"
    );
    // The order the queue serves them.
    let mut served = Vec::new();
    while let Some(t) = tasks::claim(&mut e.db.get().unwrap(), &e.config, "w").unwrap() {
        served.push(t.public_id);
    }
    let expected_order: Vec<String> = expected.into_iter().map(|p| p.1).collect();
    assert_eq!(served, expected_order);

    // With run times known, the estimate is given and grows with the place.
    let s2 = setup(|c| c.queue.workers = 1);
    let e2 = &s2.app.engine;
    let u = user(&s2.app, "eta@example.com");
    novart::domain::wallet::grant(&mut e2.db.get().unwrap(), u, 20, false, "t", "c").unwrap();
    submit(e2, u, &input("warm up")).unwrap();
    assert!(e2.process_one("w").unwrap());
    let waiting: Vec<String> = (0..3)
        .map(|i| {
            submit(e2, u, &input(&format!("after {i}")))
                .unwrap()
                .public_id
        })
        .collect();
    let conn = e2.db.get().unwrap();
    let mut views: Vec<_> = waiting
        .iter()
        .map(|id| tasks::get(&conn, u, id).unwrap())
        .collect();
    tasks::place_in_queue(&conn, &e2.config, &e2.catalog, &mut views).unwrap();
    let etas: Vec<u32> = views
        .iter()
        .map(|v| v.queue.unwrap().eta_secs.unwrap())
        .collect();
    assert!(
        etas[0] >= 1 && etas[0] <= etas[1] && etas[1] <= etas[2],
        "{etas:?}"
    );
}
