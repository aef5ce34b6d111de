//! Turning results into responses: pages (Tera, with the context every page
//! shares) and errors (HTML page for browsers, JSON envelope for the API).

use rocket::http::{ContentType, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FlashMessage, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use serde_json::{json, Value};

use crate::error::AppError;
use crate::App;

use super::guards::{CachedCsrf, Csrf, MaybeUser, SignedIn};

/// What every page needs: the app, who is signed in, the CSRF token, and a
/// flash message from the previous redirect.
pub struct PageCtx<'r> {
    pub app: &'r App,
    pub user: Option<SignedIn>,
    pub csrf: String,
    pub flash: Option<(String, String)>,
    pub path: String,
    pub lang: crate::i18n::Lang,
}

/// The page language for a request (see `i18n::negotiate`): the signed-in
/// account's choice, else the `lang` cookie, else Accept-Language.
pub fn request_lang(req: &Request<'_>, app: &App, user: Option<&SignedIn>) -> crate::i18n::Lang {
    let offered = app.templates.catalogs().offered();
    crate::i18n::negotiate(
        user.and_then(|s| s.user.language.as_deref()),
        req.cookies().get("lang").map(|c| c.value()),
        req.headers().get_one("Accept-Language"),
        &offered,
    )
}

/// The page language as a guard, for handlers that are not pages.
pub struct PageLang(pub crate::i18n::Lang);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PageLang {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let app = req.rocket().state::<App>().expect("App is managed");
        let user = req.guard::<MaybeUser>().await.succeeded().and_then(|m| m.0);
        Outcome::Success(PageLang(request_lang(req, app, user.as_ref())))
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PageCtx<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let app = req.rocket().state::<App>().expect("App is managed");
        let user = req.guard::<MaybeUser>().await.succeeded().and_then(|m| m.0);
        let csrf = match req.guard::<Csrf>().await {
            Outcome::Success(c) => c.token,
            _ => String::new(),
        };
        let flash = req
            .guard::<Option<FlashMessage<'_>>>()
            .await
            .succeeded()
            .flatten()
            .map(|f| (f.kind().to_string(), f.message().to_string()));
        let lang = request_lang(req, app, user.as_ref());
        Outcome::Success(PageCtx {
            app,
            user,
            csrf,
            flash,
            path: req.uri().path().to_string(),
            lang,
        })
    }
}

/// A rendered page with its status.
pub struct Page {
    pub status: Status,
    pub html: String,
    /// Sent as Retry-After (a rate-limited form shown again).
    pub retry_after: Option<u64>,
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut r = Response::build();
        r.status(self.status)
            .header(ContentType::HTML)
            .header(rocket::http::Header::new("Cache-Control", "no-store"));
        if let Some(secs) = self.retry_after {
            r.header(rocket::http::Header::new("Retry-After", secs.to_string()));
        }
        r.sized_body(self.html.len(), std::io::Cursor::new(self.html))
            .ok()
    }
}

/// The context shared by all pages, merged under the page's own values.
pub fn base_context(
    app: &App,
    template: &str,
    lang: crate::i18n::Lang,
    user: Option<&SignedIn>,
    csrf: &str,
    flash: Option<&(String, String)>,
    path: &str,
) -> tera::Context {
    // The catalogue sections this template still looks up (most texts are
    // written into the template itself, see `templates::localize`), moved
    // in rather than serialised again.
    let texts = serde_json::Map::from_iter([("L".into(), app.templates.texts(template, lang))]);
    let mut ctx = tera::Context::from_value(Value::Object(texts)).unwrap_or_default();
    ctx.insert("csrf_token", csrf);
    ctx.insert("lang", lang.code());
    let languages: Vec<Value> = app
        .templates
        .catalogs()
        .offered()
        .into_iter()
        .map(|l| json!({ "code": l.code(), "label": l.label() }))
        .collect();
    ctx.insert("languages", &languages);
    ctx.insert("path", path);
    ctx.insert("version", env!("CARGO_PKG_VERSION"));
    ctx.insert("registration_open", &app.config.registration.open);
    // The default name is the product's own text; a configured one is shown
    // as written.
    let operator = app
        .templates
        .catalogs()
        .message(lang, &app.config.legal.operator_name);
    ctx.insert("operator_name", &operator);
    if let Some(s) = user {
        ctx.insert(
            "user",
            &json!({
                "display_name": s.user.display_name,
                "email": s.user.email,
                "role": s.user.role,
                "is_admin": s.user.is_admin(),
                "unread": s.unread,
                "latest_message": s.inbox.latest,
                "toasts": s.inbox.fresh.iter().map(|m| json!({
                    "id": m.id,
                    "kind": m.kind,
                    "title": m.title,
                })).collect::<Vec<_>>(),
                "restrictions": s.restrictions.iter().map(|b| json!({
                    "id": b.id,
                    "scope": b.scope,
                    "reason": b.reason,
                    "ends_at": b.ends_at,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    if let Some((kind, message)) = flash {
        let message = app.templates.catalogs().message(lang, message);
        ctx.insert("flash", &json!({ "kind": kind, "message": message }));
    }
    ctx
}

impl PageCtx<'_> {
    /// Renders `template` with the shared context plus `values` (a JSON object).
    pub fn render(&self, template: &str, values: Value) -> Result<Page, AppError> {
        self.render_status(Status::Ok, template, values)
    }

    /// A fragment of this page (`Templates::fragment`), keyed by `data`
    /// (whatever `values` is made from), the page's CSRF token and the
    /// current minute (texts such as "expires in 5 m" may so lag by under
    /// a minute); `values` gets the token added.
    pub fn fragment(
        &self,
        template: &str,
        data: &impl std::hash::Hash,
        values: impl FnOnce() -> serde_json::Map<String, Value>,
    ) -> Result<std::sync::Arc<str>, AppError> {
        let key = (&self.csrf, crate::domain::now().div_euclid(60), data);
        self.app.templates.fragment(template, self.lang, &key, || {
            let mut values = values();
            values.insert("csrf_token".into(), Value::String(self.csrf.clone()));
            Value::Object(values)
        })
    }

    pub fn render_status(
        &self,
        status: Status,
        template: &str,
        values: Value,
    ) -> Result<Page, AppError> {
        let mut ctx = base_context(
            self.app,
            template,
            self.lang,
            self.user.as_ref(),
            &self.csrf,
            self.flash.as_ref(),
            &self.path,
        );
        if let Value::Object(mut map) = values {
            for (k, v) in map.iter_mut() {
                if k.ends_with("error") {
                    self.translate_message(v);
                }
            }
            // Moved in, not serialised again.
            if let Ok(own) = tera::Context::from_value(Value::Object(map)) {
                ctx.extend(own);
            }
        }
        let html = self.app.templates.render(template, self.lang, &ctx)?;
        Ok(Page {
            status,
            html,
            retry_after: None,
        })
    }

    /// Server messages are English in the code: a form error's `message`
    /// is shown in the page's language (see `i18n::Messages`).
    pub(super) fn translate_message(&self, error: &mut Value) {
        if let Some(Value::String(m)) = error.get_mut("message") {
            *m = self.app.templates.catalogs().message(self.lang, m);
        }
    }

    /// Re-renders a form with the error message attached to its field.
    pub fn form_error(
        &self,
        template: &str,
        err: AppError,
        mut values: Value,
    ) -> Result<Page, AppError> {
        match err {
            AppError::Invalid { field, message } => {
                values["error"] = json!({ "field": field, "message": message });
                self.render_status(Status::BadRequest, template, values)
            }
            e @ (AppError::Forbidden(_)
            | AppError::Banned(_)
            | AppError::ContentBlocked(_)
            | AppError::Unavailable(_)) => {
                let status = Status::from_code(e.status()).unwrap_or(Status::Forbidden);
                values["error"] = json!({ "field": null, "message": e.to_string() });
                self.render_status(status, template, values)
            }
            other => Err(other),
        }
    }
}

/// A decoded query-string parameter.
pub fn query_param(uri: &rocket::http::uri::Origin<'_>, name: &str) -> Option<String> {
    uri.query()?
        .segments()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request is for the JSON API (errors answer with the envelope).
pub fn wants_json(req: &Request<'_>) -> bool {
    let path = req.uri().path();
    path.starts_with("/api/")
        || path.starts_with("/v1/")
        || path == "/healthz"
        || req
            .headers()
            .get_one("Accept")
            .map(|a| a.starts_with("application/json"))
            .unwrap_or(false)
}

/// The JSON error envelope of CONTRACT.md.
pub fn error_envelope(message: &str, kind: &str, code: &str, param: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// A plain error page (also used by the catchers).
pub fn error_page(req: &Request<'_>, status: Status, message: &str) -> Page {
    let Some(app) = req.rocket().state::<App>() else {
        return Page {
            status,
            html: message.to_string(),
            retry_after: None,
        };
    };
    let user = req.local_cache(|| MaybeUser(None)).0.clone();
    let csrf = req
        .local_cache(CachedCsrf::default)
        .0
        .clone()
        .unwrap_or_default();
    let lang = request_lang(req, app, user.as_ref());
    let mut ctx = base_context(
        app,
        "error.html",
        lang,
        user.as_ref(),
        &csrf,
        None,
        req.uri().path().as_str(),
    );
    ctx.insert("status", &status.code);
    let catalogs = app.templates.catalogs();
    ctx.insert(
        "reason",
        &catalogs.message(lang, status.reason().unwrap_or("Error")),
    );
    ctx.insert("message", &catalogs.message(lang, message));
    let html = app
        .templates
        .render("error.html", lang, &ctx)
        .unwrap_or_else(|e| {
            tracing::error!("error page: {e}");
            format!("{} {}", status.code, message)
        });
    Page {
        status,
        html,
        retry_after: None,
    }
}

pub fn json_response(status: Status, body: &Value) -> Response<'static> {
    let body = body.to_string();
    Response::build()
        .status(status)
        .header(ContentType::JSON)
        .sized_body(body.len(), std::io::Cursor::new(body))
        .finalize()
}

impl<'r> Responder<'r, 'static> for AppError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = Status::from_code(self.status()).unwrap_or(Status::InternalServerError);
        if let AppError::Internal(detail) = &self {
            tracing::error!(path = %req.uri().path(), "{detail}");
        }
        let mut message = self.public_message();
        super::caller::NoteCell::of(req).error(self.kind().1);
        let mut response = if wants_json(req) {
            // The studio's own calls (session cookie) read errors in the
            // page's language; API keys always get English. (Error pages
            // translate in `error_page`.)
            if req.headers().get_one("Authorization").is_none() {
                if let Some(app) = req.rocket().state::<App>() {
                    let user = req.local_cache(|| MaybeUser(None)).0.clone();
                    let lang = request_lang(req, app, user.as_ref());
                    message = app.templates.catalogs().message(lang, &message);
                }
            }
            let (kind, code) = self.kind();
            let param = match &self {
                AppError::Invalid { field, .. } => *field,
                _ => None,
            };
            json_response(status, &error_envelope(&message, kind, code, param))
        } else {
            error_page(req, status, &message).respond_to(req)?
        };
        match self {
            AppError::RateLimited { retry_after_secs }
            | AppError::Busy {
                retry_after_secs, ..
            } => {
                response.set_raw_header("Retry-After", retry_after_secs.to_string());
            }
            AppError::Quota {
                limit, reset_secs, ..
            } => {
                response.set_raw_header("Retry-After", reset_secs.to_string());
                response.set_raw_header("x-ratelimit-limit", limit.to_string());
                response.set_raw_header("x-ratelimit-remaining", "0");
                response.set_raw_header("x-ratelimit-reset", reset_secs.to_string());
            }
            _ => {}
        }
        Ok(response)
    }
}
