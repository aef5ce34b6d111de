//! ComfyUI, driven by an operator-supplied workflow in API format. Strings in
//! the workflow may hold placeholders: `{{prompt}}`, `{{negative_prompt}}`,
//! `{{width}}`, `{{height}}`, `{{seed}}`, `{{batch_size}}`, `{{image}}` (the
//! uploaded reference) and `{{mask}}` (an edit's mask). A string that is
//! exactly a numeric placeholder becomes a number. Flow: `POST /upload/image`
//! (references), `POST /prompt`, poll `GET /history/{id}`, fetch each output
//! with `GET /view`. While it runs, the websocket (`/ws?clientId=…`, see
//! `comfyui_ws`) gives progress and previews. A cancel (or this adapter's own timeout) touches only
//! this task's prompt: `POST /queue {"delete": [id]}` while it waits, and
//! `POST /interrupt {"prompt_id": id}` only while `GET /queue` shows it
//! running. HTTP Basic credentials are sent when configured (a reverse
//! proxy in front of ComfyUI).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::comfyui_ws::{Event, Socket};
use super::http::{self, Multipart};
use super::{Control, GenRequest, Provider, ProviderError};
use crate::config::catalog::ProviderConfig;

pub struct ComfyUi {
    id: String,
    base: String,
    workflow: Value,
    timeout: Duration,
    auth: Option<String>,
    agent: ureq::Agent,
    /// Short calls (queue, interrupt) must not wait as long as a render.
    quick: ureq::Agent,
}

impl ComfyUi {
    /// The workflow file was checked when the configuration was loaded.
    pub fn new(c: &ProviderConfig) -> ComfyUi {
        let workflow = std::fs::read_to_string(&c.workflow)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        ComfyUi {
            id: c.id.clone(),
            base: c.base_url.trim_end_matches('/').to_string(),
            workflow,
            timeout: Duration::from_secs(c.timeout_secs),
            auth: (!c.username.is_empty()).then(|| http::basic_auth(&c.username, &c.password)),
            agent: http::agent(c.timeout_secs.min(60)),
            quick: http::agent(5),
        }
    }

    fn get(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.get_with(&self.agent, path)
    }

    fn get_with(
        &self,
        agent: &ureq::Agent,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let req = agent.get(format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    fn post(
        &self,
        agent: &ureq::Agent,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let req = agent.post(format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// Stops this prompt and nothing else: deleted from the queue if it
    /// still waits, interrupted if it is the one running.
    pub fn cancel(&self, prompt_id: &str) {
        let _ = self
            .post(&self.quick, "/queue")
            .send_json(json!({ "delete": [prompt_id] }));
        let queue = self
            .get_with(&self.quick, "/queue")
            .call()
            .ok()
            .and_then(|r| http::read(&self.id, r).ok())
            .and_then(|a| a.json());
        let running = queue.as_ref().is_some_and(|q| {
            q["queue_running"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|item| item[1].as_str() == Some(prompt_id))
        });
        if running {
            let _ = self
                .post(&self.quick, "/interrupt")
                .send_json(json!({ "prompt_id": prompt_id }));
        }
    }

    fn answer(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<http::Answer, ProviderError> {
        let a = http::read(&self.id, r.map_err(|e| http::transport(&self.id, e))?)?;
        a.check_temporary(&self.id)?;
        Ok(a)
    }

    fn upload(&self, bytes: &[u8], i: usize) -> Result<String, ProviderError> {
        let name = format!("novart-{}-{i}.png", crate::domain::secrets::random_token(8));
        let (ct, body) = Multipart::new()
            .file("image", &name, "image/png", bytes)
            .text("type", "input")
            .text("overwrite", "true")
            .finish();
        let a = self.answer(
            self.post(&self.agent, "/upload/image")
                .header("Content-Type", ct)
                .send(&body[..]),
        )?;
        let json = a
            .json()
            .filter(|_| a.status == 200)
            .ok_or_else(|| ProviderError::Failed {
                message: "The image service did not accept the reference image.".into(),
                raw: format!("{}: upload: HTTP {} {}", self.id, a.status, a.excerpt()),
            })?;
        let name = json["name"].as_str().unwrap_or(&name).to_string();
        Ok(match json["subfolder"].as_str() {
            Some(sub) if !sub.is_empty() => format!("{sub}/{name}"),
            _ => name,
        })
    }
}

/// Fills the placeholders of a workflow template.
pub fn fill(template: &Value, vars: &[(&str, Value)]) -> Value {
    match template {
        Value::String(s) => {
            for (k, v) in vars {
                if s == &format!("{{{{{k}}}}}") {
                    return v.clone();
                }
            }
            let mut out = s.clone();
            for (k, v) in vars {
                let text = match v {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{{{{{k}}}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect())
        }
        other => other.clone(),
    }
}

impl Provider for ComfyUi {
    fn probe(&self) -> Result<(), ProviderError> {
        http::probe(&self.id, self.get_with(&self.quick, "/system_stats"))
    }

    fn generate(&self, req: &GenRequest, ctl: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        let mut image = Value::String(String::new());
        for (i, r) in req.references.iter().enumerate().take(1) {
            image = Value::String(self.upload(r, i)?);
        }
        // An edit's mask goes to a LoadImage node whose image is {{mask}}.
        let mut mask = Value::String(String::new());
        if let Some(m) = &req.mask {
            mask = Value::String(self.upload(m, 99)?);
        }
        let vars = [
            ("prompt", json!(req.prompt)),
            ("negative_prompt", json!(req.negative_prompt)),
            ("width", json!(req.width)),
            ("height", json!(req.height)),
            ("seed", json!(req.seed)),
            ("batch_size", json!(req.n)),
            ("image", image),
            ("mask", mask),
        ];
        let workflow = fill(&self.workflow, &vars);
        let client_id = format!("novart-{}", crate::domain::secrets::random_token(12));
        // Opened before the prompt is queued, so no event is missed; without
        // it the history is polled.
        let mut socket = Socket::open(&self.base, &client_id, self.auth.as_deref());
        let a = self.answer(
            self.post(&self.agent, "/prompt")
                .send_json(json!({ "prompt": workflow, "client_id": client_id })),
        )?;
        let raw = |a: &http::Answer| a.describe(&self.id);
        let json = a.json();
        if a.status != 200 {
            let v = json.unwrap_or(Value::Null);
            let mut message = v["error"]["message"]
                .as_str()
                .unwrap_or("the workflow was refused")
                .to_string();
            if let Some(why) = node_errors(&v["node_errors"]) {
                message = format!("{message}: {why}");
            }
            return Err(ProviderError::Failed {
                message: format!(
                    "The image service could not run this studio's workflow ({message})."
                ),
                raw: raw(&a),
            });
        }
        let prompt_id = json
            .as_ref()
            .and_then(|v| v["prompt_id"].as_str().map(str::to_string))
            .ok_or_else(|| ProviderError::Failed {
                message: "The image service sent an answer that could not be read.".into(),
                raw: raw(&a),
            })?;
        // Some output nodes were refused while others run: if nothing comes
        // back, these are why.
        let refused = json.as_ref().and_then(|v| node_errors(&v["node_errors"]));

        let started = Instant::now();
        let mut next_poll = Instant::now();
        let entry = loop {
            if ctl.canceled() {
                self.cancel(&prompt_id);
                return Ok(Vec::new());
            }
            if started.elapsed() > self.timeout {
                // Nothing is left running upstream before a retry.
                self.cancel(&prompt_id);
                return Err(ProviderError::Unavailable {
                    cause: super::Cause::TimedOut,
                    raw: format!("{}: no result after {:?}", self.id, self.timeout),
                });
            }
            match socket.as_mut() {
                Some(ws) => match ws.next(&prompt_id, Duration::from_millis(250)) {
                    Event::Progress(f) => ctl.progress(f.min(0.99)),
                    Event::Preview(image) => ctl.preview(image),
                    Event::Ended => next_poll = Instant::now(),
                    Event::Closed => socket = None,
                    Event::Nothing => {}
                },
                None => std::thread::sleep(Duration::from_millis(250)),
            }
            // The history says how it ended: read when the socket says it
            // did, and every 2 s in case a frame was missed (every 250 ms
            // without a socket).
            if Instant::now() < next_poll {
                continue;
            }
            next_poll = Instant::now()
                + if socket.is_some() {
                    Duration::from_secs(2)
                } else {
                    Duration::ZERO
                };
            let h = self.answer(self.get(&format!("/history/{prompt_id}")).call())?;
            if h.status != 200 {
                return Err(ProviderError::Failed {
                    message: "The image service lost track of the task.".into(),
                    raw: raw(&h),
                });
            }
            let Some(v) = h.json() else {
                return Err(ProviderError::Failed {
                    message: "The image service sent an answer that could not be read.".into(),
                    raw: raw(&h),
                });
            };
            if let Some(e) = v.get(&prompt_id) {
                let status = &e["status"];
                if status["status_str"] == "error" {
                    return Err(ProviderError::Failed {
                        message: execution_error(&status["messages"]),
                        raw: format!("{}: {}", self.id, status["messages"]),
                    });
                }
                if status["completed"] == true || status.is_null() {
                    break e.clone();
                }
            }
        };
        let mut files = Vec::new();
        if let Some(outputs) = entry["outputs"].as_object() {
            for node in outputs.values() {
                for img in node["images"].as_array().into_iter().flatten() {
                    if img["type"].as_str().unwrap_or("output") == "output" {
                        files.push(img.clone());
                    }
                }
            }
        }
        if files.is_empty() {
            if let Some(why) = refused {
                return Err(ProviderError::Failed {
                    message: format!(
                        "The image service could not run this studio's workflow ({why})."
                    ),
                    raw: format!("{}: node_errors: {why}", self.id),
                });
            }
        }
        let mut images = Vec::new();
        for f in files {
            let r = self
                .get("/view")
                .query("filename", f["filename"].as_str().unwrap_or_default())
                .query("subfolder", f["subfolder"].as_str().unwrap_or_default())
                .query("type", f["type"].as_str().unwrap_or("output"))
                .call();
            let a = self.answer(r)?;
            if a.status != 200 {
                return Err(ProviderError::Failed {
                    message: "An image could not be fetched from the image service.".into(),
                    raw: raw(&a),
                });
            }
            images.push(a.body);
            ctl.progress(images.len() as f64 / req.n.max(1) as f64);
        }
        Ok(images)
    }
}

/// ComfyUI's `node_errors` in words: "KSampler (node 3): Value bigger than
/// max: steps 99 > 31", one clause per error; None when there are none.
fn node_errors(v: &Value) -> Option<String> {
    let mut out = Vec::new();
    for (node, e) in v.as_object().into_iter().flatten() {
        let class = e["class_type"].as_str().unwrap_or("node");
        for err in e["errors"].as_array().into_iter().flatten() {
            let message = err["message"]
                .as_str()
                .or(err["type"].as_str())
                .unwrap_or("invalid");
            let details = err["details"].as_str().unwrap_or("");
            out.push(if details.is_empty() {
                format!("{class} (node {node}): {message}")
            } else {
                format!("{class} (node {node}): {message}: {details}")
            });
        }
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// What a failed run says, from its history messages
/// (`["execution_error", {"node_type", "exception_message", …}]`).
fn execution_error(messages: &Value) -> String {
    let found = messages.as_array().into_iter().flatten().find_map(|m| {
        (m[0] == "execution_error").then(|| {
            let node = m[1]["node_type"].as_str().unwrap_or("a node");
            let why = m[1]["exception_message"].as_str().unwrap_or("").trim();
            format!("{node}: {why}")
        })
    });
    match found {
        Some(why) => format!("The image service failed while running the workflow ({why})."),
        None => "The image service failed while running the workflow.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_text_or_numbers() {
        let t = json!({"3": {"inputs": {"seed": "{{seed}}", "text": "masterpiece, {{prompt}}", "w": "{{width}}"}}});
        let out = fill(
            &t,
            &[
                ("seed", json!(42)),
                ("prompt", json!("a \"quoted\" cat")),
                ("width", json!(512)),
            ],
        );
        assert_eq!(out["3"]["inputs"]["seed"], json!(42));
        assert_eq!(out["3"]["inputs"]["w"], json!(512));
        assert_eq!(
            out["3"]["inputs"]["text"],
            json!("masterpiece, a \"quoted\" cat")
        );
    }
}
