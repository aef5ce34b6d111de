//! Objects in an S3-compatible bucket. rusty-s3 signs each request (SigV4
//! in the query string, valid for a minute) and parses list answers; the
//! requests go through a ureq agent kept for the store's lifetime.

use std::io::Read;
use std::time::Duration;

use rusty_s3::actions::{DeleteObject, GetObject, HeadObject, ListObjectsV2, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use ureq::Agent;

use super::{check_key, BlobError, Listed, Store};
use crate::config::S3Config;

/// How long a signature the server makes for itself stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(60);

pub struct S3Store {
    /// None when the configured endpoint is unusable (validation refuses
    /// such a config first; this only keeps construction infallible).
    bucket: Option<Bucket>,
    creds: Credentials,
    prefix: String,
    agent: Agent,
    describe: String,
}

impl S3Store {
    pub fn new(c: &S3Config) -> S3Store {
        let style = if c.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = url::Url::parse(c.endpoint.trim()).ok().and_then(|u| {
            Bucket::new(
                u,
                style,
                c.bucket.trim().to_string(),
                c.region.trim().to_string(),
            )
            .ok()
        });
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .timeout_send_body(Some(Duration::from_secs(120)))
            .max_redirects(0)
            .build()
            .into();
        S3Store {
            bucket,
            creds: Credentials::new(c.access_key_id.trim(), c.secret_access_key.trim()),
            prefix: c.prefix.clone(),
            agent,
            describe: format!(
                "the bucket {:?} at {}{}",
                c.bucket.trim(),
                c.endpoint.trim(),
                if c.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" under {:?}", c.prefix)
                }
            ),
        }
    }

    fn bucket(&self) -> Result<&Bucket, BlobError> {
        self.bucket
            .as_ref()
            .ok_or_else(|| BlobError::Unavailable("storage.s3.endpoint is not usable".into()))
    }

    fn object(&self, key: &str) -> Result<String, BlobError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

/// A transport failure or an unexpected answer, without the URL (it holds
/// a signature) and without credentials.
fn failed(op: &str, key: &str, e: impl std::fmt::Display) -> BlobError {
    BlobError::Unavailable(format!("S3 {op} {key}: {e}"))
}

/// The error code S3 puts in an XML error body, if any.
fn code_of(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + 6;
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

fn answer(
    op: &str,
    key: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> Result<ureq::Body, BlobError> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp.into_body());
    }
    if status == 404 && op != "list" {
        return Err(BlobError::NotFound);
    }
    let mut text = String::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(4096)
        .read_to_string(&mut text);
    let code = code_of(&text).unwrap_or("no error code");
    Err(failed(op, key, format!("HTTP {status} ({code})")))
}

impl Store for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let obj = self.object(key)?;
        let url = PutObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .put(url.as_str())
            .send(bytes)
            .map_err(|e| failed("put", key, e))?;
        answer("put", key, resp).map(|_| ())
    }

    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), BlobError> {
        let obj = self.object(key)?;
        let file = std::fs::File::open(path).map_err(|e| failed("put", key, e))?;
        let url = PutObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        // Streamed with its length (S3 wants Content-Length, not chunks).
        let resp = self
            .agent
            .put(url.as_str())
            .send(file)
            .map_err(|e| failed("put", key, e))?;
        answer("put", key, resp)?;
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let obj = self.object(key)?;
        let url = GetObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| failed("get", key, e))?;
        answer("get", key, resp)?
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| failed("get", key, e))
    }

    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, BlobError> {
        let obj = self.object(key)?;
        let url = GetObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .get(url.as_str())
            .header("Range", format!("bytes={start}-{end}"))
            .call()
            .map_err(|e| failed("get", key, e))?;
        if resp.status().as_u16() == 416 {
            return Ok(Vec::new());
        }
        answer("get", key, resp)?
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| failed("get", key, e))
    }

    fn reader(&self, key: &str) -> Result<Box<dyn Read + Send>, BlobError> {
        let obj = self.object(key)?;
        let url = GetObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| failed("get", key, e))?;
        Ok(Box::new(answer("get", key, resp)?.into_reader()))
    }

    fn delete(&self, key: &str) -> Result<(), BlobError> {
        let obj = self.object(key)?;
        let url = DeleteObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .delete(url.as_str())
            .call()
            .map_err(|e| failed("delete", key, e))?;
        match answer("delete", key, resp) {
            Ok(_) | Err(BlobError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BlobError> {
        let full = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(self.bucket()?, Some(&self.creds));
            action.with_prefix(full.as_str());
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let resp = self
                .agent
                .get(url.as_str())
                .call()
                .map_err(|e| failed("list", prefix, e))?;
            let body = answer("list", prefix, resp)?
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_string()
                .map_err(|e| failed("list", prefix, e))?;
            let page = ListObjectsV2::parse_response(&body)
                .map_err(|e| failed("list", prefix, format!("unreadable answer: {e}")))?;
            for c in page.contents {
                if let Some(key) = c.key.strip_prefix(self.prefix.as_str()) {
                    let modified = c.last_modified.as_deref().and_then(|t| {
                        time::OffsetDateTime::parse(
                            t,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                        .map(|t| t.unix_timestamp())
                    });
                    out.push(Listed {
                        key: key.to_string(),
                        size: c.size.unwrap_or(0),
                        modified,
                    });
                }
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let obj = self.object(key)?;
        let url = HeadObject::new(self.bucket()?, Some(&self.creds), &obj).sign(SIGNED_FOR);
        let resp = self
            .agent
            .head(url.as_str())
            .call()
            .map_err(|e| failed("head", key, e))?;
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match answer("head", key, resp) {
            Ok(_) => Ok(Some(len.unwrap_or(0))),
            Err(BlobError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn presign_get(&self, key: &str, ttl: Duration) -> Option<String> {
        let obj = self.object(key).ok()?;
        Some(
            GetObject::new(self.bucket.as_ref()?, Some(&self.creds), &obj)
                .sign(ttl)
                .to_string(),
        )
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
