//! What the HTTP adapters share: an agent with the provider's timeout and no
//! redirects, capped body reads, multipart bodies, and the mapping of
//! transport errors and status codes onto `ProviderError`.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use ureq::Agent;

use super::{Cause, ProviderError};

/// Largest upstream answer read into memory.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

pub fn agent(timeout_secs: u64) -> Agent {
    Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(timeout_secs)))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("novart/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// An HTTP answer: status and body bytes.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// "provider: HTTP 503 <start of the body>", the raw error kept for admins.
    pub fn describe(&self, provider: &str) -> String {
        format!("{provider}: HTTP {} {}", self.status, self.excerpt())
    }

    /// Fails with `Unavailable` when the status is the upstream's trouble.
    pub fn check_temporary(&self, provider: &str) -> Result<(), ProviderError> {
        if is_temporary(self.status) {
            Err(ProviderError::status(self.status, self.describe(provider)))
        } else {
            Ok(())
        }
    }

    /// The start of the body, for error messages kept for admins.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let t: String = text.chars().take(300).collect();
        t.replace('\n', " ")
    }
}

/// A health probe: a GET that must be answered quickly. Any answer but the
/// upstream's own trouble (5xx, 408, 429) shows it is up: a 404 from a
/// version without that route still answers. No answer is `Unavailable`
/// with its cause.
pub fn probe(
    name: &str,
    req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
) -> Result<(), ProviderError> {
    let a = read(name, req.call().map_err(|e| transport(name, e))?)?;
    a.check_temporary(name)
}

/// The agent for probes and other short calls.
pub fn quick() -> Agent {
    agent(5)
}

/// Turns a transport failure into `Unavailable` (failover, retry), keeping
/// what went wrong: refused, unknown host, timeout or a broken connection.
pub fn transport(name: &str, e: ureq::Error) -> ProviderError {
    ProviderError::Unavailable {
        cause: cause_of(&e),
        raw: format!("{name}: {e}"),
    }
}

fn cause_of(e: &ureq::Error) -> Cause {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => Cause::TimedOut,
        ureq::Error::HostNotFound => Cause::NoAddress,
        ureq::Error::ConnectionFailed => Cause::Refused,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => Cause::Refused,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Cause::TimedOut,
            ErrorKind::NotFound | ErrorKind::AddrNotAvailable => Cause::NoAddress,
            // The system resolver's failure has no kind of its own.
            _ if io.to_string().contains("lookup address") => Cause::NoAddress,
            _ => Cause::Broken,
        },
        _ => Cause::Broken,
    }
}

pub fn read(
    name: &str,
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<Answer, ProviderError> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| transport(name, e))?;
    Ok(Answer { status, body })
}

/// What a creator is told when the upstream refused a request (4xx other
/// than a content refusal): credentials are the operator's business.
pub fn rejection(status: u16, detail: &str) -> String {
    match status {
        401 | 403 => "The image service did not accept this studio's credentials. The operator has been told.".to_string(),
        _ if !detail.is_empty() => format!("The image service refused the request: {detail}"),
        _ => "The image service refused the request.".to_string(),
    }
}

/// 5xx, 408 and 429 are the upstream's trouble: another provider or a later
/// retry may succeed.
pub fn is_temporary(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// A multipart/form-data body.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Multipart {
        Multipart {
            boundary: format!(
                "novart{}",
                crate::domain::secrets::random_token(12).replace(['-', '_'], "x")
            ),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Multipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(
        mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Multipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// (Content-Type header, body).
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

impl Default for Multipart {
    fn default() -> Self {
        Multipart::new()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 image data, with or without a `data:` prefix.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let s = s.split_once("base64,").map(|(_, b)| b).unwrap_or(s);
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}
