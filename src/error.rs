//! One error type for the whole application. `web::respond` turns it into the
//! JSON error envelope (API) or an HTML page (browsers).

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input from the user; `field` names the form field or JSON parameter.
    #[error("{message}")]
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    #[error("authentication required")]
    Unauthenticated,
    /// A credential was presented and refused (401), with the reason.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// Not enough credits (402).
    #[error("{0}")]
    InsufficientBalance(String),
    /// The request or an upload is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    #[error("{}", wait_message(*retry_after_secs))]
    RateLimited { retry_after_secs: u64 },
    /// A per-key quota (daily cap, concurrency) is used up (429).
    #[error("{message}")]
    Quota {
        message: String,
        code: &'static str,
        limit: u64,
        reset_secs: u64,
    },
    /// The account is suspended (403); the message gives the reason and the
    /// end.
    #[error("{0}")]
    Banned(String),
    /// The content rules refused the prompt (422); nothing was charged.
    #[error("{0}")]
    ContentBlocked(String),
    /// A service this request needs is down for now (503).
    #[error("{0}")]
    Unavailable(String),
    /// The server is at its limit for this kind of work (image decoding):
    /// 503 with Retry-After; nothing was written.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// A failure the user cannot fix. The message is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

/// "Too many attempts. Please wait 3 minutes and try again."
pub fn wait_message(secs: u64) -> String {
    let wait = if secs < 90 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        let m = secs.div_ceil(60);
        format!("{m} minutes")
    };
    format!("Too many attempts. Please wait {wait} and try again.")
}

impl AppError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: Some(field),
            message: message.into(),
        }
    }

    pub fn internal(e: impl fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::Invalid { .. } => 400,
            AppError::Unauthenticated | AppError::Unauthorized(_) => 401,
            AppError::InsufficientBalance(_) => 402,
            AppError::Forbidden(_) | AppError::Banned(_) => 403,
            AppError::ContentBlocked(_) => 422,
            AppError::Unavailable(_) | AppError::Busy { .. } => 503,
            AppError::NotFound => 404,
            AppError::Conflict(_) => 409,
            AppError::TooLarge(_) => 413,
            AppError::RateLimited { .. } | AppError::Quota { .. } => 429,
            AppError::Internal(_) => 500,
        }
    }

    /// The envelope's `type` and `code`.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            AppError::Invalid { .. } => ("invalid_request_error", "invalid_input"),
            AppError::Unauthenticated => ("authentication_error", "unauthenticated"),
            AppError::Unauthorized(_) => ("authentication_error", "invalid_api_key"),
            AppError::InsufficientBalance(_) => ("insufficient_balance", "insufficient_balance"),
            AppError::Forbidden(_) => ("permission_error", "forbidden"),
            AppError::Banned(_) => ("permission_error", "banned"),
            AppError::ContentBlocked(_) => ("invalid_request_error", "content_blocked"),
            AppError::Unavailable(_) => ("server_error", "service_unavailable"),
            AppError::Busy { .. } => ("server_error", "server_busy"),
            AppError::NotFound => ("invalid_request_error", "not_found"),
            AppError::Conflict(_) => ("invalid_request_error", "conflict"),
            AppError::TooLarge(_) => ("invalid_request_error", "too_large"),
            AppError::RateLimited { .. } => ("rate_limit_error", "rate_limited"),
            AppError::Quota { code, .. } => ("rate_limit_error", code),
            AppError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    /// What may be shown to the user (internal details stay in the log).
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "Something went wrong on our side. Please try again.".into(),
            other => other.to_string(),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(format!("database: {e}"))
    }
}

impl From<r2d2::Error> for AppError {
    fn from(e: r2d2::Error) -> Self {
        AppError::Internal(format!("database pool: {e}"))
    }
}

pub type AppResult<T> = Result<T, AppError>;
