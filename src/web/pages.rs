//! Public pages and the health check.

use rocket::serde::json::Json;
use rocket::{get, post, routes, Route, State};
use serde_json::{json, Value};

use super::guards::CsrfProtected;
use super::render::{Page, PageCtx};
use crate::error::AppResult;
use crate::App;

#[get("/")]
fn home(page: PageCtx<'_>) -> AppResult<Page> {
    page.render("index.html", json!({}))
}

/// An operator's own text for a legal page: `<data_dir>/legal/<name>.<lang>.html`
/// or else `<data_dir>/legal/<name>.html` (an HTML fragment shown inside the
/// site's layout) replaces the built-in text when present.
fn operator_text(page: &PageCtx<'_>, name: &str) -> Option<String> {
    let dir = page.app.config.storage.data_dir.join("legal");
    [
        format!("{name}.{}.html", page.lang.code()),
        format!("{name}.html"),
    ]
    .iter()
    .find_map(|file| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .filter(|t| !t.trim().is_empty())
    })
}

/// What the legal pages say about this instance, from the live config.
fn legal_facts(page: &PageCtx<'_>) -> Value {
    let c = &page.app.config;
    let (providers, models) = c.catalogue();
    // Host (and port) only: never a user name or password in the URL.
    let host = |url: &str| {
        let rest = url.split("://").nth(1).unwrap_or(url);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        authority.rsplit('@').next().unwrap_or("").to_string()
    };
    let providers: Vec<Value> = providers
        .iter()
        .filter(|p| models.iter().any(|m| m.providers.contains(&p.id)))
        .map(|p| {
            json!({
                "id": p.id,
                "builtin": p.kind == crate::config::catalog::ProviderKind::Builtin,
                "kind": format!("{:?}", p.kind),
                "host": host(&p.base_url),
            })
        })
        .collect();
    let m = &c.moderation;
    json!({
        "contact": c.legal.contact,
        "session_idle_hours": c.auth.session_idle_hours,
        "session_absolute_days": c.auth.session_absolute_hours / 24,
        "verification_link_hours": c.auth.verification_link_hours,
        "reset_link_minutes": c.auth.reset_link_minutes,
        "smtp": c.mail.transport == crate::config::MailTransport::Smtp,
        "smtp_host": host(&c.mail.smtp_url),
        "result_hours": c.storage.result_retention_hours,
        "reference_hours": c.storage.reference_retention_hours,
        "request_log_days": c.api.request_log_retention_days,
        "blocked_log_days": m.blocked_log_retention_days,
        "idempotency_hours": c.api.idempotency_hours,
        "export_link_hours": crate::domain::export::LINK_HOURS,
        "providers": providers,
        "moderation_enabled": m.enabled,
        "moderation_host": host(&m.provider_url),
        "categories": m.categories.iter().map(|c| c.replace('_', " ")).collect::<Vec<_>>(),
        "category_ids": m.categories,
        "escalate_after": m.escalate_after,
        "escalation_window_minutes": m.escalation_window_minutes,
        "ban_durations": m.ban_durations.join(", "),
        "signup_bonus": c.billing.signup_bonus,
    })
}

#[get("/privacy")]
fn privacy(page: PageCtx<'_>) -> AppResult<Page> {
    let mut v = legal_facts(&page);
    v["operator_text"] = json!(operator_text(&page, "privacy"));
    page.render("privacy.html", v)
}

#[get("/terms")]
fn terms(page: PageCtx<'_>) -> AppResult<Page> {
    let mut v = legal_facts(&page);
    v["operator_text"] = json!(operator_text(&page, "terms"));
    page.render("terms.html", v)
}

super::auth::csrf_form!(LangForm { lang, next });

/// The `lang` cookie (a year).
pub(super) fn remember_language(
    app: &App,
    cookies: &rocket::http::CookieJar<'_>,
    lang: crate::i18n::Lang,
) {
    cookies.add(
        rocket::http::Cookie::build(("lang", lang.code()))
            .path("/")
            .http_only(true)
            .same_site(rocket::http::SameSite::Lax)
            .secure(app.config.is_https())
            .max_age(rocket::time::Duration::days(365)),
    );
}

/// The footer's language switch: remembered in the `lang` cookie and, when
/// signed in, as the account's language.
#[post("/lang", data = "<form>")]
async fn set_language(
    app: &State<App>,
    me: super::guards::MaybeUser,
    cookies: &rocket::http::CookieJar<'_>,
    form: super::guards::CsrfForm<LangForm>,
) -> AppResult<rocket::response::Redirect> {
    let f = form.0;
    let offered = app.templates.catalogs().offered();
    let lang = crate::i18n::Lang::parse(&f.lang)
        .filter(|l| offered.contains(l))
        .ok_or_else(|| {
            crate::error::AppError::invalid("lang", "That language is not available.")
        })?;
    if let Some(user) = me.0.map(|s| s.user.id) {
        app.db
            .run(move |conn| crate::domain::preferences::set_language(conn, user, lang.code()))
            .await?;
    }
    remember_language(app, cookies, lang);
    Ok(rocket::response::Redirect::to(super::auth::safe_next(
        &f.next,
    )))
}

/// Liveness and readiness: 200 with `db: "ok"` when the database answers.
#[get("/healthz")]
async fn healthz(app: &State<App>) -> (rocket::http::Status, Json<Value>) {
    let db = app.db.run(|conn| crate::domain::schema::ping(conn)).await;
    let ok = db.is_ok();
    let status = if ok {
        rocket::http::Status::Ok
    } else {
        rocket::http::Status::ServiceUnavailable
    };
    (
        status,
        Json(json!({
            "status": if ok { "ok" } else { "degraded" },
            "db": if ok { "ok".to_string() } else { format!("error: {}", db.err().map(|e| e.to_string()).unwrap_or_default()) },
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
}

pub fn routes() -> Vec<Route> {
    routes![home, privacy, terms, healthz, set_language]
}
