//! Configuration: built-in defaults → `novart.toml` (or `--config` /
//! `NOVART_CONFIG`) → `NOVART_<SECTION>__<KEY>` environment variables.
//!
//! Every mistake (unknown key, wrong type, impossible value) is an error that
//! names the key; nothing is silently ignored. `Config` is built once and passed
//! around; there is no global.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub mod catalog;
mod database;
mod developer;
mod errors;
mod limits;
mod moderation;
mod net;
mod ops;
mod parse;
mod storage;

pub use database::{redacted as redacted_database_url, DatabaseConfig};
pub use developer::{ApiConfig, WebhooksConfig};
pub(crate) use errors::err;
use errors::figment_error;
pub use errors::{check_env_names, ConfigError};
pub use limits::LimitsConfig;
pub use moderation::{ban_length, ModerationConfig, ProviderFailure, CATEGORIES};
pub use net::{canonical_ip, IpNet};
pub use ops::{BackupConfig, MetricsConfig};
pub use parse::{parse_asset_key, parse_duration};
pub use storage::{Backend, S3Config};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub mail: MailConfig,
    pub legal: LegalConfig,
    pub queue: catalog::QueueConfig,
    pub billing: BillingConfig,
    pub limits: LimitsConfig,
    pub moderation: ModerationConfig,
    pub api: ApiConfig,
    pub webhooks: WebhooksConfig,
    pub backup: BackupConfig,
    pub metrics: MetricsConfig,
    /// Upstream image services (`[[providers]]`).
    pub providers: Vec<catalog::ProviderConfig>,
    /// Models offered to creators (`[[models]]`); empty: the built-in renderer.
    pub models: Vec<catalog::ModelConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    pub port: u16,
    /// The address people use to reach the studio (links in e-mails, cookie
    /// `Secure` flag). Empty: `http://<bind>:<port>`.
    pub public_url: String,
    /// Peers (IP or CIDR) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// This node's name in logs, `/metrics`, `novart stats` and the
    /// providers' view. Empty: the host name.
    pub node_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives power loss: every commit is fsynced.
    Full,
    /// Survives process crashes; the last commits may be lost on power loss.
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub synchronous: Synchronous,
    /// Generated images and their previews are deleted this long after creation.
    pub result_retention_hours: u32,
    /// Images published to the public gallery are kept this long after
    /// creation instead; 0: like every other result.
    pub public_retention_hours: u32,
    /// Uploaded reference images are deleted this long after upload.
    pub reference_retention_hours: u32,
    /// Encrypt stored images and uploads (XChaCha20-Poly1305).
    pub encrypt_assets: bool,
    /// The key: 32 random bytes, base64 (or 64 hex digits). Better given as
    /// NOVART_STORAGE__ENCRYPTION_KEY than written in the file.
    pub encryption_key: String,
    /// Largest reference image upload, in bytes.
    pub max_upload_bytes: u64,
    /// Largest reference image, in pixels (width × height), read from the
    /// file header before decoding.
    pub max_upload_pixels: u64,
    /// Uploads decoded at the same time, over all requests (each decode of
    /// a large image takes a core and up to 8 bytes per pixel).
    pub max_parallel_decodes: u32,
    /// How long an upload waits for a free decode before the request is
    /// answered 503 with Retry-After, in milliseconds.
    pub decode_wait_ms: u64,
    /// `local` (files under data_dir) or `s3` (`[storage.s3]`).
    pub backend: Backend,
    pub s3: S3Config,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Anyone may create an account at /register.
    pub open: bool,
    /// New accounts must confirm their e-mail address before signing in.
    pub require_email_verification: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session unused for this long ends.
    pub session_idle_hours: u32,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_hours: u32,
    /// How long an e-mail verification link works.
    pub verification_link_hours: u32,
    /// How long a password reset link works.
    pub reset_link_minutes: u32,
    /// bcrypt work factor for password hashes (12 or more).
    pub bcrypt_cost: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Write each message as an .eml file under `<data_dir>/outbox/`.
    Outbox,
    /// Send through the SMTP server in `mail.smtp_url`.
    Smtp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// `smtps://user:pass@host:465` or `smtp://user:pass@host:587?tls=required`.
    pub smtp_url: String,
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Bonus credits every new account starts with.
    pub signup_bonus: u32,
    /// Bonus credits paid to a referrer for each invited account (0: off).
    pub referral_reward: u32,
    /// When the reward is paid: on the invitee's first redeemed paid code, or
    /// when the invitee confirms their e-mail address.
    pub referral_trigger: ReferralTrigger,
    /// Invitees registered from one IP address that can earn rewards per day.
    pub referral_daily_ip_cap: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralTrigger {
    FirstRedeem,
    Verification,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            signup_bonus: 20,
            referral_reward: 10,
            referral_trigger: ReferralTrigger::FirstRedeem,
            referral_daily_ip_cap: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegalConfig {
    /// Who runs this instance, as named on /privacy and /terms.
    pub operator_name: String,
    /// How people reach the operator (an e-mail address or URL).
    pub contact: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1".into(),
            port: 8000,
            public_url: String::new(),
            trusted_proxies: Vec::new(),
            node_id: String::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            synchronous: Synchronous::Full,
            result_retention_hours: 48,
            public_retention_hours: 0,
            encrypt_assets: false,
            encryption_key: String::new(),
            reference_retention_hours: 24,
            max_upload_bytes: 10 * 1024 * 1024,
            max_upload_pixels: 40_000_000,
            max_parallel_decodes: 2,
            decode_wait_ms: 3000,
            backend: Backend::Local,
            s3: S3Config::default(),
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            open: true,
            require_email_verification: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_hours: 168,
            session_absolute_hours: 720,
            verification_link_hours: 48,
            reset_link_minutes: 60,
            bcrypt_cost: 12,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::Outbox,
            smtp_url: String::new(),
            from: "Novart Studio <noreply@novart.localhost>".into(),
        }
    }
}

impl Default for LegalConfig {
    fn default() -> Self {
        LegalConfig {
            operator_name: "The operator of this Novart Studio instance".into(),
            contact: String::new(),
        }
    }
}

impl Config {
    /// Loads the configuration for a process: `path` (from `--config`) wins over
    /// `NOVART_CONFIG`, which wins over `./novart.toml` if it exists; then
    /// `NOVART_<SECTION>__<KEY>` environment variables override single keys.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env_path = std::env::var_os("NOVART_CONFIG").map(PathBuf::from);
        let file = match path.map(Path::to_path_buf).or(env_path) {
            Some(p) if !p.exists() => {
                return Err(err(
                    "config",
                    format!("file {} does not exist", p.display()),
                ))
            }
            Some(p) => Some(p),
            None => Some(PathBuf::from("novart.toml")).filter(|p| p.exists()),
        };
        check_env_names(std::env::vars().map(|(k, _)| k))?;
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(
            Env::prefixed("NOVART_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Extracts and validates a configuration from any figment (tests build
    /// their own).
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(figment_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Impossible values, each reported with the key it is about.
    /// This node's id: `server.node_id`, or the host name when it is empty.
    pub fn node_id(&self) -> String {
        if !self.server.node_id.is_empty() {
            return self.server.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "novart".into())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("billing.signup_bonus", self.billing.signup_bonus),
            ("billing.referral_reward", self.billing.referral_reward),
        ] {
            if i64::from(v) > crate::model::MAX_AMOUNT {
                return Err(err(
                    key,
                    format!("must be at most {}", crate::model::MAX_AMOUNT),
                ));
            }
        }
        let s = &self.server;
        if !s.node_id.is_empty()
            && (s.node_id.len() > 64
                || !s
                    .node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
        {
            return Err(err(
                "server.node_id",
                "must be 1 to 64 letters, digits, dots, hyphens or underscores (empty: the host name)",
            ));
        }
        if s.bind.parse::<IpAddr>().is_err() {
            return Err(err(
                "server.bind",
                format!(
                    "{:?} is not an IP address (use 127.0.0.1, 0.0.0.0 or ::)",
                    s.bind
                ),
            ));
        }
        if !s.public_url.is_empty() {
            let ok = (s.public_url.starts_with("http://") || s.public_url.starts_with("https://"))
                && rocket::http::uri::Absolute::parse(&s.public_url)
                    .ok()
                    .and_then(|u| u.authority().map(|a| !a.host().is_empty()))
                    .unwrap_or(false);
            if !ok {
                return Err(err(
                    "server.public_url",
                    format!(
                        "{:?} is not an http(s) URL like https://studio.example.com",
                        s.public_url
                    ),
                ));
            }
        }
        for p in &s.trusted_proxies {
            if IpNet::parse(p).is_none() {
                return Err(err(
                    "server.trusted_proxies",
                    format!("{p:?} is not an IP address or CIDR block"),
                ));
            }
        }
        ops::validate(&self.backup, &self.metrics)?;
        let st = &self.storage;
        if st.data_dir.as_os_str().is_empty() {
            return Err(err("storage.data_dir", "must not be empty"));
        }
        if st.result_retention_hours == 0 {
            return Err(err("storage.result_retention_hours", "must be at least 1"));
        }
        if st.encrypt_assets && st.encryption_key.trim().is_empty() {
            return Err(err(
                "storage.encryption_key",
                "must be set when storage.encrypt_assets = true: 32 random bytes in base64, e.g. from `openssl rand -base64 32`",
            ));
        }
        if !st.encryption_key.trim().is_empty() && parse_asset_key(&st.encryption_key).is_none() {
            return Err(err(
                "storage.encryption_key",
                "must be 32 bytes in base64 (44 characters) or 64 hex digits",
            ));
        }
        storage::validate(st.backend, &st.s3, st.encrypt_assets)?;
        database::validate(&self.database)?;
        if self.database.is_postgres() && !self.backup.dir.as_os_str().is_empty() {
            return Err(err(
                "backup.dir",
                "scheduled backups copy a SQLite database; with database.url (PostgreSQL) leave it empty and back up with pg_dump",
            ));
        }
        if st.public_retention_hours != 0 && st.public_retention_hours < st.result_retention_hours {
            return Err(err(
                "storage.public_retention_hours",
                "must be 0 (like other results) or at least result_retention_hours",
            ));
        }
        if st.reference_retention_hours == 0 {
            return Err(err(
                "storage.reference_retention_hours",
                "must be at least 1",
            ));
        }
        if st.max_upload_bytes < 1024 || st.max_upload_bytes > 256 * 1024 * 1024 {
            return Err(err(
                "storage.max_upload_bytes",
                "must be between 1024 and 268435456",
            ));
        }
        if st.max_upload_pixels < 4096 || st.max_upload_pixels > 200_000_000 {
            return Err(err(
                "storage.max_upload_pixels",
                "must be between 4096 and 200000000",
            ));
        }
        if st.max_parallel_decodes == 0 || st.max_parallel_decodes > 256 {
            return Err(err(
                "storage.max_parallel_decodes",
                "must be between 1 and 256",
            ));
        }
        if st.decode_wait_ms > 60_000 {
            return Err(err("storage.decode_wait_ms", "must be at most 60000"));
        }
        let (providers, models) = self.catalogue();
        catalog::validate(&providers, &models, &self.queue)?;
        let a = &self.auth;
        if a.session_idle_hours == 0 {
            return Err(err("auth.session_idle_hours", "must be at least 1"));
        }
        if a.session_absolute_hours < a.session_idle_hours {
            return Err(err(
                "auth.session_absolute_hours",
                "must be at least auth.session_idle_hours",
            ));
        }
        if a.verification_link_hours == 0 {
            return Err(err("auth.verification_link_hours", "must be at least 1"));
        }
        if a.reset_link_minutes == 0 || a.reset_link_minutes > 24 * 60 {
            return Err(err("auth.reset_link_minutes", "must be between 1 and 1440"));
        }
        if !(12..=17).contains(&a.bcrypt_cost) {
            return Err(err("auth.bcrypt_cost", "must be between 12 and 17"));
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(err(
                "mail.from",
                format!(
                    "{:?} is not a mailbox like \"Novart <noreply@example.com>\"",
                    self.mail.from
                ),
            ));
        }
        if self.mail.transport == MailTransport::Smtp {
            if self.mail.smtp_url.is_empty() {
                return Err(err(
                    "mail.smtp_url",
                    "is required when mail.transport = \"smtp\"",
                ));
            }
            if let Err(e) = lettre::SmtpTransport::from_url(&self.mail.smtp_url) {
                return Err(err(
                    "mail.smtp_url",
                    format!("not a valid smtp:// or smtps:// URL: {e}"),
                ));
            }
        }
        if self.legal.operator_name.trim().is_empty() {
            return Err(err("legal.operator_name", "must not be empty"));
        }
        self.limits.validate()?;
        self.moderation.validate()?;
        self.api.validate()?;
        self.webhooks.validate()?;
        Ok(())
    }

    /// The effective catalogue: the configured providers plus the built-in
    /// one (unless an entry reuses its id), and the configured models or, if
    /// there are none, the built-in model.
    pub fn catalogue(&self) -> (Vec<catalog::ProviderConfig>, Vec<catalog::ModelConfig>) {
        let (builtin_providers, builtin_models) = catalog::default_catalogue();
        let mut providers = self.providers.clone();
        for b in builtin_providers {
            if !providers.iter().any(|p| p.id == b.id) {
                providers.push(b);
            }
        }
        let models = if self.models.is_empty() {
            builtin_models
        } else {
            self.models.clone()
        };
        (providers, models)
    }

    pub fn assets_dir(&self) -> PathBuf {
        self.storage.data_dir.join("assets")
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.server.public_url.is_empty() {
            let host = match self.server.bind.as_str() {
                "0.0.0.0" | "::" => "127.0.0.1".to_string(),
                b if b.contains(':') => format!("[{b}]"),
                b => b.to_string(),
            };
            format!("http://{}:{}", host, self.server.port)
        } else {
            self.server.public_url.trim_end_matches('/').to_string()
        }
    }

    pub fn is_https(&self) -> bool {
        self.public_url().starts_with("https://")
    }

    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.server
            .trusted_proxies
            .iter()
            .filter_map(|p| IpNet::parse(p))
            .collect()
    }

    /// Only `[database]`'s checks (a URL given on the command line).
    pub fn validate_database(&self) -> Result<(), ConfigError> {
        database::validate(&self.database)
    }

    /// The database as people know it: the SQLite file's path, or the
    /// PostgreSQL URL without its password.
    pub fn database_label(&self) -> String {
        if self.database.is_postgres() {
            database::redacted(&self.database.url)
        } else {
            self.db_path().display().to_string()
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.storage.data_dir.join("novart.db")
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.storage.data_dir.join("outbox")
    }

    /// A configuration for tests and tools: defaults with the data directory set.
    pub fn for_data_dir(dir: &Path) -> Config {
        let mut c = Config::default();
        c.storage.data_dir = dir.to_path_buf();
        c
    }
}
