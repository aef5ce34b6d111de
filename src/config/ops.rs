//! The `[backup]` and `[metrics]` sections: scheduled backups and the
//! Prometheus endpoint.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where scheduled backups go (a directory, ideally on another disk);
    /// empty: no scheduled backups (`novart backup PATH` still works).
    pub dir: PathBuf,
    /// Hours between scheduled backups.
    pub every_hours: u32,
    /// Scheduled backups kept; older ones are removed.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: PathBuf::new(),
            every_hours: 24,
            keep: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Bearer token for `GET /metrics` (Prometheus text format); empty: the
    /// endpoint answers 404. Better given as NOVART_METRICS__TOKEN.
    pub token: String,
}

pub(super) fn validate(backup: &BackupConfig, metrics: &MetricsConfig) -> Result<(), ConfigError> {
    if backup.every_hours == 0 {
        return Err(err("backup.every_hours", "must be at least 1"));
    }
    if backup.keep == 0 {
        return Err(err("backup.keep", "must be at least 1"));
    }
    let t = metrics.token.trim();
    if !t.is_empty() && t.len() < 16 {
        return Err(err(
            "metrics.token",
            "must be at least 16 characters (e.g. from `openssl rand -hex 16`), or empty to turn /metrics off",
        ));
    }
    Ok(())
}
