//! Plain data shared by the db and domain layers: ids, rows, enums.

use serde::Serialize;
use std::hash::Hash;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $crate::domain::values::ToSql for $name {
            fn to_sql(&self) -> $crate::domain::values::ValueRef<'_> {
                $crate::domain::values::ValueRef::Integer(self.0)
            }
        }

        impl $crate::domain::values::FromSql for $name {
            fn column_result(
                v: $crate::domain::values::ValueRef<'_>,
            ) -> $crate::domain::values::Result<Self> {
                i64::column_result(v).map($name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(UserId);
id_type!(SessionId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub password_changed_at: i64,
    pub referral_code: String,
    pub referred_by: Option<UserId>,
    #[serde(skip)]
    pub password_hash: String,
    /// The chosen language (a catalogue code), or None to follow the browser.
    pub language: Option<String>,
}

impl User {
    /// The language for texts sent to this account (e-mails), English
    /// unless the account chose another.
    pub fn lang(&self) -> crate::i18n::Lang {
        self.language
            .as_deref()
            .and_then(crate::i18n::Lang::parse)
            .filter(|l| crate::i18n::READY.contains(l))
            .unwrap_or(crate::i18n::Lang::En)
    }

    pub fn is_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    #[serde(skip)]
    pub token_hash: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }
}

/// Who is on the other end of a request, as recorded with sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

id_type!(TaskId);
id_type!(AssetId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        Some(match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "canceled" => TaskStatus::Canceled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    #[serde(skip)]
    pub id: TaskId,
    #[serde(rename = "id")]
    pub public_id: String,
    #[serde(skip)]
    pub user_id: UserId,
    pub status: TaskStatus,
    pub model: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub width: u32,
    pub height: u32,
    pub n: u32,
    pub seed: i64,
    pub webhook_url: Option<String>,
    pub cost: i64,
    pub progress: f64,
    pub attempts: u32,
    #[serde(skip)]
    pub not_before: i64,
    #[serde(skip)]
    pub lease_until: Option<i64>,
    #[serde(skip)]
    pub worker: Option<String>,
    #[serde(skip)]
    pub provider: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub error_raw: Option<String>,
    /// What the creator should know about a finished task's images (fewer
    /// or more than asked, another size), one sentence per line.
    pub notice: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// Every field, the progress by its bits (`f64` has no `Hash`). The
/// pattern names each field, so a new one cannot be left out.
impl std::hash::Hash for Task {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let Task {
            id,
            public_id,
            user_id,
            status,
            model,
            prompt,
            negative_prompt,
            width,
            height,
            n,
            seed,
            webhook_url,
            cost,
            progress,
            attempts,
            not_before,
            lease_until,
            worker,
            provider,
            error,
            error_raw,
            notice,
            created_at,
            started_at,
            finished_at,
        } = self;
        (
            id,
            public_id,
            user_id,
            status,
            model,
            prompt,
            negative_prompt,
        )
            .hash(h);
        (
            width,
            height,
            n,
            seed,
            webhook_url,
            cost,
            progress.to_bits(),
        )
            .hash(h);
        (attempts, not_before, lease_until, worker, provider, error).hash(h);
        (error_raw, notice, created_at, started_at, finished_at).hash(h);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    Result,
    Reference,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Result => "result",
            AssetKind::Reference => "reference",
        }
    }
}

#[derive(Debug, Clone, Hash, Serialize)]
pub struct Asset {
    #[serde(skip)]
    pub id: AssetId,
    #[serde(rename = "id")]
    pub public_id: String,
    #[serde(skip)]
    pub user_id: UserId,
    #[serde(skip)]
    pub task_id: Option<TaskId>,
    pub kind: AssetKind,
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub preview_path: Option<String>,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub downloads: i64,
    /// Shown in the public gallery since then.
    #[serde(skip)]
    pub published_at: Option<i64>,
    /// The share link's id, while the image is shared by link.
    #[serde(skip)]
    pub share_id: Option<String>,
}

/// The most credits one amount may move: a grant, a deduction, a code, a
/// reward, a price or a task's cost (one billion). Larger amounts are
/// refused where they enter (config, CLI, web).
pub const MAX_AMOUNT: i64 = 1_000_000_000;

/// The most credits one bucket of a wallet (paid or bonus) may hold (one
/// trillion): a change that would go past it is refused, so totals never
/// overflow. `novart doctor` flags any wallet outside 0..=MAX_BUCKET.
pub const MAX_BUCKET: i64 = 1_000_000_000_000;
