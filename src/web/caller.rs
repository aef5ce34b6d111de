//! Who calls the API and what the request log says about the call: the
//! `Caller` guard (an API key with its rate limit, or a signed-in browser
//! with its CSRF header), and the cells the handlers, catchers and the
//! logging fairing share through the request's local cache.

use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use super::guards::{client_ip, same_origin, Csrf, MaybeUser};
use crate::domain::apikeys::{self, ApiKey, KeyQuota, RateState};
use crate::domain::secrets;
use crate::error::{AppError, AppResult};
use crate::model::UserId;
use crate::App;

/// Who is calling the API: an API key (`Authorization: Bearer nva_...`), or
/// a signed-in browser that sent its CSRF token in `x-csrf-token` (a
/// form-less request from another site cannot).
pub struct Caller {
    pub user: UserId,
    /// None: the studio, with a session (every permission, no key limits).
    pub key: Option<ApiKey>,
    /// The client's address (see `guards::client_ip`).
    pub ip: Option<String>,
}

impl Caller {
    /// 403 unless the key has `permission` (sessions have all).
    pub fn require(&self, permission: &str) -> AppResult<()> {
        match &self.key {
            Some(k) if !k.permissions.iter().any(|p| p == permission) => Err(AppError::Forbidden(
                format!("This API key does not have the {permission} permission."),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the key's model allowlist (if any) includes `model`.
    pub fn may_use(&self, model: &str) -> bool {
        match self.key.as_ref().and_then(|k| k.models.as_ref()) {
            Some(allowed) => allowed.iter().any(|m| m == model),
            None => true,
        }
    }

    pub fn quota(&self) -> Option<KeyQuota> {
        self.key.as_ref().map(KeyQuota::from)
    }
}

/// Why an API guard refused the request; the catcher answers with it.
#[derive(Default)]
pub struct GuardFailure(pub std::sync::Mutex<Option<AppError>>);

/// The key's request-rate state, for the x-ratelimit-* headers.
pub struct KeyRate(pub Option<RateState>);

/// Who made an API request, for the request log.
#[derive(Clone, Default)]
pub struct ApiIdentity(pub Option<(UserId, Option<String>)>);

/// What the request log says about a request beyond method, path and status.
#[derive(Default, Clone)]
pub struct Note {
    pub summary: String,
    pub task: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Default)]
pub struct NoteCell(pub std::sync::Mutex<Note>);

impl NoteCell {
    pub fn of<'r>(req: &'r Request<'_>) -> &'r NoteCell {
        req.local_cache(NoteCell::default)
    }

    fn with(&self, f: impl FnOnce(&mut Note)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn summary(&self, s: String) {
        self.with(|n| n.summary = crate::domain::reqlog::clip(&s));
    }

    pub fn task(&self, id: &str) {
        self.with(|n| n.task = Some(id.to_string()));
    }

    pub fn error(&self, code: &str) {
        self.with(|n| n.error_code = Some(code.to_string()));
    }

    pub fn take(&self) -> Note {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Handlers add to the request log through this guard.
pub struct ReqNote<'r>(pub &'r NoteCell);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ReqNote<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        Outcome::Success(ReqNote(NoteCell::of(req)))
    }
}

/// Summary of a generation request for the log.
pub fn task_summary(model: &str, size: &str, n: u32, prompt: &str) -> String {
    format!(
        "model={model} size={size} n={n} prompt={:?}",
        crate::domain::reqlog::clip(prompt)
    )
}

fn fail(req: &Request<'_>, err: AppError) -> request::Outcome<Caller, ()> {
    let status = Status::from_code(err.status()).unwrap_or(Status::Unauthorized);
    *req.local_cache(GuardFailure::default)
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(err);
    Outcome::Error((status, ()))
}

/// Query parameters under which clients put credentials by mistake.
const KEY_PARAMS: [&str; 5] = ["api_key", "apikey", "key", "access_token", "token"];

fn key_in_query(req: &Request<'_>) -> bool {
    req.uri().query().is_some_and(|q| {
        q.segments().any(|(k, v)| {
            KEY_PARAMS.contains(&k.to_ascii_lowercase().as_str()) || v.contains("nva_")
        })
    })
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let app = req.rocket().state::<App>().expect("App is managed");
        if key_in_query(req) {
            return fail(
                req,
                AppError::Unauthorized(
                    "API keys are not accepted in the URL (they end up in logs); send \
                     Authorization: Bearer <key>. Consider this key exposed and rotate it."
                        .into(),
                ),
            );
        }
        if let Some(auth) = req.headers().get_one("Authorization") {
            let presented = match auth.split_once(' ') {
                Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => {
                    key.trim().to_string()
                }
                _ => {
                    return fail(
                        req,
                        AppError::Unauthorized(
                            "Send the API key as Authorization: Bearer <key>.".into(),
                        ),
                    )
                }
            };
            let found = app
                .db
                .run(move |conn| {
                    let key = apikeys::authenticate(conn, &presented)?;
                    crate::domain::bans::ensure(
                        conn,
                        key.user_id,
                        crate::domain::bans::Action::Api,
                    )?;
                    apikeys::touch(conn, &key)?;
                    Ok(key)
                })
                .await;
            let key = match found {
                Ok(k) => k,
                Err(e) => return fail(req, e),
            };
            req.local_cache(|| ApiIdentity(Some((key.user_id, Some(key.prefix.clone())))));
            let state = app
                .key_rates
                .check(key.id, key.rpm, std::time::Instant::now());
            req.local_cache(|| KeyRate(Some(state)));
            if !state.allowed {
                return fail(
                    req,
                    AppError::Quota {
                        message: format!(
                            "This API key allows {} requests per minute; try again in {} seconds.",
                            state.limit, state.reset_secs
                        ),
                        code: "rate_limited",
                        limit: state.limit as u64,
                        reset_secs: state.reset_secs,
                    },
                );
            }
            return Outcome::Success(Caller {
                user: key.user_id,
                key: Some(key),
                ip: client_ip(req, app).map(|i| i.to_string()),
            });
        }
        let Some(signed_in) = req.guard::<MaybeUser>().await.succeeded().and_then(|m| m.0) else {
            return fail(
                req,
                AppError::Unauthorized(
                    "Authentication required: send Authorization: Bearer <API key>.".into(),
                ),
            );
        };
        let expected = match req.guard::<Csrf>().await {
            Outcome::Success(c) => c.token,
            _ => return Outcome::Error((Status::Forbidden, ())),
        };
        let presented = req.headers().get_one("x-csrf-token").unwrap_or_default();
        if presented.is_empty()
            || !secrets::constant_time_eq(&expected, presented)
            || !same_origin(req, app)
        {
            return Outcome::Error((Status::Forbidden, ()));
        }
        req.local_cache(|| ApiIdentity(Some((signed_in.user.id, None))));
        Outcome::Success(Caller {
            user: signed_in.user.id,
            key: None,
            ip: client_ip(req, app).map(|i| i.to_string()),
        })
    }
}
