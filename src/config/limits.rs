//! The `[limits]` section: request rates on the account pages, redemption
//! brute-force limits, and the defaults of new API keys.

use serde::{Deserialize, Serialize};

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
        }
    }
}
