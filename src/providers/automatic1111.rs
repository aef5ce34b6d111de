//! AUTOMATIC1111 / Forge / SD.Next started with `--api`:
//! `POST /sdapi/v1/txt2img`, or `/sdapi/v1/img2img` with `init_images` when
//! the task has references. The call blocks until the images are done. It
//! carries `force_task_id`, so `POST /internal/progress {"id_task"}` tells
//! whether this job waits, runs or is done (how far it is, and its live
//! preview when the server makes them); a cancel
//! sends `POST /sdapi/v1/interrupt` only while this job is the one running
//! (the interrupt has no job id). A server without `/internal/progress`
//! (before 1.6) gets the global `GET /sdapi/v1/progress` for the bar and no
//! interrupt: whose job runs cannot be known there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::http;
use super::{Control, GenRequest, Provider, ProviderError};
use crate::config::catalog::ProviderConfig;

pub struct Automatic1111 {
    id: String,
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
    /// Short calls (progress, interrupt) must not wait as long as a render.
    quick: ureq::Agent,
}

impl Automatic1111 {
    pub fn new(c: &ProviderConfig) -> Automatic1111 {
        Automatic1111 {
            id: c.id.clone(),
            base: c.base_url.trim_end_matches('/').to_string(),
            auth: (!c.username.is_empty()).then(|| http::basic_auth(&c.username, &c.password)),
            agent: http::agent(c.timeout_secs),
            quick: http::agent(5),
        }
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// This job's state from `/internal/progress`; None when the server
    /// does not have it.
    fn job_state(&self, job: &str, preview_id: i64) -> Option<JobState> {
        let url = format!("{}/internal/progress", self.base);
        let resp = self
            .with_auth(self.quick.post(&url))
            .send_json(
                json!({ "id_task": job, "id_live_preview": preview_id, "live_preview": true }),
            )
            .ok()?;
        let a = http::read(&self.id, resp).ok()?;
        let v = a.json().filter(|_| a.status == 200)?;
        v.get("active")?;
        // "data:image/jpeg;base64,…" when a newer preview than ours exists.
        let preview = v["live_preview"]
            .as_str()
            .and_then(|d| d.split_once(";base64,"))
            .and_then(|(_, b)| http::unb64(b));
        Some(JobState {
            active: v["active"] == true,
            queued: v["queued"] == true,
            progress: v["progress"].as_f64().unwrap_or(0.0),
            preview: preview.map(|p| (v["id_live_preview"].as_i64().unwrap_or(preview_id), p)),
        })
    }

    /// Follows the job until `done`: progress for the bar, and on cancel an
    /// interrupt once the job is the one running (never while another job
    /// runs: a waiting job is interrupted when its turn comes).
    fn watch(&self, job: &str, ctl: &dyn Control, done: &AtomicBool) {
        let mut interrupted = false;
        let mut exact = true;
        let mut preview_id = -1;
        while !done.load(Ordering::Relaxed) {
            let state = if exact {
                self.job_state(job, preview_id)
            } else {
                None
            };
            match state {
                Some(s) => {
                    if s.active && s.progress > 0.0 {
                        ctl.progress(s.progress.min(0.99));
                    }
                    if let Some((id, image)) = s.preview {
                        preview_id = id;
                        ctl.preview(image);
                    }
                    if ctl.canceled() && !interrupted && s.active {
                        let url = format!("{}/sdapi/v1/interrupt", self.base);
                        let _ = self.with_auth(self.quick.post(&url)).send_empty();
                        interrupted = true;
                    }
                    if ctl.canceled() && !s.active && !s.queued {
                        // Done, or never arrived: nothing to stop.
                        return;
                    }
                }
                None => {
                    if exact {
                        tracing::info!(provider = %self.id, "no /internal/progress: progress from /sdapi/v1/progress, cancels cannot interrupt");
                        exact = false;
                    }
                    let url = format!("{}/sdapi/v1/progress?skip_current_image=true", self.base);
                    if let Ok(resp) = self.with_auth(self.quick.get(&url)).call() {
                        if let Ok(a) = http::read(&self.id, resp) {
                            if let Some(p) = a.json().and_then(|v| v["progress"].as_f64()) {
                                if p > 0.0 {
                                    ctl.progress(p.min(0.99));
                                }
                            }
                        }
                    }
                }
            }
            // Checked often for a cancel, asked less often for progress.
            for _ in 0..5 {
                if done.load(Ordering::Relaxed) || (ctl.canceled() && !interrupted) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Where one job is, per `/internal/progress`.
struct JobState {
    active: bool,
    queued: bool,
    progress: f64,
    /// A newer live preview, with its id.
    preview: Option<(i64, Vec<u8>)>,
}

/// AUTOMATIC1111 paints where its mask is white; an OpenAI-style mask marks
/// that area as transparent. Converts the one into the other.
fn inpaint_mask(mask: &[u8]) -> Result<Vec<u8>, ProviderError> {
    let img = image::load_from_memory(mask).map_err(|e| ProviderError::Failed {
        message: "The mask could not be read.".into(),
        raw: e.to_string(),
    })?;
    let rgba = img.to_rgba8();
    let bw = image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        image::Luma([if rgba.get_pixel(x, y)[3] < 128 {
            255
        } else {
            0
        }])
    });
    let mut out = Vec::new();
    bw.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| ProviderError::Failed {
            message: "The mask could not be converted.".into(),
            raw: e.to_string(),
        })?;
    Ok(out)
}

impl Provider for Automatic1111 {
    fn probe(&self) -> Result<(), ProviderError> {
        let url = format!("{}/sdapi/v1/progress?skip_current_image=true", self.base);
        http::probe(&self.id, self.with_auth(self.quick.get(&url)))
    }

    fn generate(&self, req: &GenRequest, ctl: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        let mut body = json!({
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "seed": req.seed,
            "width": req.width,
            "height": req.height,
            "batch_size": req.n,
            "n_iter": 1,
            "send_images": true,
            "save_images": false,
        });
        let job = format!("task(novart-{})", crate::domain::secrets::random_token(12));
        body["force_task_id"] = json!(job);
        if !req.upstream_model.is_empty() {
            body["override_settings"] = json!({ "sd_model_checkpoint": req.upstream_model });
            body["override_settings_restore_afterwards"] = json!(true);
        }
        let endpoint = if req.references.is_empty() {
            "txt2img"
        } else {
            body["init_images"] =
                Value::Array(req.references.iter().map(|r| json!(http::b64(r))).collect());
            body["denoising_strength"] = json!(0.75);
            if let Some(mask) = &req.mask {
                body["mask"] = json!(http::b64(&inpaint_mask(mask)?));
            }
            "img2img"
        };
        let url = format!("{}/sdapi/v1/{endpoint}", self.base);
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            s.spawn(|| self.watch(&job, ctl, &done));
            let r = self.with_auth(self.agent.post(&url)).send_json(&body);
            let r = r
                .map_err(|e| http::transport(&self.id, e))
                .and_then(|resp| http::read(&self.id, resp));
            done.store(true, Ordering::Relaxed);
            r
        });
        let answer = result?;
        if ctl.canceled() {
            return Ok(Vec::new());
        }
        answer.check_temporary(&self.id)?;
        let raw = || answer.describe(&self.id);
        let json = answer.json();
        if answer.status != 200 {
            let detail = json
                .as_ref()
                .and_then(|v| {
                    v["detail"]
                        .as_str()
                        .or(v["error"].as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let message = http::rejection(answer.status, &detail);
            return Err(ProviderError::Failed {
                message,
                raw: raw(),
            });
        }
        let images = json
            .as_ref()
            .and_then(|v| v["images"].as_array().cloned())
            .ok_or_else(|| ProviderError::Failed {
                message: "The image service sent an answer that could not be read.".into(),
                raw: raw(),
            })?;
        // With "return grid" on, a batch starts with a grid: keep the last n.
        let skip = images.len().saturating_sub(req.n as usize);
        images
            .iter()
            .skip(skip)
            .map(|i| {
                i.as_str()
                    .and_then(http::unb64)
                    .ok_or_else(|| ProviderError::Failed {
                        message: "The image service sent an image that could not be read.".into(),
                        raw: format!("{}: an entry of images is not base64", self.id),
                    })
            })
            .collect()
    }
}
