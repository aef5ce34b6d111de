//! A ComfyUI imitation with a real queue: prompts wait in line, one runs at
//! a time for a while, then its history holds its outputs. It answers the
//! routes Novart uses as ComfyUI does (server.py): `POST /prompt` (with
//! `node_errors` on 400, and on 200 when only some outputs are valid),
//! `GET /queue`, `POST /queue {"delete": [...]}`, `GET /system_stats`, `POST /interrupt` with and
//! without `prompt_id` (without: whatever runs), `GET /history/{id}` and
//! `GET /view`. The prompt text steers it:
//! - "slow" runs 3 s (otherwise 200 ms);
//! - "fixed batch 3" (or 1) makes 3 (or 1) images whatever the batch size;
//! - "wrong size" makes 1024×1024 images;
//! - "bad steps" is refused with 400 and node_errors;
//! - "half valid" is accepted with node_errors and makes nothing.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fake_http::{png, serve, Fake, Req, Resp};

#[derive(Clone, Debug)]
struct Job {
    id: String,
    number: u64,
    images: u32,
    width: u32,
    height: u32,
    run: Duration,
}

#[derive(Default)]
struct State {
    number: u64,
    pending: VecDeque<Job>,
    running: Option<(Job, Instant)>,
    history: HashMap<String, Value>,
    /// (prompt_id or None for a global interrupt, what was running then).
    interrupts: Vec<(Option<String>, Option<String>)>,
    deletes: Vec<String>,
    /// Prompts that ran to the end.
    finished: Vec<String>,
}

pub struct FakeComfy {
    pub http: Fake,
    state: Arc<Mutex<State>>,
}

impl FakeComfy {
    pub fn url(&self) -> String {
        self.http.url()
    }

    /// Interrupts received: (the prompt_id asked for, the prompt running).
    pub fn interrupts(&self) -> Vec<(Option<String>, Option<String>)> {
        self.state.lock().unwrap().interrupts.clone()
    }

    pub fn deletes(&self) -> Vec<String> {
        self.state.lock().unwrap().deletes.clone()
    }

    pub fn finished(&self) -> Vec<String> {
        self.state.lock().unwrap().finished.clone()
    }

    pub fn running(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .running
            .as_ref()
            .map(|(j, _)| j.id.clone())
    }

    pub fn pending(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.pending.iter().map(|j| j.id.clone()).collect()
    }

    /// A restart: everything in memory (queue, running prompt, history) is
    /// lost, and connections are refused for `down`.
    pub fn restart(&self, down: Duration) {
        let mut s = self.state.lock().unwrap();
        s.pending.clear();
        s.running = None;
        s.history.clear();
        drop(s);
        self.http.go_down_for(down);
    }

    /// Queues a job of another client (not Novart's), as its own POST would.
    pub fn foreign_job(&self, run: Duration) -> String {
        let mut s = self.state.lock().unwrap();
        s.number += 1;
        let job = Job {
            id: format!("foreign-{}", s.number),
            number: s.number,
            images: 1,
            width: 64,
            height: 64,
            run,
        };
        let id = job.id.clone();
        s.pending.push_back(job);
        id
    }
}

/// Starts the imitation; with `auth`, every request must carry it as the
/// Authorization header (HTTP Basic in front of ComfyUI), else 401.
pub fn start(auth: Option<String>) -> FakeComfy {
    let state = Arc::new(Mutex::new(State::default()));
    // The executor: one prompt at a time, in queue order.
    {
        let state = Arc::downgrade(&state);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(20));
            let Some(state) = state.upgrade() else { return };
            let mut s = state.lock().unwrap();
            if let Some((job, started)) = s.running.clone() {
                if started.elapsed() >= job.run {
                    let outputs: Vec<Value> = (0..job.images)
                        .map(|k| json!({"filename": format!("{}_{}x{}_{k}.png", job.id, job.width, job.height), "subfolder": "", "type": "output"}))
                        .collect();
                    s.history.insert(
                        job.id.clone(),
                        json!({"prompt": [job.number, job.id, {}, {}, ["9"]], "outputs": {"9": {"images": outputs}},
                               "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {}], ["execution_success", {}]]}}),
                    );
                    s.finished.push(job.id.clone());
                    s.running = None;
                }
            }
            if s.running.is_none() {
                if let Some(next) = s.pending.pop_front() {
                    s.running = Some((next, Instant::now()));
                }
            }
        });
    }
    let st = state.clone();
    let http = serve(move |req| {
        if let Some(a) = &auth {
            if req.header("authorization") != Some(a.as_str()) {
                return Resp::json(401, json!({"error": "unauthorized"}));
            }
        }
        handle(&st, req)
    });
    FakeComfy { http, state }
}

fn handle(state: &Mutex<State>, req: &Req) -> Resp {
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("POST", "/upload/image") => Resp::json(
            200,
            json!({"name": "novart-ref.png", "subfolder": "", "type": "input"}),
        ),
        ("POST", "/prompt") => prompt(state, &req.json()),
        ("GET", "/system_stats") => Resp::json(
            200,
            json!({"system": {"os": "posix", "comfyui_version": "0.8.0", "python_version": "3.12.3", "embedded_python": false},
                   "devices": [{"name": "cpu", "type": "cpu", "index": null, "vram_total": 0, "vram_free": 0}]}),
        ),
        ("GET", "/queue") => {
            let s = state.lock().unwrap();
            let item = |j: &Job| json!([j.number, j.id, {}, {}, ["9"]]);
            Resp::json(
                200,
                json!({
                    "queue_running": s.running.iter().map(|(j, _)| item(j)).collect::<Vec<_>>(),
                    "queue_pending": s.pending.iter().map(item).collect::<Vec<_>>(),
                }),
            )
        }
        ("POST", "/queue") => {
            let v = req.json();
            let mut s = state.lock().unwrap();
            for id in v["delete"].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap_or_default().to_string();
                s.pending.retain(|j| j.id != id);
                s.deletes.push(id);
            }
            Resp::json(200, json!({}))
        }
        ("POST", "/interrupt") => {
            let asked = req.json()["prompt_id"].as_str().map(str::to_string);
            let mut s = state.lock().unwrap();
            let current = s.running.as_ref().map(|(j, _)| j.id.clone());
            s.interrupts.push((asked.clone(), current.clone()));
            // With a prompt_id only that prompt stops; without, whatever runs.
            let stop = match (&asked, &current) {
                (Some(a), Some(c)) => a == c,
                (None, Some(_)) => true,
                _ => false,
            };
            if stop {
                let (job, _) = s.running.take().unwrap();
                s.history.insert(
                    job.id.clone(),
                    json!({"prompt": [job.number, job.id, {}, {}, ["9"]], "outputs": {},
                           "status": {"status_str": "error", "completed": false,
                                      "messages": [["execution_start", {}], ["execution_interrupted", {"prompt_id": job.id, "node_id": "3", "node_type": "KSampler"}]]}}),
                );
            }
            Resp::json(200, json!({}))
        }
        ("GET", p) if p.starts_with("/history/") => {
            let id = &p["/history/".len()..];
            let s = state.lock().unwrap();
            match s.history.get(id) {
                Some(e) => Resp::json(200, json!({ id: e })),
                None => Resp::json(200, json!({})),
            }
        }
        ("GET", "/view") => {
            // The size is in the file name this imitation gave it.
            let name = req
                .path
                .split("filename=")
                .nth(1)
                .and_then(|r| r.split('&').next())
                .unwrap_or("");
            let size = name.split('_').nth(1).unwrap_or("64x64");
            let (w, h) = size.split_once('x').unwrap_or(("64", "64"));
            Resp::bytes(
                200,
                "image/png",
                png(w.parse().unwrap_or(64), h.parse().unwrap_or(64)),
            )
        }
        _ => Resp::json(404, json!({})),
    }
}

fn prompt(state: &Mutex<State>, v: &Value) -> Resp {
    let wf = &v["prompt"];
    let text = wf["6"]["inputs"]["text"].as_str().unwrap_or("").to_string();
    if text.contains("bad steps") {
        return Resp::json(
            400,
            json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
                   "node_errors": {"3": {"errors": [{"type": "value_bigger_than_max", "message": "Value bigger than max", "details": "steps: 99 bigger than max of 31", "extra_info": {}}],
                                         "dependent_outputs": ["9"], "class_type": "KSampler"}}}),
        );
    }
    let batch = wf["5"]["inputs"]["batch_size"].as_u64().unwrap_or(1) as u32;
    let (mut width, mut height) = (
        wf["5"]["inputs"]["width"].as_u64().unwrap_or(64) as u32,
        wf["5"]["inputs"]["height"].as_u64().unwrap_or(64) as u32,
    );
    if text.contains("wrong size") {
        (width, height) = (1024, 1024);
    }
    let images = if text.contains("fixed batch 3") {
        3
    } else if text.contains("fixed batch 1") {
        1
    } else if text.contains("half valid") {
        0
    } else {
        batch
    };
    let run = Duration::from_millis(if text.contains("slow") { 3000 } else { 200 });
    let mut s = state.lock().unwrap();
    s.number += 1;
    let job = Job {
        id: format!("p-{}", s.number),
        number: s.number,
        images,
        width,
        height,
        run,
    };
    let node_errors = if text.contains("half valid") {
        json!({"12": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "sampler_name: 'euler_x' not in ['euler', 'dpmpp_2m']", "extra_info": {}}],
                      "dependent_outputs": ["9"], "class_type": "KSampler"}})
    } else {
        json!({})
    };
    let answer = json!({"prompt_id": job.id, "number": job.number, "node_errors": node_errors});
    s.pending.push_back(job);
    Resp::json(200, answer)
}
