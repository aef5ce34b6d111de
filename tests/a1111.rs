//! The AUTOMATIC1111 adapter's cancel, with the server's own workers,
//! against an imitation that runs one job at a time behind a lock as the
//! real server does (its API queue), answers `/internal/progress` for a
//! `force_task_id`, and interrupts whatever runs on `/sdapi/v1/interrupt`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_http::{b64, png, serve, Fake, Resp};
use novart::config::catalog::{ProviderConfig, ProviderKind};
use novart::domain::tasks::{self, NewTaskInput};
use novart::model::TaskStatus;
use novart::App;
use serde_json::json;

#[derive(Default)]
struct State {
    current: Option<String>,
    pending: Vec<String>,
    finished: Vec<String>,
    stop: bool,
    /// The job running when each interrupt came.
    interrupts: Vec<Option<String>>,
}

struct FakeA1111 {
    http: Fake,
    state: Arc<Mutex<State>>,
    gpu: Arc<Mutex<()>>,
}

/// Runs one job: waits for the GPU, renders for `run` unless interrupted.
fn render(state: &Mutex<State>, gpu: &Mutex<()>, id: &str, run: Duration) {
    state.lock().unwrap().pending.push(id.to_string());
    let _gpu = gpu.lock().unwrap();
    {
        let mut s = state.lock().unwrap();
        s.pending.retain(|p| p != id);
        s.current = Some(id.to_string());
        s.stop = false;
    }
    let start = Instant::now();
    let mut stopped = false;
    while start.elapsed() < run {
        if state.lock().unwrap().stop {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = state.lock().unwrap();
    s.current = None;
    if !stopped {
        s.finished.push(id.to_string());
    }
}

fn fake() -> FakeA1111 {
    let state = Arc::new(Mutex::new(State::default()));
    let gpu = Arc::new(Mutex::new(()));
    let (st, g) = (state.clone(), gpu.clone());
    let http = serve(
        move |req| match (req.method.as_str(), req.path.split('?').next().unwrap()) {
            ("POST", "/sdapi/v1/txt2img") => {
                let v = req.json();
                let id = v["force_task_id"]
                    .as_str()
                    .unwrap_or("anonymous")
                    .to_string();
                render(&st, &g, &id, Duration::from_millis(2500));
                let (w, h) = (
                    v["width"].as_u64().unwrap() as u32,
                    v["height"].as_u64().unwrap() as u32,
                );
                Resp::json(
                    200,
                    json!({"images": [b64(&png(w, h))], "parameters": v, "info": "{}"}),
                )
            }
            ("POST", "/internal/progress") => {
                let id = req.json()["id_task"].as_str().unwrap_or("").to_string();
                let s = st.lock().unwrap();
                let active = s.current.as_deref() == Some(id.as_str());
                // While active, a live preview newer than the one asked for.
                let asked = req.json()["id_live_preview"].as_i64().unwrap_or(-1);
                let preview = (active && asked < 1).then(|| {
                    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 90]));
                    let mut jpeg = Vec::new();
                    img.write_to(
                        &mut std::io::Cursor::new(&mut jpeg),
                        image::ImageFormat::Jpeg,
                    )
                    .unwrap();
                    format!("data:image/jpeg;base64,{}", b64(&jpeg))
                });
                Resp::json(
                    200,
                    json!({
                        "active": active, "queued": s.pending.contains(&id), "completed": s.finished.contains(&id),
                        "progress": if active { 0.4 } else { 0.0 }, "eta": null, "live_preview": preview,
                        "id_live_preview": if active { 1 } else { -1 }, "textinfo": if active { "Running..." } else { "Waiting..." }
                    }),
                )
            }
            ("GET", "/sdapi/v1/progress") => Resp::json(
                200,
                json!({"progress": 0.4, "eta_relative": 1.0, "state": {"job_count": 1}, "current_image": null}),
            ),
            ("POST", "/sdapi/v1/interrupt") => {
                let mut s = st.lock().unwrap();
                let current = s.current.clone();
                s.interrupts.push(current);
                s.stop = true;
                Resp::json(200, json!({}))
            }
            _ => Resp::json(404, json!({"detail": "Not Found"})),
        },
    );
    FakeA1111 { http, state, gpu }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_cancel_interrupts_only_while_the_running_job_is_ours() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(dir.path());
    config.providers = vec![ProviderConfig {
        concurrency: 4,
        timeout_secs: 30,
        ..ProviderConfig::new("sd", ProviderKind::Automatic1111, &fake.http.url())
    }];
    config.models = vec![common::model("sd", &["sd"], "512x512", 1)];
    config.queue.workers = 4;
    config.validate().unwrap();
    let app = App::new(config).unwrap();
    let _workers = common::run_workers(&app.engine);

    // Another client's job holds the GPU.
    let (st, g) = (fake.state.clone(), fake.gpu.clone());
    let foreign =
        std::thread::spawn(move || render(&st, &g, "foreign", Duration::from_millis(1500)));
    wait("the foreign job running", || {
        fake.state.lock().unwrap().current.as_deref() == Some("foreign")
    });
    let ann = common::verified_user(&app, "ann@example.com");
    let mut conn = app.db.get().unwrap();
    let t = tasks::submit(
        &mut conn,
        &app.engine.config,
        &app.engine.catalog,
        ann,
        &NewTaskInput {
            prompt: "a quiet bay".into(),
            model: "sd".into(),
            ..Default::default()
        },
    )
    .unwrap();
    drop(conn);
    app.engine.hub.wake();
    wait("ann's job waiting at the server", || {
        fake.state.lock().unwrap().pending.len() == 1
    });
    // Canceled while it waits: the foreign job is not interrupted.
    tasks::cancel(&mut app.db.get().unwrap(), ann, &t.public_id).unwrap();
    app.engine.hub.canceled(ann, &t.public_id);
    foreign.join().unwrap();
    let s = fake.state.lock().unwrap();
    assert!(
        s.finished.contains(&"foreign".to_string()),
        "the foreign job ran to its end"
    );
    drop(s);
    // When ann's job gets the GPU it is interrupted at once.
    wait("ann's job interrupted", || {
        !fake.state.lock().unwrap().interrupts.is_empty()
    });
    let s = fake.state.lock().unwrap();
    assert_eq!(s.interrupts.len(), 1);
    let interrupted = s.interrupts[0].clone().unwrap();
    assert!(interrupted.starts_with("task(novart-"), "{interrupted}");
    assert!(!s.finished.contains(&interrupted));
    drop(s);
    assert_eq!(
        tasks::get(&app.db.get().unwrap(), ann, &t.public_id)
            .unwrap()
            .task
            .status,
        TaskStatus::Canceled
    );
}

/// A running job's live preview and progress reach the task's control.
#[test]
fn a_running_jobs_preview_and_progress_arrive() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(dir.path());
    config.providers = vec![ProviderConfig::new(
        "sd",
        ProviderKind::Automatic1111,
        &fake.http.url(),
    )];
    config.models = vec![common::model("sd", &["sd"], "512x512", 1)];
    config.validate().unwrap();
    let app = App::new(config).unwrap();
    let _workers = common::run_workers(&app.engine);
    let ann = common::verified_user(&app, "ann@example.com");
    let t = tasks::submit(
        &mut app.db.get().unwrap(),
        &app.engine.config,
        &app.engine.catalog,
        ann,
        &NewTaskInput {
            prompt: "a meadow".into(),
            model: "sd".into(),
            ..Default::default()
        },
    )
    .unwrap();
    app.engine.hub.wake();
    wait("the preview", || {
        app.engine.hub.preview(&t.public_id).is_some()
    });
    let (_, image) = app.engine.hub.preview(&t.public_id).unwrap();
    assert!(image.starts_with(&[0xFF, 0xD8, 0xFF]));
    let task = || {
        tasks::get(&app.db.get().unwrap(), ann, &t.public_id)
            .unwrap()
            .task
    };
    wait("the progress written", || task().progress > 0.3);
    wait("the end", || task().status == TaskStatus::Succeeded);
    assert!(
        app.engine.hub.preview(&t.public_id).is_none(),
        "gone with the task"
    );
}
