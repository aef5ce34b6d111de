//! The `[moderation]` section: content rules checked before a task is queued
//! or charged, the optional upstream moderation service, and how repeated
//! blocked attempts escalate to a ban.

use serde::{Deserialize, Serialize};

use super::{err, parse_duration, ConfigError};

/// The built-in categories of blocked content (see `domain::moderation`).
pub const CATEGORIES: [&str; 4] = [
    "identity_documents",
    "id_photos",
    "certificates",
    "seals_stamps",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderFailure {
    /// The upstream moderation service is down or answers garbage: the
    /// built-in rules alone decide.
    Allow,
    /// ... the request is refused (503) until the service is back.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationConfig {
    /// Check prompts at all.
    pub enabled: bool,
    /// Built-in categories to block (any of `CATEGORIES`).
    pub categories: Vec<String>,
    /// Extra words or phrases to block, matched like the built-in ones
    /// (case, width, accents, spacing, punctuation and leetspeak folded).
    pub blocked_terms: Vec<String>,
    /// Regular expressions matched against the normalised prompt (lower
    /// case, accents and width folded, leetspeak read as letters, every run
    /// of spaces and punctuation one space).
    pub blocked_patterns: Vec<String>,
    /// Blocked attempts within `escalation_window_minutes` that lead to a
    /// timed ban; 0 never bans automatically.
    pub escalate_after: u32,
    pub escalation_window_minutes: u32,
    /// Length of the first, second, ... automatic ban ("30m", "24h", "7d" or
    /// "permanent"); the last one repeats.
    pub ban_durations: Vec<String>,
    /// An OpenAI-compatible `/v1/moderations` endpoint (full URL); empty:
    /// no upstream service.
    pub provider_url: String,
    pub provider_api_key: String,
    pub provider_model: String,
    pub provider_timeout_secs: u32,
    /// What happens when the upstream service cannot answer.
    pub provider_failure: ProviderFailure,
    /// Blocked-attempt records (prompt hash and excerpt) are deleted after
    /// this many days.
    pub blocked_log_retention_days: u32,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            enabled: true,
            categories: CATEGORIES.iter().map(|s| s.to_string()).collect(),
            blocked_terms: Vec::new(),
            blocked_patterns: Vec::new(),
            escalate_after: 5,
            escalation_window_minutes: 60,
            ban_durations: ["1h", "24h", "7d", "permanent"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            provider_url: String::new(),
            provider_api_key: String::new(),
            provider_model: "omni-moderation-latest".into(),
            provider_timeout_secs: 10,
            provider_failure: ProviderFailure::Allow,
            blocked_log_retention_days: 365,
        }
    }
}

/// "permanent" → None; "12h" → Some(43200).
pub fn ban_length(s: &str) -> Option<Option<i64>> {
    if s.trim().eq_ignore_ascii_case("permanent") {
        Some(None)
    } else {
        parse_duration(s).map(Some)
    }
}

impl ModerationConfig {
    /// The length of the `nth` (0-based) automatic ban; None = permanent.
    pub fn ban_length(&self, nth: usize) -> Option<i64> {
        let list = &self.ban_durations;
        list.get(nth.min(list.len().saturating_sub(1)))
            .and_then(|s| ban_length(s))
            .flatten()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, c) in self.categories.iter().enumerate() {
            if !CATEGORIES.contains(&c.as_str()) {
                return Err(err(
                    &format!("moderation.categories[{i}]"),
                    format!("unknown category {c:?}; known: {}", CATEGORIES.join(", ")),
                ));
            }
        }
        for (i, t) in self.blocked_terms.iter().enumerate() {
            if !t.chars().any(char::is_alphanumeric) {
                return Err(err(
                    &format!("moderation.blocked_terms[{i}]"),
                    "a term needs at least one letter or digit",
                ));
            }
        }
        for (i, p) in self.blocked_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                return Err(err(
                    &format!("moderation.blocked_patterns[{i}]"),
                    format!("not a valid regular expression: {e}"),
                ));
            }
        }
        if self.escalate_after > 0 && self.escalation_window_minutes == 0 {
            return Err(err(
                "moderation.escalation_window_minutes",
                "must be at least 1 when escalate_after is set",
            ));
        }
        if self.blocked_log_retention_days == 0 {
            return Err(err(
                "moderation.blocked_log_retention_days",
                "must be at least 1",
            ));
        }
        if self.ban_durations.is_empty() {
            return Err(err(
                "moderation.ban_durations",
                "needs at least one length, like \"24h\"",
            ));
        }
        for (i, d) in self.ban_durations.iter().enumerate() {
            if ban_length(d).is_none() {
                return Err(err(
                    &format!("moderation.ban_durations[{i}]"),
                    format!("{d:?}: use a number and m, h or d (like 12h), or \"permanent\""),
                ));
            }
        }
        let url = self.provider_url.trim();
        if !url.is_empty() {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(err(
                    "moderation.provider_url",
                    "must be an http:// or https:// URL of a /v1/moderations endpoint",
                ));
            }
            if self.provider_model.trim().is_empty() {
                return Err(err("moderation.provider_model", "must not be empty"));
            }
            if !(1..=60).contains(&self.provider_timeout_secs) {
                return Err(err(
                    "moderation.provider_timeout_secs",
                    "must be between 1 and 60",
                ));
            }
        }
        Ok(())
    }
}
