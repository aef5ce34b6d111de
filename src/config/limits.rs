//! The `[limits]` section: request rates on the account pages, redemption
//! brute-force limits, and the defaults of new API keys.

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wrong codes one account may try per hour before redeeming is paused.
    pub redeem_failures_per_account_hour: u32,
    /// Wrong codes from one IP address per hour before redeeming is paused.
    pub redeem_failures_per_ip_hour: u32,
    /// Sign-in attempts from one IP address per 15 minutes.
    pub sign_in_per_ip_15min: u32,
    /// Failed sign-ins for one account per 15 minutes.
    pub sign_in_failures_per_account_15min: u32,
    /// Registrations from one IP address per hour.
    pub register_per_ip_hour: u32,
    /// Password-reset requests from one IP address per hour.
    pub reset_per_ip_hour: u32,
    /// Password-reset requests for one e-mail address per hour.
    pub reset_per_account_hour: u32,
    /// Verification e-mails asked for from one IP address per hour.
    pub resend_per_ip_hour: u32,
    /// Verification e-mails asked for one e-mail address per hour.
    pub resend_per_account_hour: u32,
    /// Redemption attempts from one IP address per minute.
    pub redeem_per_ip_minute: u32,
    /// Redemption attempts by one account per minute.
    pub redeem_per_account_minute: u32,
    /// Default requests per minute of a new API key.
    pub key_rpm: u32,
    /// Default number of a new API key's tasks that may be queued or running
    /// at once.
    pub key_concurrency: u32,
    /// Default number of tasks a new API key may create per UTC day.
    pub key_daily_cap: u32,
    /// IPv6 clients are counted per network of this prefix length (one home
    /// or hosting customer usually gets a /64, that is 2^64 addresses).
    pub ipv6_prefix: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            redeem_failures_per_account_hour: 10,
            redeem_failures_per_ip_hour: 30,
            sign_in_per_ip_15min: 30,
            sign_in_failures_per_account_15min: 10,
            register_per_ip_hour: 10,
            reset_per_ip_hour: 10,
            reset_per_account_hour: 5,
            resend_per_ip_hour: 10,
            resend_per_account_hour: 5,
            redeem_per_ip_minute: 30,
            redeem_per_account_minute: 10,
            key_rpm: 60,
            key_concurrency: 4,
            key_daily_cap: 500,
            ipv6_prefix: 64,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = self;
        for (key, v) in [
            ("limits.sign_in_per_ip_15min", l.sign_in_per_ip_15min),
            (
                "limits.sign_in_failures_per_account_15min",
                l.sign_in_failures_per_account_15min,
            ),
            ("limits.register_per_ip_hour", l.register_per_ip_hour),
            ("limits.reset_per_ip_hour", l.reset_per_ip_hour),
            ("limits.reset_per_account_hour", l.reset_per_account_hour),
            ("limits.resend_per_ip_hour", l.resend_per_ip_hour),
            ("limits.resend_per_account_hour", l.resend_per_account_hour),
            ("limits.redeem_per_ip_minute", l.redeem_per_ip_minute),
            (
                "limits.redeem_per_account_minute",
                l.redeem_per_account_minute,
            ),
        ] {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        for (key, v) in [
            ("limits.key_rpm", l.key_rpm),
            ("limits.key_concurrency", l.key_concurrency),
            ("limits.key_daily_cap", l.key_daily_cap),
        ] {
            if !(1..=1_000_000).contains(&v) {
                return Err(err(key, "must be between 1 and 1000000"));
            }
        }
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(err("limits.ipv6_prefix", "must be between 16 and 128"));
        }
        Ok(())
    }
}
