//! The OpenAI images API and everything that speaks it (LocalAI, gateways,
//! another Novart). `POST {base}/images/generations` (JSON), or
//! `POST {base}/images/edits` (multipart, `image[]` parts) when the task has
//! reference images. Answers carry `data[].b64_json` or `data[].url`.

use serde_json::{json, Value};

use super::http::{self, Multipart};
use super::{Control, GenRequest, Provider, ProviderError};
use crate::config::catalog::ProviderConfig;

pub struct OpenAi {
    id: String,
    base: String,
    api_key: String,
    agent: ureq::Agent,
    quick: ureq::Agent,
}

impl OpenAi {
    pub fn new(c: &ProviderConfig) -> OpenAi {
        OpenAi {
            id: c.id.clone(),
            base: c.base_url.trim_end_matches('/').to_string(),
            api_key: c.api_key.clone(),
            agent: http::agent(c.timeout_secs),
            quick: http::quick(),
        }
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if self.api_key.is_empty() {
            req
        } else {
            req.header("Authorization", format!("Bearer {}", self.api_key))
        }
    }
}

/// Error codes and words OpenAI-style services use for a content refusal.
fn is_refusal(code: &str, message: &str) -> bool {
    let code = code.to_ascii_lowercase();
    let m = message.to_ascii_lowercase();
    code.contains("content_policy")
        || code.contains("moderation")
        || code.contains("safety")
        || m.contains("safety system")
        || m.contains("content policy")
}

impl Provider for OpenAi {
    fn probe(&self) -> Result<(), ProviderError> {
        http::probe(
            &self.id,
            self.auth(self.quick.get(format!("{}/models", self.base))),
        )
    }

    fn generate(&self, req: &GenRequest, ctl: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        let size = format!("{}x{}", req.width, req.height);
        let resp = if req.references.is_empty() {
            let mut body = json!({
                "prompt": req.prompt,
                "n": req.n,
                "size": size,
                "response_format": "b64_json",
            });
            if !req.upstream_model.is_empty() {
                body["model"] = json!(req.upstream_model);
            }
            // Extensions that compatible servers understand and others ignore.
            if !req.negative_prompt.is_empty() {
                body["negative_prompt"] = json!(req.negative_prompt);
            }
            body["seed"] = json!(req.seed);
            let url = format!("{}/images/generations", self.base);
            self.auth(self.agent.post(&url)).send_json(&body)
        } else {
            let mut form = Multipart::new()
                .text("prompt", &req.prompt)
                .text("n", &req.n.to_string())
                .text("size", &size)
                .text("response_format", "b64_json");
            if !req.upstream_model.is_empty() {
                form = form.text("model", &req.upstream_model);
            }
            for (i, r) in req.references.iter().enumerate() {
                form = form.file("image[]", &format!("reference-{i}.png"), "image/png", r);
            }
            if let Some(mask) = &req.mask {
                form = form.file("mask", "mask.png", "image/png", mask);
            }
            let (content_type, body) = form.finish();
            let url = format!("{}/images/edits", self.base);
            self.auth(self.agent.post(&url))
                .header("Content-Type", content_type)
                .send(&body[..])
        };
        let answer = http::read(&self.id, resp.map_err(|e| http::transport(&self.id, e))?)?;
        if ctl.canceled() {
            return Ok(Vec::new());
        }
        answer.check_temporary(&self.id)?;
        let raw = || answer.describe(&self.id);
        let json = answer.json();
        if answer.status != 200 {
            let err = json
                .as_ref()
                .map(|v| v["error"].clone())
                .unwrap_or(Value::Null);
            let message = err["message"].as_str().unwrap_or("").to_string();
            let code = err["code"].as_str().or(err["type"].as_str()).unwrap_or("");
            if is_refusal(code, &message) {
                return Err(ProviderError::Refused {
                    message: "The image service refused this prompt under its content policy."
                        .into(),
                    raw: raw(),
                });
            }
            let message = http::rejection(answer.status, &message);
            return Err(ProviderError::Failed {
                message,
                raw: raw(),
            });
        }
        let Some(json) = json else {
            return Err(ProviderError::Failed {
                message: "The image service sent an answer that could not be read.".into(),
                raw: raw(),
            });
        };
        let items = json["data"].as_array().cloned().unwrap_or_default();
        let mut images = Vec::with_capacity(items.len());
        for item in items {
            if ctl.canceled() {
                return Ok(Vec::new());
            }
            if let Some(b) = item["b64_json"].as_str() {
                images.push(http::unb64(b).ok_or_else(|| ProviderError::Failed {
                    message: "The image service sent an image that could not be read.".into(),
                    raw: format!("{}: b64_json is not base64", self.id),
                })?);
            } else if let Some(url) = item["url"].as_str() {
                let resp = self
                    .agent
                    .get(url)
                    .call()
                    .map_err(|e| http::transport(&self.id, e))?;
                let file = http::read(&self.id, resp)?;
                if file.status != 200 {
                    return Err(ProviderError::status(
                        file.status,
                        format!("{}: fetching {url}: HTTP {}", self.id, file.status),
                    ));
                }
                images.push(file.body);
            }
            ctl.progress(images.len() as f64 / req.n.max(1) as f64);
        }
        Ok(images)
    }
}
