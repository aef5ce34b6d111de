//! The model catalogue and the queue: `[[providers]]`, `[[models]]`, `[queue]`.
//!
//! With no `[[models]]` at all, the catalogue is the built-in renderer alone,
//! so a new instance works with no configuration.

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The deterministic renderer inside the binary (no AI model).
    Builtin,
    /// An OpenAI-compatible images API (OpenAI, LocalAI, gateways, Novart).
    Openai,
    /// AUTOMATIC1111 / Forge / SD.Next with `--api`.
    Automatic1111,
    /// ComfyUI with an API-format workflow template.
    Comfyui,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    pub kind: ProviderKind,
    /// Base URL of the upstream (for openai it ends in `/v1`).
    #[serde(default)]
    pub base_url: String,
    /// Bearer token (openai).
    #[serde(default)]
    pub api_key: String,
    /// HTTP Basic credentials (automatic1111 with --api-auth).
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// Path to an API-format workflow JSON (comfyui).
    #[serde(default)]
    pub workflow: String,
    /// Seconds one upstream call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Tasks this provider runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Among equally loaded providers of a model, the heavier one is chosen.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Providers of a lower priority are used only while every provider of
    /// a higher one (a smaller number) is full or down: "the local GPUs
    /// first, the paid API when they are full".
    #[serde(default)]
    pub priority: u32,
}

impl ProviderConfig {
    /// A provider with default timeout and concurrency and no credentials.
    pub fn new(id: &str, kind: ProviderKind, base_url: &str) -> ProviderConfig {
        ProviderConfig {
            id: id.into(),
            kind,
            base_url: base_url.into(),
            api_key: String::new(),
            username: String::new(),
            password: String::new(),
            workflow: String::new(),
            timeout_secs: default_timeout(),
            concurrency: default_concurrency(),
            weight: default_weight(),
            priority: 0,
        }
    }
}

fn default_timeout() -> u64 {
    120
}
fn default_concurrency() -> u32 {
    2
}
fn default_weight() -> u32 {
    1
}
fn default_price() -> u64 {
    1
}
fn default_max_n() -> u32 {
    4
}
fn default_sizes() -> Vec<String> {
    [
        "512x512",
        "768x768",
        "1024x1024",
        "768x512",
        "1152x768",
        "512x768",
        "768x1152",
        "1024x576",
        "1344x768",
        "576x1024",
        "768x1344",
        "1024x768",
        "768x1024",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What API clients pass as `model`.
    pub id: String,
    /// What people see in the studio.
    pub name: String,
    /// Provider ids, tried in this order (failover on connection errors and 5xx).
    pub providers: Vec<String>,
    /// The model name sent upstream (OpenAI `model`, A1111 checkpoint title).
    #[serde(default)]
    pub upstream_model: String,
    /// Credits per image.
    #[serde(default = "default_price")]
    pub price: u64,
    /// Allowed sizes as "WxH".
    #[serde(default = "default_sizes")]
    pub sizes: Vec<String>,
    /// Most images one task may ask for.
    #[serde(default = "default_max_n")]
    pub max_n: u32,
    /// Whether reference images are accepted.
    #[serde(default)]
    pub reference_images: bool,
    /// One line shown under the model's name.
    #[serde(default)]
    pub description: String,
    /// When the image service makes more images than asked, keep the extra
    /// ones and charge them at `price` (as far as the creator's credits
    /// go) instead of dropping them.
    #[serde(default)]
    pub charge_extra_images: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Tasks processed at once. 0 accepts tasks without processing them
    /// (maintenance mode).
    pub workers: u32,
    /// Seconds a task may run before it fails.
    pub task_timeout_secs: u64,
    /// Times a task is tried (a crash or a temporary upstream error counts).
    pub max_attempts: u32,
    /// Tasks of one user running at once; the rest wait their turn.
    pub per_user_concurrency: u32,
    /// Seconds a task may wait in the queue while every provider of its
    /// model is down; then it fails, refunded, saying so.
    pub max_wait_secs: u64,
    /// Seconds between health probes of each provider (a provider that is
    /// down is probed every second until it answers).
    pub probe_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            workers: 2,
            task_timeout_secs: 300,
            max_attempts: 3,
            per_user_concurrency: 2,
            max_wait_secs: 600,
            probe_secs: 15,
        }
    }
}

/// The built-in provider and model used when `[[models]]` is empty.
pub fn default_catalogue() -> (Vec<ProviderConfig>, Vec<ModelConfig>) {
    let provider = ProviderConfig::new("builtin", ProviderKind::Builtin, "");
    let model = ModelConfig {
        id: "novart-builtin".into(),
        name: "Built-in renderer".into(),
        providers: vec!["builtin".into()],
        upstream_model: String::new(),
        price: 1,
        sizes: default_sizes(),
        max_n: 4,
        reference_images: true,
        description: "Abstract art drawn from your words by Novart itself — no AI model.".into(),
        charge_extra_images: false,
    };
    (vec![provider], vec![model])
}

/// Parses "WxH" into (width, height).
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let (w, h) = (w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?);
    ((64..=4096).contains(&w) && (64..=4096).contains(&h)).then_some((w, h))
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub fn validate(
    providers: &[ProviderConfig],
    models: &[ModelConfig],
    queue: &QueueConfig,
) -> Result<(), ConfigError> {
    for (i, p) in providers.iter().enumerate() {
        let key = |k: &str| format!("providers[{i}].{k}");
        if !id_ok(&p.id) {
            return Err(err(
                &key("id"),
                "use 1-64 letters, digits, '-', '_', '.' or ':'",
            ));
        }
        if providers[..i].iter().any(|q| q.id == p.id) {
            return Err(err(&key("id"), format!("{:?} is defined twice", p.id)));
        }
        if !crate::providers::supported(p.kind) {
            return Err(err(
                &key("kind"),
                format!(
                    "provider kind {:?} is not available in this version of Novart",
                    p.kind
                ),
            ));
        }
        let needs_url = p.kind != ProviderKind::Builtin;
        if needs_url && !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            return Err(err(
                &key("base_url"),
                format!("provider {:?} needs an http(s) base_url", p.id),
            ));
        }
        if p.kind == ProviderKind::Comfyui {
            if p.workflow.is_empty() {
                return Err(err(
                    &key("workflow"),
                    "a comfyui provider needs the path of an API-format workflow JSON",
                ));
            }
            let text = std::fs::read_to_string(&p.workflow)
                .map_err(|e| err(&key("workflow"), format!("cannot read {}: {e}", p.workflow)))?;
            if !serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| v.is_object())
                .unwrap_or(false)
            {
                return Err(err(
                    &key("workflow"),
                    format!(
                        "{} is not a JSON object (export it with \"Save (API Format)\")",
                        p.workflow
                    ),
                ));
            }
            if !text.contains("{{prompt}}") {
                return Err(err(
                    &key("workflow"),
                    "the workflow has no {{prompt}} placeholder",
                ));
            }
        }
        if p.timeout_secs == 0 || p.timeout_secs > 3600 {
            return Err(err(&key("timeout_secs"), "must be between 1 and 3600"));
        }
        if p.concurrency == 0 || p.concurrency > 1000 {
            return Err(err(&key("concurrency"), "must be between 1 and 1000"));
        }
        if p.weight == 0 || p.weight > 1000 {
            return Err(err(&key("weight"), "must be between 1 and 1000"));
        }
        if p.priority > 100 {
            return Err(err(&key("priority"), "must be between 0 and 100"));
        }
    }
    for (i, m) in models.iter().enumerate() {
        let key = |k: &str| format!("models[{i}].{k}");
        if !id_ok(&m.id) {
            return Err(err(
                &key("id"),
                "use 1-64 letters, digits, '-', '_', '.' or ':'",
            ));
        }
        if models[..i].iter().any(|q| q.id == m.id) {
            return Err(err(&key("id"), format!("{:?} is defined twice", m.id)));
        }
        if m.name.trim().is_empty() {
            return Err(err(&key("name"), "must not be empty"));
        }
        if m.providers.is_empty() {
            return Err(err(&key("providers"), "name at least one provider id"));
        }
        for p in &m.providers {
            if !providers.iter().any(|q| &q.id == p) {
                return Err(err(
                    &key("providers"),
                    format!("no [[providers]] entry has id {p:?}"),
                ));
            }
        }
        if m.sizes.is_empty() {
            return Err(err(
                &key("sizes"),
                "list at least one size like \"1024x1024\"",
            ));
        }
        for s in &m.sizes {
            let Some((w, h)) = parse_size(s) else {
                return Err(err(
                    &key("sizes"),
                    format!("{s:?} is not a size like \"1024x1024\" (64 to 4096 per side)"),
                ));
            };
            // Image models work in steps of 8 pixels (a latent pixel); a
            // size off that grid is cropped or refused upstream.
            if w % 8 != 0 || h % 8 != 0 {
                let fit = |n: u32| (n + 4) / 8 * 8;
                return Err(err(
                    &key("sizes"),
                    format!(
                        "{s:?}: each side must be a multiple of 8 (the nearest is \"{}x{}\")",
                        fit(w),
                        fit(h)
                    ),
                ));
            }
        }
        if m.max_n == 0 || m.max_n > 10 {
            return Err(err(&key("max_n"), "must be between 1 and 10"));
        }
        let most = crate::model::MAX_AMOUNT as u64 / u64::from(m.max_n);
        if m.price > most {
            return Err(err(
                &key("price"),
                format!(
                    "must be at most {most} (a task may cost at most {} credits)",
                    crate::model::MAX_AMOUNT
                ),
            ));
        }
    }
    if queue.task_timeout_secs == 0 {
        return Err(err("queue.task_timeout_secs", "must be at least 1"));
    }
    if queue.max_attempts == 0 || queue.max_attempts > 20 {
        return Err(err("queue.max_attempts", "must be between 1 and 20"));
    }
    if queue.per_user_concurrency == 0 {
        return Err(err("queue.per_user_concurrency", "must be at least 1"));
    }
    if queue.max_wait_secs > 7 * 86_400 {
        return Err(err(
            "queue.max_wait_secs",
            "must be at most 604800 (a week)",
        ));
    }
    if queue.probe_secs == 0 || queue.probe_secs > 3600 {
        return Err(err("queue.probe_secs", "must be between 1 and 3600"));
    }
    if queue.workers > 256 {
        return Err(err("queue.workers", "must be at most 256"));
    }
    Ok(())
}
