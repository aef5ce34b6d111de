//! Upstream image providers behind one trait. Called only from queue workers
//! (blocking threads), never from request handlers.

pub mod automatic1111;
pub mod builtin;
pub mod comfyui;
mod comfyui_ws;
mod http;
pub mod openai;

use crate::config::catalog::{ProviderConfig, ProviderKind};

/// What a provider is asked to make.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt: String,
    pub negative_prompt: String,
    pub width: u32,
    pub height: u32,
    pub n: u32,
    pub seed: u64,
    /// The model name to send upstream (may be empty).
    pub upstream_model: String,
    /// Reference images, already re-encoded as PNG.
    pub references: Vec<Vec<u8>>,
    /// For an edit: where the first reference may change (transparent
    /// pixels), as PNG.
    pub mask: Option<Vec<u8>>,
}

/// Why a provider call did not produce images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Could not reach it, it timed out, or it answered 5xx: another provider
    /// may succeed, and the task may be retried later.
    Unavailable { cause: Cause, raw: String },
    /// The upstream refused the content: final, no failover.
    Refused { message: String, raw: String },
    /// It answered, but not with usable images (bad request, garbage, an
    /// empty list): final for this provider.
    Failed { message: String, raw: String },
}

/// Why an upstream was unavailable, as the creator is told it: a refused
/// connection is not a slow answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing accepts connections at the address (it is down).
    Refused,
    /// The host name does not resolve.
    NoAddress,
    /// It accepted the connection but did not answer in time.
    TimedOut,
    /// The connection broke off (reset, TLS or protocol trouble).
    Broken,
    /// It answered with a status that is its own trouble (5xx, 408, 429).
    Status(u16),
    /// The model has no provider this build can drive.
    NoProvider,
    /// Novart's own image storage (a task's reference images) did not
    /// answer; nothing was sent to an image service.
    Storage,
}

impl Cause {
    /// The creator's words for it.
    pub fn describe(self) -> String {
        match self {
            Cause::Refused => {
                "The image service refused the connection: it is not running or not reachable."
                    .into()
            }
            Cause::NoAddress => "The image service's address could not be found.".into(),
            Cause::TimedOut => "The image service did not answer in time.".into(),
            Cause::Broken => "The connection to the image service broke off.".into(),
            Cause::Status(429) => "The image service is busy (HTTP 429).".into(),
            Cause::Status(status) => format!("The image service had an error (HTTP {status})."),
            Cause::NoProvider => "No image service is set up for this model.".into(),
            Cause::Storage => "The image storage is not answering right now.".into(),
        }
    }
}

impl ProviderError {
    /// Unavailable because it answered `status` (its own trouble).
    pub fn status(status: u16, raw: String) -> ProviderError {
        ProviderError::Unavailable {
            cause: Cause::Status(status),
            raw,
        }
    }

    /// A message a creator can understand.
    pub fn user_message(&self) -> String {
        match self {
            ProviderError::Unavailable { cause, .. } => cause.describe(),
            ProviderError::Refused { message, .. } => message.clone(),
            ProviderError::Failed { message, .. } => message.clone(),
        }
    }

    /// The upstream's own words, for admins.
    pub fn raw(&self) -> &str {
        match self {
            ProviderError::Unavailable { raw, .. } => raw,
            ProviderError::Refused { raw, .. } | ProviderError::Failed { raw, .. } => raw,
        }
    }
}

/// The worker's side of a running call: whether the task was canceled (stop
/// early; the result is discarded) and where progress is reported.
pub trait Control: Sync {
    fn canceled(&self) -> bool;
    /// Progress from 0.0 to 1.0, when the provider knows it.
    fn progress(&self, _fraction: f64) {}
    /// The latest preview of the image being made (JPEG or PNG), when the
    /// upstream sends them.
    fn preview(&self, _image: Vec<u8>) {}
}

/// Largest preview kept (a bigger frame is dropped).
pub const MAX_PREVIEW_BYTES: usize = 2 * 1024 * 1024;

/// A control that never cancels and ignores progress (tools and tests).
pub struct Unattended;

impl Control for Unattended {
    fn canceled(&self) -> bool {
        false
    }
}

pub trait Provider: Send + Sync {
    /// Makes `req.n` images (PNG or JPEG bytes each), blocking until done.
    fn generate(&self, req: &GenRequest, ctl: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError>;

    /// A cheap call that shows the upstream answers (ComfyUI
    /// `/system_stats`, AUTOMATIC1111 `/sdapi/v1/progress`, OpenAI
    /// `/models`). Ok for providers with nothing to ask.
    fn probe(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// Whether this build has an adapter for `kind`. The catalogue refuses the
/// others at start-up, naming the provider.
pub fn supported(kind: ProviderKind) -> bool {
    matches!(
        kind,
        ProviderKind::Builtin
            | ProviderKind::Openai
            | ProviderKind::Automatic1111
            | ProviderKind::Comfyui
    )
}

/// Builds the adapter for a configured provider (one `supported` kind).
pub fn build(config: &ProviderConfig) -> Option<Box<dyn Provider>> {
    match config.kind {
        ProviderKind::Builtin => Some(Box::new(builtin::Builtin)),
        ProviderKind::Openai => Some(Box::new(openai::OpenAi::new(config))),
        ProviderKind::Automatic1111 => Some(Box::new(automatic1111::Automatic1111::new(config))),
        ProviderKind::Comfyui => Some(Box::new(comfyui::ComfyUi::new(config))),
    }
}
