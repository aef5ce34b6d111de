//! Each HTTP provider adapter against a fake server that imitates its
//! published API (reference/external-apis.md), including error bodies, slow
//! answers and garbage; and failover between providers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::fake_http::{b64, png, serve, Fake, Resp};
use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::domain::tasks::{self, NewTaskInput, TaskView};
use novart::model::{TaskStatus, UserId};
use novart::App;
use serde_json::json;

fn provider(id: &str, kind: ProviderKind, base_url: String) -> ProviderConfig {
    ProviderConfig {
        timeout_secs: 2,
        ..ProviderConfig::new(id, kind, &base_url)
    }
}

fn model(providers: &[&str], upstream: &str, references: bool) -> ModelConfig {
    ModelConfig {
        id: "m".into(),
        name: "Upstream".into(),
        providers: providers.iter().map(|p| p.to_string()).collect(),
        upstream_model: upstream.into(),
        price: 1,
        sizes: vec!["512x512".into(), "768x512".into()],
        max_n: 4,
        reference_images: references,
        description: String::new(),
        charge_extra_images: false,
    }
}

struct World {
    _dir: tempfile::TempDir,
    app: App,
    user: UserId,
}

fn world(providers: Vec<ProviderConfig>, m: ModelConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut config = novart::Config::for_data_dir(dir.path());
    config.providers = providers;
    config.models = vec![m];
    config.validate().unwrap();
    let (app, user) = common::app_with_user(&config, "p@example.com");
    let _conn = app.db.get().unwrap();
    World {
        _dir: dir,
        app,
        user,
    }
}

impl World {
    fn run(&self, prompt: &str, n: u32, references: Vec<String>) -> TaskView {
        let mut conn = self.app.db.get().unwrap();
        let input = NewTaskInput {
            prompt: prompt.into(),
            negative_prompt: Some("blurry".into()),
            model: "m".into(),
            size: Some("768x512".into()),
            n: Some(n),
            seed: Some(1234),
            references: references.into_iter().map(Into::into).collect(),
            ..Default::default()
        };
        let t = tasks::submit(
            &mut conn,
            &self.app.engine.config,
            &self.app.engine.catalog,
            self.user,
            &input,
        )
        .unwrap();
        drop(conn);
        assert!(self.app.engine.process_one("w").unwrap());
        tasks::get(&self.app.db.get().unwrap(), self.user, &t.public_id).unwrap()
    }

    fn reference(&self) -> String {
        let mut conn = self.app.db.get().unwrap();
        novart::domain::uploads::ingest_reference(
            &mut conn,
            &self.app.config,
            self.user,
            &png(16, 16),
        )
        .unwrap()
        .public_id
    }

    fn raw_error(&self, id: &str) -> String {
        self.app
            .db
            .get()
            .unwrap()
            .query_row(
                "SELECT error_raw FROM tasks WHERE public_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    }
}

// ---- OpenAI images API ----

fn fake_openai() -> Fake {
    let port_slot = Arc::new(AtomicUsize::new(0));
    let slot = port_slot.clone();
    let fake = serve(move |req| {
        if req.path == "/files/out.png" {
            return Resp::bytes(200, "image/png", png(768, 512));
        }
        if req.header("authorization") != Some("Bearer sk-test") {
            return Resp::json(
                401,
                json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            );
        }
        let (prompt, n) = if req.path == "/v1/images/generations" {
            let v = req.json();
            (
                v["prompt"].as_str().unwrap_or("").to_string(),
                v["n"].as_u64().unwrap_or(1),
            )
        } else if req.path == "/v1/images/edits" {
            assert!(req
                .header("content-type")
                .unwrap()
                .starts_with("multipart/form-data; boundary="));
            assert!(
                req.text().contains("name=\"image[]\"; filename="),
                "edits carry image[] parts"
            );
            (String::from("edit"), 1)
        } else {
            return Resp::json(
                404,
                json!({"error": {"message": "not found", "type": "invalid_request_error", "param": null, "code": null}}),
            );
        };
        let err = |status, message: &str, code: &str| {
            Resp::json(
                status,
                json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
            )
        };
        if prompt.contains("refuse") {
            return err(
                400,
                "Your request was rejected as a result of our safety system.",
                "content_policy_violation",
            );
        }
        if prompt.contains("overloaded") {
            return err(
                503,
                "The server is overloaded or not ready yet.",
                "server_error",
            );
        }
        if prompt.contains("badsize") {
            return err(400, "Invalid value for 'size'.", "invalid_value");
        }
        if prompt.contains("html") {
            return Resp::bytes(
                200,
                "text/html",
                b"<html><body>Gateway says hello</body></html>".to_vec(),
            );
        }
        if prompt.contains("empty") {
            return Resp::json(200, json!({"created": 1_700_000_000, "data": []}));
        }
        if prompt.contains("notimage") {
            return Resp::json(
                200,
                json!({"created": 1_700_000_000, "data": [{"b64_json": b64(b"GIF89a not really"), "revised_prompt": null}]}),
            );
        }
        if prompt.contains("slow") {
            return Resp::json(200, json!({"created": 1, "data": []})).slow(Duration::from_secs(4));
        }
        if prompt.contains("byurl") {
            let url = format!(
                "http://127.0.0.1:{}/files/out.png",
                slot.load(Ordering::SeqCst)
            );
            return Resp::json(
                200,
                json!({"created": 1_700_000_000, "data": [{"url": url, "b64_json": null, "revised_prompt": null}]}),
            );
        }
        let data: Vec<_> = (0..n)
            .map(|_| json!({"b64_json": b64(&png(768, 512)), "url": null, "revised_prompt": null}))
            .collect();
        Resp::json(200, json!({"created": 1_700_000_000, "data": data}))
    });
    port_slot.store(fake.port as usize, Ordering::SeqCst);
    fake
}

fn openai_world(fake: &Fake) -> World {
    let mut p = provider("oa", ProviderKind::Openai, format!("{}/v1", fake.url()));
    p.api_key = "sk-test".into();
    world(vec![p], model(&["oa"], "gpt-image-1", true))
}

#[test]
fn openai_generations_edits_and_urls() {
    let fake = fake_openai();
    let w = openai_world(&fake);
    let v = w.run("a red fox", 2, vec![]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(v.outputs.len(), 2);
    let sent = fake.requests_to("/v1/images/generations")[0].json();
    assert_eq!(sent["model"], "gpt-image-1");
    assert_eq!(sent["prompt"], "a red fox");
    assert_eq!(sent["n"], 2);
    assert_eq!(sent["size"], "768x512");
    assert_eq!(sent["response_format"], "b64_json");
    assert_eq!(sent["negative_prompt"], "blurry");
    assert_eq!(sent["seed"], 1234);

    let r = w.reference();
    let v = w.run("edit this", 1, vec![r]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(fake.requests_to("/v1/images/edits").len(), 1);

    let v = w.run("byurl please", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(fake.requests_to("/files/out.png").len(), 1);
}

#[test]
fn openai_errors_become_readable_task_failures() {
    let fake = fake_openai();
    let w = openai_world(&fake);
    let cases = [
        ("refuse this", "refused this prompt", TaskStatus::Failed),
        ("badsize", "Invalid value for 'size'", TaskStatus::Failed),
        ("html answer", "could not be read", TaskStatus::Failed),
        ("empty list", "returned no images", TaskStatus::Failed),
        ("notimage", "not an image", TaskStatus::Failed),
        ("overloaded", "had an error (HTTP 503)", TaskStatus::Queued),
        ("slow", "did not answer", TaskStatus::Queued),
    ];
    for (prompt, message, status) in cases {
        let v = w.run(prompt, 1, vec![]);
        assert_eq!(v.task.status, status, "{prompt}: {:?}", v.task.error);
        let error = v.task.error.clone().unwrap_or_default();
        assert!(error.contains(message), "{prompt}: {error}");
        assert!(
            w.raw_error(&v.task.public_id).starts_with("oa:"),
            "{prompt}: raw error kept for admins"
        );
    }
    // A wrong key is the operator's problem, said plainly.
    let mut p = provider("oa", ProviderKind::Openai, format!("{}/v1", fake.url()));
    p.api_key = "sk-wrong".into();
    let w = world(vec![p], model(&["oa"], "", false));
    let v = w.run("a cat", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert!(v.task.error.unwrap().contains("credentials"));
    assert!(w.raw_error(&v.task.public_id).contains("invalid_api_key"));
}

// ---- AUTOMATIC1111 ----

fn fake_a1111(grid: bool) -> Fake {
    let calls = Arc::new(AtomicUsize::new(0));
    serve(move |req| {
        if req.header("authorization") != Some("Basic YWRtaW46c2VjcmV0") {
            return Resp::json(401, json!({"detail": "Not authenticated"}));
        }
        match (req.method.as_str(), req.path.split('?').next().unwrap()) {
            ("GET", "/sdapi/v1/progress") => Resp::json(
                200,
                json!({"progress": 0.5, "eta_relative": 1.0, "state": {"job_count": 1}, "current_image": null}),
            ),
            ("POST", "/sdapi/v1/interrupt") => Resp::json(200, json!({})),
            ("POST", p @ ("/sdapi/v1/txt2img" | "/sdapi/v1/img2img")) => {
                calls.fetch_add(1, Ordering::SeqCst);
                let v = req.json();
                if v["prompt"].as_str().unwrap_or("").contains("oom") {
                    return Resp::json(
                        500,
                        json!({"error": "OutOfMemoryError", "detail": "CUDA out of memory.", "body": "", "errors": ""}),
                    );
                }
                if v["prompt"].as_str().unwrap_or("").contains("invalid") {
                    return Resp::json(
                        422,
                        json!({"detail": [{"loc": ["body", "width"], "msg": "value is not a valid integer", "type": "type_error.integer"}]}),
                    );
                }
                if p.ends_with("img2img") {
                    assert!(v["init_images"][0].as_str().unwrap().len() > 20);
                    assert_eq!(v["denoising_strength"], 0.75);
                }
                let n = v["batch_size"].as_u64().unwrap_or(1);
                let w = v["width"].as_u64().unwrap() as u32;
                let h = v["height"].as_u64().unwrap() as u32;
                let mut images: Vec<String> = (0..n).map(|_| b64(&png(w, h))).collect();
                if grid && n > 1 {
                    images.insert(0, b64(&png(w * 2, h)));
                }
                let resp = json!({"images": images, "parameters": v, "info": "{\"seed\": 1234, \"infotexts\": []}"});
                Resp::json(200, resp).slow(Duration::from_millis(if v["prompt"] == "slowish" {
                    1500
                } else {
                    0
                }))
            }
            _ => Resp::json(404, json!({"detail": "Not Found"})),
        }
    })
}

fn a1111_world(fake: &Fake) -> World {
    let mut p = provider("sd", ProviderKind::Automatic1111, fake.url());
    p.username = "admin".into();
    p.password = "secret".into();
    world(
        vec![p],
        model(&["sd"], "sd_xl_base_1.0.safetensors [31e35c80fc]", true),
    )
}

#[test]
fn automatic1111_txt2img_img2img_and_errors() {
    let fake = fake_a1111(true);
    let w = a1111_world(&fake);
    let v = w.run("a castle", 2, vec![]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(v.outputs.len(), 2, "the grid is dropped");
    assert!(v.outputs.iter().all(|o| (o.width, o.height) == (768, 512)));
    let sent = fake.requests_to("/sdapi/v1/txt2img")[0].json();
    assert_eq!(sent["prompt"], "a castle");
    assert_eq!(sent["negative_prompt"], "blurry");
    assert_eq!(sent["seed"], 1234);
    assert_eq!(
        (sent["width"].as_u64(), sent["height"].as_u64()),
        (Some(768), Some(512))
    );
    assert_eq!(sent["batch_size"], 2);
    assert_eq!(
        sent["override_settings"]["sd_model_checkpoint"],
        "sd_xl_base_1.0.safetensors [31e35c80fc]"
    );

    let r = w.reference();
    let v = w.run("from a sketch", 1, vec![r]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(fake.requests_to("/sdapi/v1/img2img").len(), 1);

    // A slow render is watched through /progress while it runs.
    let v = w.run("slowish", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Succeeded);
    assert!(!fake.requests_to("/sdapi/v1/progress").is_empty());

    let v = w.run("oom please", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Queued, "a 500 is temporary");
    assert!(w
        .raw_error(&v.task.public_id)
        .contains("CUDA out of memory"));
    let v = w.run("invalid", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Failed);
}

// ---- ComfyUI ----

fn fake_comfy(fail: bool) -> Fake {
    let polls = Arc::new(AtomicUsize::new(0));
    serve(
        move |req| match (req.method.as_str(), req.path.split('?').next().unwrap()) {
            ("POST", "/upload/image") => {
                assert!(req.text().contains("name=\"image\"; filename="));
                Resp::json(
                    200,
                    json!({"name": "novart-ref.png", "subfolder": "", "type": "input"}),
                )
            }
            ("POST", "/prompt") => {
                let v = req.json();
                let wf = &v["prompt"];
                assert!(v["client_id"].as_str().unwrap().starts_with("novart-"));
                if wf["6"]["inputs"]["text"] == "broken workflow" {
                    return Resp::json(
                        400,
                        json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": ""}, "node_errors": {"3": {"errors": [{"type": "value_not_in_list"}]}}}),
                    );
                }
                assert_eq!(
                    wf["3"]["inputs"]["seed"], 1234,
                    "numeric placeholder became a number"
                );
                assert_eq!(wf["5"]["inputs"]["width"], 768);
                assert_eq!(wf["5"]["inputs"]["height"], 512);
                Resp::json(
                    200,
                    json!({"prompt_id": "p-1", "number": 3, "node_errors": {}}),
                )
            }
            ("GET", "/history/p-1") => {
                if polls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Resp::json(200, json!({}));
                }
                if fail {
                    return Resp::json(
                        200,
                        json!({"p-1": {"outputs": {}, "status": {"status_str": "error", "completed": false,
                    "messages": [["execution_error", {"exception_message": "CUDA error: out of memory"}]]}}}),
                    );
                }
                Resp::json(
                    200,
                    json!({"p-1": {"prompt": [], "outputs": {"9": {"images": [
                {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
                {"filename": "preview.png", "subfolder": "", "type": "temp"}
            ]}}, "status": {"status_str": "success", "completed": true, "messages": []}}}),
                )
            }
            ("GET", "/view") => {
                assert!(req.path.contains("filename=ComfyUI_00001_.png"));
                assert!(req.path.contains("type=output"));
                Resp::bytes(200, "image/png", png(768, 512))
            }
            _ => Resp::json(404, json!({})),
        },
    )
}

fn comfy_world(fake: &Fake, dir: &tempfile::TempDir) -> World {
    let workflow = json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20, "model": ["4", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}"}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "{{image}}"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}
    });
    let path = dir.path().join("workflow_api.json");
    std::fs::write(&path, workflow.to_string()).unwrap();
    let mut p = provider("comfy", ProviderKind::Comfyui, fake.url());
    p.workflow = path.display().to_string();
    p.timeout_secs = 10;
    world(vec![p], model(&["comfy"], "", true))
}

#[test]
fn comfyui_workflow_upload_poll_and_view() {
    let fake = fake_comfy(false);
    let dir = tempfile::tempdir().unwrap();
    let w = comfy_world(&fake, &dir);
    let r = w.reference();
    let v = w.run("a \"quoted\" lighthouse", 1, vec![r]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    assert_eq!(v.outputs.len(), 1, "temp previews are not results");
    let sent = fake.requests_to("/prompt")[0].json();
    assert_eq!(
        sent["prompt"]["6"]["inputs"]["text"],
        "a \"quoted\" lighthouse"
    );
    assert_eq!(sent["prompt"]["7"]["inputs"]["text"], "blurry");
    assert_eq!(sent["prompt"]["10"]["inputs"]["image"], "novart-ref.png");
    assert!(
        fake.requests_to("/history/p-1").len() >= 3,
        "polled until done"
    );

    let v = w.run("broken workflow", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert!(v
        .task
        .error
        .unwrap()
        .contains("Prompt outputs failed validation"));
}

#[test]
fn comfyui_execution_errors_fail_the_task() {
    let fake = fake_comfy(true);
    let dir = tempfile::tempdir().unwrap();
    let w = comfy_world(&fake, &dir);
    let v = w.run("anything", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Failed);
    assert!(v.task.error.unwrap().contains("failed while running"));
    assert!(w.raw_error(&v.task.public_id).contains("out of memory"));
}

#[test]
fn failover_to_the_next_provider_when_one_is_down() {
    // Nothing listens on this port: connection refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a1111 = fake_a1111(false);
    let mut sd = provider("sd", ProviderKind::Automatic1111, a1111.url());
    sd.username = "admin".into();
    sd.password = "secret".into();
    let down = provider(
        "down",
        ProviderKind::Openai,
        format!("http://127.0.0.1:{dead}/v1"),
    );
    let w = world(vec![down, sd], model(&["down", "sd"], "", false));
    let v = w.run("still works", 1, vec![]);
    assert_eq!(v.task.status, TaskStatus::Succeeded, "{:?}", v.task.error);
    let used: String = w
        .app
        .db
        .get()
        .unwrap()
        .query_row("SELECT provider FROM tasks", (), |r| r.get(0))
        .unwrap();
    assert_eq!(used, "sd");
}

/// A creator is told the real cause when the only provider is down: a
/// refused connection, an unknown host and a silent server are three
/// different messages, and none of them is a timeout but the last.
#[test]
fn an_unreachable_provider_is_reported_with_its_real_cause() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let cases = [
        (
            format!("http://127.0.0.1:{dead}/v1"),
            "refused the connection",
        ),
        (
            "http://no-such-host.invalid/v1".to_string(),
            "address could not be found",
        ),
        (
            format!("http://127.0.0.1:{silent_port}/v1"),
            "did not answer in time",
        ),
    ];
    for (url, words) in cases {
        let mut p = provider("oa", ProviderKind::Openai, url.clone());
        p.timeout_secs = 1;
        let w = world(vec![p], model(&["oa"], "", false));
        let v = w.run("a harbour", 1, vec![]);
        assert_eq!(v.task.status, TaskStatus::Queued, "{url}: retried later");
        let error = v.task.error.clone().unwrap_or_default();
        let raw = w.raw_error(&v.task.public_id);
        assert!(error.contains(words), "{url}: {error} ({raw})");
    }
    drop(silent);
}
