//! Request-rate limits kept in memory: sliding windows (a log of recent
//! hits per key), exact within this process. Used per API key (requests per
//! minute) and per IP address and account on the sign-in, registration,
//! password-reset, verification-resend and redemption paths.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{AppError, AppResult};

/// The outcome of a check, for `Retry-After` and `x-ratelimit-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a hit is allowed again (allowed = false), or until the
    /// oldest hit in the window leaves it.
    pub reset_secs: u64,
}

/// Hits per key within a sliding window.
pub struct SlidingWindows<K> {
    windows: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K> Default for SlidingWindows<K> {
    fn default() -> Self {
        SlidingWindows {
            windows: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> SlidingWindows<K> {
    /// Checks `key` against `limit` hits per `window`; `record` counts this
    /// hit when it is allowed.
    pub fn check(
        &self,
        key: &K,
        limit: u32,
        window: Duration,
        now: Instant,
        record: bool,
    ) -> RateState {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 50_000 {
            map.retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let limit = limit.max(1);
        let w = map.entry(key.clone()).or_default();
        while w.front().is_some_and(|t| now.duration_since(*t) >= window) {
            w.pop_front();
        }
        while w.len() > limit as usize {
            w.pop_front(); // the limit was lowered
        }
        let reset = |w: &VecDeque<Instant>| {
            w.front()
                .map(|t| (window - now.duration_since(*t)).as_secs_f64().ceil() as u64)
                .unwrap_or(0)
                .max(1)
        };
        if w.len() >= limit as usize {
            return RateState {
                allowed: false,
                limit,
                remaining: 0,
                reset_secs: reset(w),
            };
        }
        if record {
            w.push_back(now);
        }
        RateState {
            allowed: true,
            limit,
            remaining: limit - w.len() as u32,
            reset_secs: reset(w),
        }
    }

    /// Counts a hit without checking (e.g. a failed sign-in).
    pub fn record(&self, key: &K, now: Instant) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone()).or_default().push_back(now);
    }
}

/// The account-facing actions that are rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    SignIn,
    Register,
    PasswordReset,
    ResendVerification,
    Redeem,
}

/// Per-IP and per-account limits of the account-facing actions.
#[derive(Default)]
pub struct AuthLimits {
    by_ip: SlidingWindows<(Action, String)>,
    by_account: SlidingWindows<(Action, String)>,
}

fn limited(retry_after_secs: u64) -> AppError {
    AppError::RateLimited { retry_after_secs }
}

impl AuthLimits {
    /// (per IP, per account, window) for an action; 0 = no such limit.
    fn limits(config: &Config, action: Action) -> (u32, u32, Duration) {
        let l = &config.limits;
        match action {
            Action::SignIn => (
                l.sign_in_per_ip_15min,
                l.sign_in_failures_per_account_15min,
                Duration::from_secs(900),
            ),
            Action::Register => (l.register_per_ip_hour, 0, Duration::from_secs(3600)),
            Action::PasswordReset => (
                l.reset_per_ip_hour,
                l.reset_per_account_hour,
                Duration::from_secs(3600),
            ),
            Action::ResendVerification => (
                l.resend_per_ip_hour,
                l.resend_per_account_hour,
                Duration::from_secs(3600),
            ),
            Action::Redeem => (
                l.redeem_per_ip_minute,
                l.redeem_per_account_minute,
                Duration::from_secs(60),
            ),
        }
    }

    /// Checks and counts an attempt of `action` from `ip` about `account`
    /// (an e-mail address or a user id). Sign-in counts only failures per
    /// account (`failed`), so a stranger cannot lock an owner out for long
    /// with correct-looking traffic; everything else counts every attempt.
    pub fn attempt(
        &self,
        config: &Config,
        action: Action,
        ip: Option<&str>,
        account: Option<&str>,
    ) -> AppResult<()> {
        let (per_ip, per_account, window) = Self::limits(config, action);
        let now = Instant::now();
        let account = account
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty());
        if let Some(acc) = &account {
            if per_account > 0 {
                let record = action != Action::SignIn;
                let s =
                    self.by_account
                        .check(&(action, acc.clone()), per_account, window, now, record);
                if !s.allowed {
                    tracing::warn!(?action, "rate limit per account reached");
                    return Err(limited(s.reset_secs));
                }
            }
        }
        if let (Some(ip), true) = (ip, per_ip > 0) {
            let s = self
                .by_ip
                .check(&(action, ip.to_string()), per_ip, window, now, true);
            if !s.allowed {
                tracing::warn!(?action, ip, "rate limit per IP reached");
                return Err(limited(s.reset_secs));
            }
        }
        Ok(())
    }

    /// A failed sign-in for `account`: counts against its limit.
    pub fn failed_sign_in(&self, account: &str) {
        self.by_account.record(
            &(Action::SignIn, account.trim().to_lowercase()),
            Instant::now(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide() {
        let w: SlidingWindows<i64> = SlidingWindows::default();
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        for i in 0..3 {
            let s = w.check(&1, 3, min, t0 + Duration::from_secs(i), true);
            assert!(s.allowed);
            assert_eq!(s.remaining, 2 - i as u32);
        }
        let s = w.check(&1, 3, min, t0 + Duration::from_secs(10), true);
        assert!(!s.allowed);
        assert_eq!(s.reset_secs, 50);
        assert!(
            w.check(&2, 3, min, t0 + Duration::from_secs(10), true)
                .allowed
        );
        assert!(
            w.check(&1, 3, min, t0 + Duration::from_secs(60), true)
                .allowed
        );
        assert!(
            !w.check(&1, 3, min, t0 + Duration::from_secs(60), true)
                .allowed
        );
    }
}
