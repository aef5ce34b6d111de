//! The `[api]` and `[webhooks]` sections: the developer API's timings and
//! retention, and how webhooks are delivered.

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// How long `POST /v1/images/*` waits for the images before answering
    /// with the task id instead.
    pub sync_wait_secs: u32,
    /// How long the signed image URLs in API answers work (never past the
    /// image's own retention).
    pub signed_url_ttl_secs: u32,
    /// API request log rows, and finished webhook deliveries, are deleted
    /// after this many days.
    pub request_log_retention_days: u32,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_hours: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            sync_wait_secs: 300,
            signed_url_ttl_secs: 3600,
            request_log_retention_days: 30,
            idempotency_hours: 24,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Seconds to wait for the receiver's answer (at most 30).
    pub timeout_secs: u32,
    /// Attempts per event before the delivery is marked failed.
    pub attempts: u32,
    /// Waits before the 2nd, 3rd, ... attempt (the last one repeats); each
    /// gets up to 10% random jitter.
    pub retry_schedule_secs: Vec<u32>,
    /// Allow webhook URLs on loopback and private networks. For local
    /// development only: it lets any user make the server call internal hosts.
    pub allow_private_targets: bool,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            timeout_secs: 15,
            attempts: 8,
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18000, 36000, 50400, 72000],
            allow_private_targets: false,
        }
    }
}

impl ApiConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let api = self;
        if !(1..=3600).contains(&api.sync_wait_secs) {
            return Err(err("api.sync_wait_secs", "must be between 1 and 3600"));
        }
        if !(60..=7 * 86400).contains(&api.signed_url_ttl_secs) {
            return Err(err(
                "api.signed_url_ttl_secs",
                "must be between 60 and 604800",
            ));
        }
        if api.request_log_retention_days == 0 {
            return Err(err("api.request_log_retention_days", "must be at least 1"));
        }
        if api.idempotency_hours == 0 {
            return Err(err("api.idempotency_hours", "must be at least 1"));
        }
        Ok(())
    }
}

impl WebhooksConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let w = self;
        if !(1..=30).contains(&w.timeout_secs) {
            return Err(err("webhooks.timeout_secs", "must be between 1 and 30"));
        }
        if !(1..=50).contains(&w.attempts) {
            return Err(err("webhooks.attempts", "must be between 1 and 50"));
        }
        if w.retry_schedule_secs.is_empty() || w.retry_schedule_secs.iter().any(|&s| s > 7 * 86400)
        {
            return Err(err(
                "webhooks.retry_schedule_secs",
                "must list at least one wait, each at most 604800 seconds",
            ));
        }
        Ok(())
    }
}
