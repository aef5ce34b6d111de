//! Request-rate limits: sliding windows (a log of recent hits per key). Kept
//! in memory, exact within this process: per API key (requests per minute)
//! and, on one node, per IP address and account on the sign-in,
//! registration, password-reset, verification-resend and redemption paths.
//! When several nodes share a PostgreSQL database those account-facing
//! windows are kept in it instead (`AuthLimits::shared`), so that attempts
//! spread over the nodes count together.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{db, Db};
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

    /// Takes back one hit counted at `at` (a reservation that was settled
    /// as not counting).
    pub fn release(&self, key: &K, at: Instant) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get_mut(key) {
            if let Some(i) = w.iter().rposition(|t| *t == at) {
                w.remove(i);
            }
        }
    }
}

/// The key an address is counted under: an IPv4 address itself, an IPv6
/// address by its network of `limits.ipv6_prefix` bits (one home network
/// has 2^64 addresses), written `2001:db8:1:2::/64`.
pub fn ip_key(config: &Config, ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let bits = u32::from(config.limits.ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{net}/{bits}")
        }
        _ => ip.to_string(),
    }
}

/// A sign-in attempt counted against its account before the password is
/// checked: `settle` with the outcome. A failure keeps the count; a success
/// gives it back. Dropped unsettled (an error), it keeps the count.
#[must_use]
pub struct SignInAttempt<'a> {
    limits: &'a AuthLimits,
    account: Option<Counted>,
}

/// An account's counted hit, to be given back.
enum Counted {
    Memory((Action, String), Instant),
    /// A `rate_hits` row of the shared database.
    Shared(i64),
}

impl SignInAttempt<'_> {
    pub fn settle(self, succeeded: bool) {
        match (succeeded, &self.account, &self.limits.shared) {
            (true, Some(Counted::Memory(key, at)), _) => self.limits.by_account.release(key, *at),
            (true, Some(Counted::Shared(id)), Some(db)) => {
                let given_back = db.get().and_then(|mut conn| {
                    db::write(&mut conn, |tx| db::cluster::remove_hit(tx, *id))
                });
                if let Err(e) = given_back {
                    tracing::warn!("giving back a sign-in attempt failed: {e}");
                }
            }
            _ => {}
        }
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
    /// Count in this database instead (several nodes).
    shared: Option<Db>,
}

/// Milliseconds since the epoch (the shared windows' clock: every node's).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One hit of `bucket` against `limit` per `window` in the shared database,
/// in one write transaction (so simultaneous attempts on every node are
/// checked together): the hit's row, or the seconds until one is allowed.
fn shared_hit(db: &Db, bucket: &str, limit: u32, window: Duration) -> AppResult<Result<i64, u64>> {
    let (now, window_ms) = (now_ms(), window.as_millis() as i64);
    let mut conn = db.get()?;
    db::write(&mut conn, |tx| {
        db::cluster::forget_hits(tx, bucket, now - window_ms)?;
        let (n, oldest) = db::cluster::hits(tx, bucket)?;
        if n >= i64::from(limit.max(1)) {
            let wait_ms = oldest.map_or(window_ms, |t| t + window_ms - now);
            return Ok(Err((wait_ms.max(1) as u64).div_ceil(1000)));
        }
        Ok(Ok(db::cluster::add_hit(tx, bucket, now)?))
    })
}

/// Forgets shared hits older than any window (a day); returns how many.
pub fn sweep_shared(conn: &super::Connection) -> AppResult<usize> {
    db::cluster::sweep_hits(conn, now_ms() - 86_400_000)
}

fn limited(retry_after_secs: u64) -> AppError {
    AppError::RateLimited { retry_after_secs }
}

impl AuthLimits {
    /// Limits counted in `db`, shared by every node that uses it.
    pub fn shared(db: Db) -> AuthLimits {
        AuthLimits {
            shared: Some(db),
            ..AuthLimits::default()
        }
    }

    /// Checks and counts one hit of `key` (an action and an IP network or
    /// an account) in memory or in the shared database.
    fn hit(
        &self,
        windows: &SlidingWindows<(Action, String)>,
        scope: &str,
        key: (Action, String),
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> AppResult<Result<Counted, u64>> {
        match &self.shared {
            Some(db) => {
                let bucket = format!("{:?}:{scope}:{}", key.0, key.1);
                Ok(shared_hit(db, &bucket, limit, window)?.map(Counted::Shared))
            }
            None => {
                let s = windows.check(&key, limit, window, now, true);
                if s.allowed {
                    Ok(Ok(Counted::Memory(key, now)))
                } else {
                    Ok(Err(s.reset_secs))
                }
            }
        }
    }

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
    /// (an e-mail address or a user id). Sign-in goes through
    /// `sign_in_attempt` instead.
    pub fn attempt(
        &self,
        config: &Config,
        action: Action,
        ip: Option<&str>,
        account: Option<&str>,
    ) -> AppResult<()> {
        self.count(config, action, ip, account).map(|_| ())
    }

    /// Reserves a sign-in attempt before the password is checked: the
    /// per-IP count and the account's count of failures both take it now, so
    /// that N guesses sent at the same moment are checked against the limit
    /// together; `SignInAttempt::settle` gives the account's count back when
    /// the password was right (a stranger cannot lock an owner out for long
    /// with correct-looking traffic).
    pub fn sign_in_attempt(
        &self,
        config: &Config,
        ip: Option<&str>,
        account: &str,
    ) -> AppResult<SignInAttempt<'_>> {
        let at = self.count(config, Action::SignIn, ip, Some(account))?;
        Ok(SignInAttempt {
            limits: self,
            account: at,
        })
    }

    /// Checks and counts; returns the account's key and time when an
    /// account count was taken.
    fn count(
        &self,
        config: &Config,
        action: Action,
        ip: Option<&str>,
        account: Option<&str>,
    ) -> AppResult<Option<Counted>> {
        let (per_ip, per_account, window) = Self::limits(config, action);
        let now = Instant::now();
        if let (Some(ip), true) = (ip, per_ip > 0) {
            let key = (action, ip_key(config, ip));
            if let Err(wait) = self.hit(&self.by_ip, "ip", key, per_ip, window, now)? {
                tracing::warn!(?action, ip, "rate limit per IP reached");
                return Err(limited(wait));
            }
        }
        let account = account
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty());
        match account {
            Some(acc) if per_account > 0 => {
                let key = (action, acc);
                match self.hit(&self.by_account, "account", key, per_account, window, now)? {
                    Ok(counted) => Ok(Some(counted)),
                    Err(wait) => {
                        tracing::warn!(?action, "rate limit per account reached");
                        Err(limited(wait))
                    }
                }
            }
            _ => Ok(None),
        }
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

    fn config(prefix: u8) -> Config {
        let mut c = Config::for_data_dir(std::path::Path::new("/tmp/unused"));
        c.limits.ipv6_prefix = prefix;
        c
    }

    #[test]
    fn ipv6_addresses_count_by_their_network() {
        let c = config(64);
        assert_eq!(ip_key(&c, "2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            ip_key(&c, "2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(ip_key(&c, "2001:db8:1:3::1"), ip_key(&c, "2001:db8:1:2::1"));
        assert_eq!(ip_key(&c, "203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_key(&config(48), "2001:db8:1:2::1"), "2001:db8:1::/48");
        assert_eq!(ip_key(&config(128), "2001:db8::1"), "2001:db8::1/128");
    }

    #[test]
    fn simultaneous_sign_in_guesses_are_checked_against_the_limit_together() {
        let mut c = config(64);
        c.limits.sign_in_failures_per_account_15min = 10;
        c.limits.sign_in_per_ip_15min = 1000;
        let limits = AuthLimits::default();
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(79);
        std::thread::scope(|s| {
            for i in 0..79 {
                let (limits, c, admitted, barrier) = (&limits, &c, &admitted, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let ip = format!("198.51.100.{i}");
                    if let Ok(a) = limits.sign_in_attempt(c, Some(&ip), "owner@example.com") {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // The password check takes a while; all are in flight.
                        std::thread::sleep(Duration::from_millis(50));
                        a.settle(false);
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 10);
        // A right password gives its reservation back.
        let limits = AuthLimits::default();
        for _ in 0..30 {
            limits
                .sign_in_attempt(&c, Some("198.51.100.1"), "owner@example.com")
                .unwrap()
                .settle(true);
        }
        assert!(limits
            .sign_in_attempt(&c, None, "owner@example.com")
            .is_ok());
    }

    #[test]
    fn one_ipv6_network_shares_its_sign_in_limit() {
        let mut c = config(64);
        c.limits.sign_in_per_ip_15min = 5;
        let limits = AuthLimits::default();
        for i in 0..5 {
            let ip = format!("2001:db8:7:7::{i:x}");
            limits
                .sign_in_attempt(&c, Some(&ip), &format!("a{i}@example.com"))
                .unwrap()
                .settle(false);
        }
        assert!(limits
            .sign_in_attempt(&c, Some("2001:db8:7:7:dead:beef::1"), "x@example.com")
            .is_err());
        assert!(limits
            .sign_in_attempt(&c, Some("2001:db8:7:8::1"), "x@example.com")
            .is_ok());
    }
}
