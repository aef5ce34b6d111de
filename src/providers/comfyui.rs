//! ComfyUI, driven by an operator-supplied workflow in API format. Strings in
//! the workflow may hold placeholders: `{{prompt}}`, `{{negative_prompt}}`,
//! `{{width}}`, `{{height}}`, `{{seed}}`, `{{image}}` (the uploaded reference)
//! and `{{batch_size}}`. A string that is exactly a numeric placeholder
//! becomes a number. Flow: `POST /upload/image` (references), `POST /prompt`,
//! poll `GET /history/{id}`, fetch each output with `GET /view`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{self, Multipart};
use super::{Control, GenRequest, Provider, ProviderError};
use crate::config::catalog::ProviderConfig;

pub struct ComfyUi {
    id: String,
    base: String,
    workflow: Value,
    timeout: Duration,
    agent: ureq::Agent,
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
            agent: http::agent(c.timeout_secs.min(60)),
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
            self.agent
                .post(format!("{}/upload/image", self.base))
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
        let a = self.answer(
            self.agent
                .post(format!("{}/prompt", self.base))
                .send_json(json!({ "prompt": workflow, "client_id": client_id })),
        )?;
        let raw = |a: &http::Answer| a.describe(&self.id);
        let json = a.json();
        if a.status != 200 {
            let message = json
                .as_ref()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| "the workflow was refused".into());
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

        let started = Instant::now();
        let entry = loop {
            if ctl.canceled() {
                let _ = self
                    .agent
                    .post(format!("{}/interrupt", self.base))
                    .send_empty();
                return Ok(Vec::new());
            }
            if started.elapsed() > self.timeout {
                return Err(ProviderError::Unavailable {
                    cause: super::Cause::TimedOut,
                    raw: format!("{}: no result after {:?}", self.id, self.timeout),
                });
            }
            let h = self.answer(
                self.agent
                    .get(format!("{}/history/{prompt_id}", self.base))
                    .call(),
            )?;
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
                        message: "The image service failed while running the workflow.".into(),
                        raw: format!("{}: {}", self.id, status["messages"]),
                    });
                }
                if status["completed"] == true || status.is_null() {
                    break e.clone();
                }
            }
            std::thread::sleep(Duration::from_millis(250));
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
        let mut images = Vec::new();
        for f in files {
            let url = format!("{}/view", self.base);
            let r = self
                .agent
                .get(&url)
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
