//! Upstream image providers behind one trait. Called only from queue workers
//! (blocking threads), never from request handlers.

pub mod automatic1111;
pub mod builtin;
pub mod comfyui;
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
    Unavailable { raw: String },
    /// The upstream refused the content: final, no failover.
    Refused { message: String, raw: String },
    /// It answered, but not with usable images (bad request, garbage, an
    /// empty list): final for this provider.
    Failed { message: String, raw: String },
}

impl ProviderError {
    /// A message a creator can understand.
    pub fn user_message(&self) -> String {
        match self {
            ProviderError::Unavailable { .. } => {
                "The image service did not answer in time. Please try again later.".into()
            }
            ProviderError::Refused { message, .. } => message.clone(),
            ProviderError::Failed { message, .. } => message.clone(),
        }
    }

    /// The upstream's own words, for admins.
    pub fn raw(&self) -> &str {
        match self {
            ProviderError::Unavailable { raw } => raw,
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
}

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
