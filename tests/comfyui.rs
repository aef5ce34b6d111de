//! The ComfyUI adapter with the server's own workers, against an imitation
//! with a real queue (`common::fake_comfy`): cancels touch only their own
//! prompt and arrive within a second, an upstream timeout leaves nothing
//! running, validation errors reach the creator, Basic credentials are sent.

mod common;

use std::time::{Duration, Instant};

use common::fake_comfy::{self, FakeComfy};
use novart::config::catalog::{ProviderConfig, ProviderKind};
use novart::domain::tasks::{self, NewTaskInput};
use novart::model::{TaskStatus, UserId};
use novart::App;
use rocket::tokio;
use serde_json::json;

struct World {
    _dir: tempfile::TempDir,
    app: App,
    _rt: tokio::runtime::Runtime,
}

fn world(fake: &FakeComfy, f: impl FnOnce(&mut ProviderConfig)) -> World {
    world_with(fake, f, |_| {})
}

fn world_with(
    fake: &FakeComfy,
    f: impl FnOnce(&mut ProviderConfig),
    g: impl FnOnce(&mut novart::Config),
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let workflow = json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}
    });
    let path = dir.path().join("workflow_api.json");
    std::fs::write(&path, workflow.to_string()).unwrap();
    let mut p = ProviderConfig {
        timeout_secs: 20,
        concurrency: 4,
        ..ProviderConfig::new("comfy", ProviderKind::Comfyui, &fake.url())
    };
    p.workflow = path.display().to_string();
    f(&mut p);
    let mut config = common::config_for(dir.path());
    config.providers = vec![p];
    config.models = vec![common::model("sd", &["comfy"], "512x512", 4)];
    config.queue.workers = 4;
    g(&mut config);
    started(dir, config)
}

/// A world on `config`, with the server's workers running.
fn started(dir: tempfile::TempDir, config: novart::Config) -> World {
    config.validate().unwrap();
    let app = App::new(config).unwrap();
    // The server's workers, on a runtime of their own.
    let rt = common::run_workers(&app.engine);
    World {
        _dir: dir,
        app,
        _rt: rt,
    }
}

impl World {
    fn user(&self, email: &str) -> UserId {
        common::verified_user(&self.app, email)
    }

    fn submit(&self, user: UserId, prompt: &str, n: u32) -> String {
        let mut conn = self.app.db.get().unwrap();
        let input = NewTaskInput {
            prompt: prompt.into(),
            model: "sd".into(),
            size: Some("512x512".into()),
            n: Some(n),
            ..Default::default()
        };
        let t = tasks::submit(
            &mut conn,
            &self.app.engine.config,
            &self.app.engine.catalog,
            user,
            &input,
        )
        .unwrap();
        self.app.engine.hub.wake();
        t.public_id
    }

    /// What the studio's cancel button does.
    fn cancel(&self, user: UserId, id: &str) {
        let mut conn = self.app.db.get().unwrap();
        tasks::cancel(&mut conn, user, id).unwrap();
        self.app.engine.hub.canceled(user, id);
    }

    fn task(&self, user: UserId, id: &str) -> tasks::TaskView {
        tasks::get(&self.app.db.get().unwrap(), user, id).unwrap()
    }

    fn wait_status(&self, user: UserId, id: &str, status: TaskStatus) -> tasks::TaskView {
        wait("the task's status", Duration::from_secs(30), || {
            self.task(user, id).task.status == status
        });
        self.task(user, id)
    }
}

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Two creators on one server: canceling one's running prompt interrupts
/// that prompt only (by its id, within a second), canceling a waiting one
/// deletes it from ComfyUI's queue, and another client's job is never
/// touched.
#[test]
fn a_cancel_stops_only_its_own_prompt_within_a_second() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |_| {});
    let (ann, bob) = (w.user("ann@example.com"), w.user("bob@example.com"));
    // Someone else's job runs first on the shared server.
    let foreign = fake.foreign_job(Duration::from_millis(1500));
    let a = w.submit(ann, "slow harbour", 1);
    let b = w.submit(bob, "slow forest", 1);
    wait(
        "both prompts queued behind the foreign job",
        Duration::from_secs(10),
        || fake.pending().len() == 2,
    );
    // Bob cancels while his prompt waits: deleted from the queue, nothing
    // interrupted (the foreign job keeps running).
    let pending = fake.pending();
    let clicked = Instant::now();
    w.cancel(bob, &b);
    wait("the delete", Duration::from_secs(5), || {
        fake.deletes().len() == 1
    });
    assert!(
        clicked.elapsed() < Duration::from_secs(1),
        "{:?}",
        clicked.elapsed()
    );
    assert!(pending.contains(&fake.deletes()[0]));
    assert!(fake.interrupts().is_empty(), "{:?}", fake.interrupts());
    wait("the foreign job done", Duration::from_secs(10), || {
        fake.finished().contains(&foreign)
    });
    // Ann's prompt runs; she cancels it: interrupted by its id.
    wait("ann's prompt running", Duration::from_secs(10), || {
        fake.running().is_some_and(|r| r != foreign)
    });
    let running = fake.running().unwrap();
    let clicked = Instant::now();
    w.cancel(ann, &a);
    wait("the interrupt", Duration::from_secs(5), || {
        !fake.interrupts().is_empty()
    });
    assert!(
        clicked.elapsed() < Duration::from_secs(1),
        "{:?}",
        clicked.elapsed()
    );
    assert_eq!(
        fake.interrupts(),
        vec![(Some(running.clone()), Some(running))],
        "one interrupt, for ann's prompt, while it ran"
    );
    assert_eq!(w.task(ann, &a).task.status, TaskStatus::Canceled);
    assert_eq!(w.task(bob, &b).task.status, TaskStatus::Canceled);
    assert_eq!(fake.finished(), vec![foreign], "nothing of ours ran on");
}

/// A cancel made elsewhere (the admin CLI, another node) reaches the
/// upstream within about a second too: the worker reads it from the
/// database.
#[test]
fn a_cancel_from_another_process_reaches_comfyui_quickly() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |_| {});
    let ann = w.user("ann@example.com");
    let a = w.submit(ann, "slow lighthouse", 1);
    wait("the prompt running", Duration::from_secs(10), || {
        fake.running().is_some()
    });
    let clicked = Instant::now();
    // Only the database changes (no signal to this node's workers).
    tasks::cancel_by_admin(&mut w.app.db.get().unwrap(), &a).unwrap();
    wait("the interrupt", Duration::from_secs(5), || {
        !fake.interrupts().is_empty()
    });
    assert!(
        clicked.elapsed() < Duration::from_millis(1600),
        "{:?}",
        clicked.elapsed()
    );
}

/// When the adapter gives up waiting, it takes its prompt back before the
/// task is retried: ComfyUI is never left running a prompt nobody waits for.
#[test]
fn an_upstream_timeout_cancels_the_prompt_before_the_retry() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |p| p.timeout_secs = 1);
    let ann = w.user("ann@example.com");
    let a = w.submit(ann, "slow meadow", 1);
    wait(
        "the first attempt given up",
        Duration::from_secs(10),
        || w.task(ann, &a).task.attempts >= 1 && w.task(ann, &a).task.status == TaskStatus::Queued,
    );
    assert_eq!(
        fake.interrupts(),
        vec![(Some("p-1".to_string()), Some("p-1".to_string()))]
    );
    assert!(
        fake.finished().is_empty(),
        "the abandoned prompt did not run on"
    );
    let v = w.task(ann, &a);
    assert!(
        v.task.error.unwrap().contains("did not answer in time"),
        "a timeout is a timeout"
    );
}

/// ComfyUI's validation errors are what the creator reads: from a 400, and
/// from a 200 whose only output was refused.
#[test]
fn validation_errors_reach_the_creator() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |_| {});
    let ann = w.user("ann@example.com");
    let a = w.submit(ann, "bad steps", 1);
    let v = w.wait_status(ann, &a, TaskStatus::Failed);
    let error = v.task.error.unwrap();
    assert!(
        error.contains("KSampler (node 3): Value bigger than max: steps: 99 bigger than max of 31"),
        "{error}"
    );
    let b = w.submit(ann, "half valid", 1);
    let v = w.wait_status(ann, &b, TaskStatus::Failed);
    let error = v.task.error.unwrap();
    assert!(error.contains("sampler_name: 'euler_x' not in"), "{error}");
    assert!(!error.contains("returned no images"), "{error}");
}

/// Behind a reverse proxy with HTTP Basic, every call carries the
/// provider's username and password.
#[test]
fn basic_credentials_are_sent_to_comfyui() {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gpu:hunter2")
    );
    let fake = fake_comfy::start(Some(auth));
    let w = world(&fake, |p| {
        p.username = "gpu".into();
        p.password = "hunter2".into();
    });
    let ann = w.user("ann@example.com");
    let a = w.submit(ann, "a lantern", 1);
    let v = w.wait_status(ann, &a, TaskStatus::Succeeded);
    assert_eq!(v.outputs.len(), 1);
}

/// What comes back is held against what was asked: extra images are not
/// kept (nor charged), missing ones are refunded, another size is recorded;
/// each is said on the task.
#[test]
fn results_are_checked_against_the_request() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |_| {});
    let ann = w.user("ann@example.com");
    let available = || {
        novart::domain::wallet::get(&w.app.db.get().unwrap(), ann)
            .unwrap()
            .total()
    };
    let start = available();

    let a = w.submit(ann, "fixed batch 3", 1);
    let v = w.wait_status(ann, &a, TaskStatus::Succeeded);
    assert_eq!(v.outputs.len(), 1, "only what was asked for is kept");
    assert_eq!(
        v.task.notice.as_deref(),
        Some(
            "The image service made 3 images where 1 were asked for; only the first ones are kept."
        )
    );
    assert_eq!(available(), start - 1, "one image charged");

    let b = w.submit(ann, "fixed batch 1", 3);
    let v = w.wait_status(ann, &b, TaskStatus::Succeeded);
    assert_eq!(v.outputs.len(), 1);
    assert_eq!(
        v.task.notice.as_deref(),
        Some("The image service made 1 of the 3 images asked for; the missing ones are refunded.")
    );
    assert_eq!(available(), start - 2, "two of three refunded");

    let c = w.submit(ann, "wrong size", 1);
    let v = w.wait_status(ann, &c, TaskStatus::Succeeded);
    assert_eq!((v.outputs[0].width, v.outputs[0].height), (1024, 1024));
    assert_eq!(
        v.task.notice.as_deref(),
        Some("The image service made 1024×1024 images instead of the 512×512 asked for.")
    );
    // A task that went as asked says nothing.
    let d = w.submit(ann, "all as asked", 2);
    assert_eq!(
        w.wait_status(ann, &d, TaskStatus::Succeeded).task.notice,
        None
    );
}

/// ComfyUI restarts (20 s of refused connections, its queue lost) while
/// tasks run and wait: every task still ends with its images. The tasks
/// wait in Novart's queue while the server is down instead of using up
/// their attempts, and are sent again when it answers.
#[test]
fn a_twenty_second_restart_loses_no_task() {
    let fake = fake_comfy::start(None);
    let w = world(&fake, |p| p.concurrency = 2);
    let ann = w.user("ann@example.com");
    let bob = w.user("bob@example.com");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push((ann, w.submit(ann, &format!("slow boat {i}"), 1)));
        ids.push((bob, w.submit(bob, &format!("slow kite {i}"), 1)));
    }
    wait("a prompt running", Duration::from_secs(10), || {
        fake.running().is_some()
    });
    let down_at = Instant::now();
    fake.restart(Duration::from_secs(20));
    // While it is down, nothing fails and the tasks wait.
    std::thread::sleep(Duration::from_secs(5));
    for (user, id) in &ids {
        let t = w.task(*user, id).task;
        assert_ne!(t.status, TaskStatus::Failed, "{id}: {:?}", t.error);
    }
    let all_done = || {
        ids.iter()
            .all(|(u, id)| w.task(*u, id).task.status == TaskStatus::Succeeded)
    };
    let start = Instant::now();
    while !all_done() && start.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (user, id) in &ids {
        let v = w.task(*user, id);
        assert_eq!(
            v.task.status,
            TaskStatus::Succeeded,
            "{id}: attempts {} error {:?} ({:?})",
            v.task.attempts,
            v.task.error,
            v.task.error_raw
        );
        assert_eq!(v.outputs.len(), 1);
    }
    assert!(down_at.elapsed() >= Duration::from_secs(20));
}

/// Progress and previews from ComfyUI's websocket reach the studio's live
/// stream (SSE) while the task runs, and the latest preview can be fetched
/// through the API; nothing of it is stored as a file.
#[test]
fn progress_and_previews_reach_the_live_stream() {
    use std::io::{BufRead, BufReader, Write};
    let fake = fake_comfy::start(None);
    let dir = tempfile::tempdir().unwrap();
    let workflow = json!({
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}
    });
    let path = dir.path().join("workflow_api.json");
    std::fs::write(&path, workflow.to_string()).unwrap();
    let url = fake.url();
    let srv = common::live(move |c| {
        let mut p = ProviderConfig::new("comfy", ProviderKind::Comfyui, &url);
        p.workflow = path.display().to_string();
        c.providers = vec![p];
        c.models = vec![common::model("sd", &["comfy"], "512x512", 1)];
    });
    let app = App::new(srv.config.clone()).unwrap();
    let (user, key) = common::user_with_key(&app, "live@example.com", 20);
    let s = common::live_session(&srv, &app, user);
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/events?csrf_token={} HTTP/1.0\r\nHost: {addr}\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
        s.csrf, s.cookie
    )
    .unwrap();
    let mut events = BufReader::new(stream);
    let mut line = String::new();
    while !line.starts_with("event: ready") && !line.starts_with("event:ready") {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0);
    }
    let resp = common::http()
        .post(&format!("{}/api/v1/tasks", srv.base))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(json!({ "prompt": "slow aurora", "model": "sd" }))
        .unwrap();
    let task: serde_json::Value = resp.into_body().read_json().unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    // Task events until it is done: progress climbs and previews arrive.
    let (mut progress, mut previews, mut fetched) = (Vec::new(), 0u64, false);
    loop {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
            continue; // "ready", messages
        };
        if v["id"] != id.as_str() {
            continue;
        }
        if v["status"] == "running" {
            progress.push(v["progress"].as_f64().unwrap());
            previews = previews.max(v["preview_seq"].as_u64().unwrap_or(0));
            if previews > 0 && !fetched {
                let r = common::http()
                    .get(&format!("{}/api/v1/tasks/{id}/preview", srv.base))
                    .header("Authorization", &format!("Bearer {key}"))
                    .call()
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(
                    r.headers().get("content-type").unwrap().to_str().unwrap(),
                    "image/jpeg"
                );
                let bytes = r.into_body().read_to_vec().unwrap();
                assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
                fetched = true;
            }
        }
        if v["status"] == "succeeded" {
            break;
        }
    }
    assert!(fake.frames() > 10, "the websocket was used");
    assert!(
        progress.iter().any(|p| *p > 0.0 && *p < 1.0),
        "progress while running: {progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(fetched, "a preview was served while the task ran");
    // Once done, there is no preview (it was never a stored file).
    let r = common::http()
        .get(&format!("{}/api/v1/tasks/{id}/preview", srv.base))
        .header("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A model set to charge extra images keeps them and charges them at its
/// price, as far as the creator's credits go (a ledger row of its own).
#[test]
fn extra_images_are_kept_and_charged_when_the_model_says_so() {
    let fake = fake_comfy::start(None);
    let w = world_with(&fake, |_| {}, |c| c.models[0].charge_extra_images = true);
    let ann = w.user("ann@example.com");
    let total = |u| {
        novart::domain::wallet::get(&w.app.db.get().unwrap(), u)
            .unwrap()
            .total()
    };
    let start = total(ann);
    let a = w.submit(ann, "fixed batch 3", 1);
    let v = w.wait_status(ann, &a, TaskStatus::Succeeded);
    assert_eq!(v.outputs.len(), 3, "all kept");
    assert_eq!(
        v.task.notice.as_deref(),
        Some("The image service made 3 images where 1 were asked for; the 2 extra ones are kept and charged.")
    );
    assert_eq!(total(ann), start - 3, "three images paid");
    // Credits for one extra image only: one is kept.
    let bob = w.user("bob@example.com");
    let have = total(bob);
    novart::domain::wallet::deduct(
        &mut w.app.db.get().unwrap(),
        bob,
        have - 2,
        "test",
        "leave 2",
    )
    .unwrap();
    let b = w.submit(bob, "fixed batch 3", 1);
    let v = w.wait_status(bob, &b, TaskStatus::Succeeded);
    assert_eq!(v.outputs.len(), 2);
    assert!(v
        .task
        .notice
        .unwrap()
        .contains("1 extra ones are kept and charged, as many as your credits allowed"));
    assert_eq!(total(bob), 0);
    // The ledger and the doctor agree.
    let checks = novart::domain::doctor::run(&w.app.db.get().unwrap(), &w.app.config).unwrap();
    assert!(
        checks.iter().all(|c| c.ok),
        "{:?}",
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| &c.name)
            .collect::<Vec<_>>()
    );
}
