//! `[storage] backend` and `[storage.s3]`: where stored images live.

use serde::{Deserialize, Serialize};

use super::errors::{err, ConfigError};

/// Where images, previews, uploads and prepared exports are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files under `storage.data_dir` (the default: no set-up needed).
    #[default]
    Local,
    /// Objects in an S3-compatible bucket (`[storage.s3]`).
    S3,
}

/// An S3-compatible bucket: AWS S3, Cloudflare R2, Backblaze B2, MinIO,
/// Garage, Ceph RGW...
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The service's address, e.g. `https://s3.eu-central-1.amazonaws.com`
    /// or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The region the signature names (`us-east-1` for most self-hosted
    /// servers; `auto` for R2).
    pub region: String,
    pub bucket: String,
    /// A key prefix inside the bucket (e.g. `novart/`), so one bucket can
    /// hold several instances.
    pub prefix: String,
    pub access_key_id: String,
    /// Better given as NOVART_STORAGE__S3__SECRET_ACCESS_KEY than in the file.
    pub secret_access_key: String,
    /// `https://endpoint/bucket/key` (most self-hosted servers) instead of
    /// `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Serve images by redirecting to a presigned URL valid for
    /// `api.signed_url_ttl_secs` instead of through the server.
    pub presign_downloads: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: true,
            presign_downloads: false,
        }
    }
}

/// The secret never reaches a log line, even through `{:?}`.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("presign_downloads", &self.presign_downloads)
            .finish()
    }
}

/// Checks `[storage.s3]` when the backend is S3 (whatever is written there
/// is ignored otherwise).
pub fn validate(backend: Backend, s3: &S3Config, encrypt_assets: bool) -> Result<(), ConfigError> {
    if backend != Backend::S3 {
        return Ok(());
    }
    let endpoint = s3.endpoint.trim();
    if endpoint.is_empty() {
        return Err(err(
            "storage.s3.endpoint",
            "must be set when storage.backend = \"s3\", e.g. https://s3.eu-central-1.amazonaws.com",
        ));
    }
    match url::Url::parse(endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            return Err(err(
                "storage.s3.endpoint",
                "must be an http:// or https:// address with a host",
            ))
        }
    }
    if s3.region.trim().is_empty() {
        return Err(err(
            "storage.s3.region",
            "must not be empty (us-east-1 fits most servers)",
        ));
    }
    let b = s3.bucket.trim();
    if b.len() < 3
        || b.len() > 63
        || !b
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
    {
        return Err(err(
            "storage.s3.bucket",
            "must be a bucket name: 3 to 63 lowercase letters, digits, dots or hyphens",
        ));
    }
    if s3.prefix.starts_with('/') || s3.prefix.contains("..") {
        return Err(err(
            "storage.s3.prefix",
            "must be a relative key prefix such as novart/ (no leading slash, no ..)",
        ));
    }
    if s3.access_key_id.trim().is_empty() {
        return Err(err(
            "storage.s3.access_key_id",
            "must be set when storage.backend = \"s3\"",
        ));
    }
    if s3.secret_access_key.trim().is_empty() {
        return Err(err(
            "storage.s3.secret_access_key",
            "must be set when storage.backend = \"s3\" (better as NOVART_STORAGE__S3__SECRET_ACCESS_KEY)",
        ));
    }
    if s3.presign_downloads && encrypt_assets {
        return Err(err(
            "storage.s3.presign_downloads",
            "cannot be used with storage.encrypt_assets: the bucket holds sealed bytes only the server can open",
        ));
    }
    Ok(())
}
