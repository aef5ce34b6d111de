//! Cross-cutting HTTP concerns: a request id on every response, one log line
//! per request, and the security headers Rocket does not send by itself.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};

use crate::App;

pub struct Http;

/// The request id, taken from a well-formed incoming `x-request-id` or made up.
#[derive(Clone)]
pub struct RequestId(pub String);

struct Started(Instant);

const CSP: &str =
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

fn incoming_id(req: &Request<'_>) -> Option<String> {
    let id = req.headers().get_one("x-request-id")?;
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| id.to_string())
}

#[rocket::async_trait]
impl Fairing for Http {
    fn info(&self) -> Info {
        Info {
            name: "request id, logging and security headers",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Started(Instant::now()));
        let id = incoming_id(req)
            .unwrap_or_else(|| format!("req_{}", crate::domain::secrets::random_token(12)));
        req.local_cache(|| RequestId(id));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let id = req.local_cache(|| RequestId(String::from("-"))).0.clone();
        let elapsed = req.local_cache(|| Started(Instant::now())).0.elapsed();
        res.set_header(Header::new("x-request-id", id.clone()));
        res.set_header(Header::new("X-Content-Type-Options", "nosniff"));
        res.set_header(Header::new("Referrer-Policy", "same-origin"));
        res.set_header(Header::new("X-Frame-Options", "DENY"));
        res.set_header(Header::new("Content-Security-Policy", CSP));
        res.set_header(Header::new("Cross-Origin-Opener-Policy", "same-origin"));
        res.set_header(Header::new(
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        ));
        let https = req
            .rocket()
            .state::<App>()
            .map(|a| a.config.is_https())
            .unwrap_or(false);
        if https {
            res.set_header(Header::new("Strict-Transport-Security", "max-age=31536000"));
        }
        if let Some(rate) = req.local_cache(|| super::caller::KeyRate(None)).0 {
            if !res.headers().contains("x-ratelimit-limit") {
                res.set_raw_header("x-ratelimit-limit", rate.limit.to_string());
                res.set_raw_header("x-ratelimit-remaining", rate.remaining.to_string());
                res.set_raw_header("x-ratelimit-reset", rate.reset_secs.to_string());
            }
        }
        let status = res.status().code;
        crate::metrics::global().request(req.uri().path().as_str(), status, elapsed);
        if let Some((user, key_prefix)) = req
            .local_cache(|| super::caller::ApiIdentity(None))
            .0
            .clone()
        {
            if let Some(app) = req.rocket().state::<App>() {
                let note = super::caller::NoteCell::of(req).take();
                let ip = req
                    .local_cache(|| super::guards::ClientIp(super::guards::client_ip(req, app)))
                    .0;
                app.request_log.record(crate::domain::reqlog::RequestRow {
                    id: 0,
                    user_id: user,
                    key_prefix,
                    method: req.method().as_str().to_string(),
                    path: req.uri().path().to_string(),
                    status,
                    latency_ms: elapsed.as_millis() as i64,
                    ip: ip.map(|i| i.to_string()),
                    summary: note.summary,
                    task_id: note.task,
                    error_code: note.error_code,
                    created_at: crate::domain::now(),
                });
            }
        }
        // The path only: query strings may carry one-time tokens.
        let path = req.uri().path();
        if status >= 500 {
            tracing::error!(request_id = %id, method = %req.method(), path = %path, status, ms = elapsed.as_millis() as u64, "request");
        } else {
            tracing::info!(request_id = %id, method = %req.method(), path = %path, status, ms = elapsed.as_millis() as u64, "request");
        }
    }
}
