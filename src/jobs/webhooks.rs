//! The webhook delivery job: takes due rows from the outbox, signs the body
//! per Standard Webhooks, POSTs it to the address the SSRF guard checked (a
//! pinned resolver: no second lookup), follows no redirects, reads at most
//! 1 KiB of the answer, and records every attempt.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::DefaultConnector;

use crate::config::Config;
use crate::domain::ssrf::{self, Resolve};
use crate::domain::webhooks::{self, Attempt, Delivery, Outcome};
use crate::domain::Db;
use crate::error::AppResult;

/// How often the outbox is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Deliveries sent at once per pass.
const BATCH: u32 = 16;
/// Bytes of the receiver's answer kept with the attempt.
const EXCERPT: u64 = 1024;

/// Connects to the addresses the guard checked, whatever DNS says now.
#[derive(Debug)]
struct Pinned(Vec<SocketAddr>);

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for a in self.0.iter().take(16) {
            out.push(*a);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

#[derive(Clone)]
pub struct Deliverer {
    pub db: Db,
    pub config: Config,
    /// Signs the image links inside payloads.
    pub media_secret: Vec<u8>,
    pub resolver: Arc<dyn Resolve>,
}

/// The result of one HTTP attempt.
struct Sent {
    outcome: Outcome,
    status: Option<u16>,
    error: Option<String>,
    response: Option<String>,
    latency_ms: i64,
}

impl Deliverer {
    pub fn new(db: Db, config: Config, media_secret: Vec<u8>) -> Deliverer {
        Deliverer {
            db,
            config,
            media_secret,
            resolver: Arc::new(ssrf::SystemResolver),
        }
    }

    /// One pass: sends every due delivery (up to a batch, in parallel).
    /// Returns how many were attempted.
    pub fn run_due(&self) -> AppResult<usize> {
        let now = crate::domain::now();
        let lease = now + self.config.webhooks.timeout_secs as i64 + 60;
        let due = {
            let mut conn = self.db.get()?;
            webhooks::claim_due(&mut conn, now, lease, BATCH)?
        };
        let n = due.len();
        std::thread::scope(|s| {
            for d in due {
                s.spawn(move || {
                    if let Err(e) = self.attempt(d) {
                        tracing::error!("webhook delivery failed: {e}");
                    }
                });
            }
        });
        Ok(n)
    }

    fn attempt(&self, d: Delivery) -> AppResult<()> {
        let mut conn = self.db.get()?;
        let body = webhooks::body_for(&mut conn, &self.config, &self.media_secret, &d)?;
        let secret = webhooks::secret(&mut conn, d.user_id)?;
        drop(conn);
        let sent = self.send(&d, &secret, &body);
        let now = crate::domain::now();
        let mut conn = self.db.get()?;
        let state = webhooks::record_attempt(
            &mut conn,
            &self.config,
            &d,
            &Attempt {
                status: sent.status,
                latency_ms: sent.latency_ms,
                error: sent.error.as_deref(),
                response: sent.response.as_deref(),
            },
            &sent.outcome,
            now,
        )?;
        crate::metrics::global().webhook_attempt(matches!(sent.status, Some(200..=299)));
        tracing::info!(delivery = %d.public_id, status = ?sent.status, state, "webhook attempt");
        Ok(())
    }

    fn send(&self, d: &Delivery, secret: &str, body: &str) -> Sent {
        let started = Instant::now();
        let failed = |error: String, started: Instant| Sent {
            outcome: Outcome::NoAnswer,
            status: None,
            error: Some(error),
            response: None,
            latency_ms: started.elapsed().as_millis() as i64,
        };
        // Checked again now: DNS may have changed since the URL was saved.
        let target = match ssrf::check(
            &d.url,
            self.resolver.as_ref(),
            self.config.webhooks.allow_private_targets,
        ) {
            Ok(t) => t,
            Err(e) => return failed(format!("refused: {e}"), started),
        };
        let timestamp = crate::domain::now();
        let signature = match webhooks::sign(secret, &d.public_id, timestamp, body) {
            Ok(s) => s,
            Err(e) => return failed(e.to_string(), started),
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(
                self.config.webhooks.timeout_secs as u64,
            )))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("Novart-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent =
            ureq::Agent::with_parts(config, DefaultConnector::default(), Pinned(target.addrs));
        let result = agent
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.public_id)
            .header("webhook-timestamp", &timestamp.to_string())
            .header("webhook-signature", &signature)
            .send(body);
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let mut excerpt = Vec::new();
                let _ = resp
                    .into_body()
                    .into_reader()
                    .take(EXCERPT)
                    .read_to_end(&mut excerpt);
                let error = (!(200..300).contains(&status)).then(|| match status {
                    300..=399 => format!("HTTP {status}: redirects are not followed"),
                    _ => format!("HTTP {status}"),
                });
                Sent {
                    outcome: Outcome::Answered {
                        status,
                        retry_after,
                    },
                    status: Some(status),
                    error,
                    response: Some(String::from_utf8_lossy(&excerpt).into_owned()),
                    latency_ms: started.elapsed().as_millis() as i64,
                }
            }
            Err(e) => failed(e.to_string(), started),
        }
    }
}

/// Runs the delivery job on the server's runtime.
pub fn spawn(deliverer: Deliverer) {
    rocket::tokio::spawn(async move {
        let mut tick = rocket::tokio::time::interval(POLL_EVERY);
        loop {
            tick.tick().await;
            let d = deliverer.clone();
            match rocket::tokio::task::spawn_blocking(move || d.run_due()).await {
                Ok(Err(e)) => tracing::error!("webhook pass failed: {e}"),
                Err(e) => tracing::error!("webhook task failed: {e}"),
                _ => {}
            }
        }
    });
}
