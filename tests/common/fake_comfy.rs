//! A ComfyUI imitation with a real queue: prompts wait in line, one runs at
//! a time for a while, then its history holds its outputs. It answers the
//! routes Novart uses as ComfyUI does (server.py): `POST /prompt` (with
//! `node_errors` on 400, and on 200 when only some outputs are valid),
//! `GET /queue`, `POST /queue {"delete": [...]}`, `GET /system_stats`, `POST /interrupt` with and
//! without `prompt_id` (without: whatever runs), `GET /history/{id}` and
//! `GET /view`, and the websocket `/ws?clientId=…`: while a prompt of that
//! client runs it sends `executing`, `progress` (value/max, ten steps) and a
//! binary JPEG preview per step (type 1, format 1), then `executing` with
//! `node: null` (or `execution_interrupted`). The prompt text steers it:
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

use super::fake_http::{png, serve_ws, Fake, Req, Resp};

#[derive(Clone, Debug)]
struct Job {
    id: String,
    client_id: String,
    /// Progress steps already sent.
    steps: u32,
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
    /// Open websockets by client id.
    sockets: HashMap<String, std::sync::mpsc::Sender<tungstenite::Message>>,
    /// Frames sent on websockets.
    frames: usize,
}

impl State {
    fn send(&mut self, client: &str, m: tungstenite::Message) {
        if let Some(tx) = self.sockets.get(client) {
            if tx.send(m).is_ok() {
                self.frames += 1;
            } else {
                self.sockets.remove(client);
            }
        }
    }
}

const STEPS: u32 = 10;

/// A small JPEG, as a preview frame carries it.
fn preview_frame() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb([200, 80, 40]));
    let mut jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let mut frame = 1u32.to_be_bytes().to_vec();
    frame.extend(1u32.to_be_bytes());
    frame.extend(jpeg);
    frame
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

    /// Websocket frames sent so far.
    pub fn frames(&self) -> usize {
        self.state.lock().unwrap().frames
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
            client_id: "someone-else".into(),
            steps: 0,
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
                let due = ((started.elapsed().as_secs_f64() / job.run.as_secs_f64())
                    * f64::from(STEPS))
                .floor()
                .min(f64::from(STEPS)) as u32;
                for step in job.steps + 1..=due {
                    let progress = json!({"type": "progress", "data": {"value": step, "max": STEPS, "prompt_id": job.id, "node": "3"}});
                    s.send(
                        &job.client_id,
                        tungstenite::Message::text(progress.to_string()),
                    );
                    s.send(
                        &job.client_id,
                        tungstenite::Message::binary(preview_frame()),
                    );
                }
                if let Some((j, _)) = s.running.as_mut() {
                    j.steps = j.steps.max(due);
                }
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
                    let done = json!({"type": "executing", "data": {"node": null, "display_node": null, "prompt_id": job.id}});
                    s.send(&job.client_id, tungstenite::Message::text(done.to_string()));
                }
            }
            if s.running.is_none() {
                if let Some(next) = s.pending.pop_front() {
                    let start = json!({"type": "executing", "data": {"node": "3", "display_node": "3", "prompt_id": next.id}});
                    let client = next.client_id.clone();
                    s.running = Some((next, Instant::now()));
                    s.send(&client, tungstenite::Message::text(start.to_string()));
                }
            }
        });
    }
    let st = state.clone();
    let sockets = state.clone();
    let upgrade: super::fake_http::Upgrade = Arc::new(move |req, mut ws| {
        let client = req
            .path
            .split("clientId=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap_or("")
            .to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut s = sockets.lock().unwrap();
            s.sockets.insert(client.clone(), tx);
            let status = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": s.pending.len()}}, "sid": client}});
            let _ = ws.send(tungstenite::Message::text(status.to_string()));
        }
        while let Ok(m) = rx.recv() {
            if ws.send(m).is_err() {
                break;
            }
        }
    });
    let http = serve_ws(
        move |req| {
            if let Some(a) = &auth {
                if req.header("authorization") != Some(a.as_str()) {
                    return Resp::json(401, json!({"error": "unauthorized"}));
                }
            }
            handle(&st, req)
        },
        Some(upgrade),
    );
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
                let note = json!({"type": "execution_interrupted", "data": {"prompt_id": job.id, "node_id": "3", "node_type": "KSampler", "executed": []}});
                s.send(&job.client_id, tungstenite::Message::text(note.to_string()));
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
        client_id: v["client_id"].as_str().unwrap_or("").to_string(),
        steps: 0,
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
