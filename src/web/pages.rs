//! Public pages and the health check.

use rocket::serde::json::Json;
use rocket::{get, routes, Route, State};
use serde_json::{json, Value};

use super::render::{Page, PageCtx};
use crate::error::AppResult;
use crate::App;

#[get("/")]
fn home(page: PageCtx<'_>) -> AppResult<Page> {
    page.render("index.html", json!({}))
}

#[get("/privacy")]
fn privacy(page: PageCtx<'_>) -> AppResult<Page> {
    let c = &page.app.config;
    page.render(
        "privacy.html",
        json!({
            "contact": c.legal.contact,
            "session_idle_hours": c.auth.session_idle_hours,
            "session_absolute_days": c.auth.session_absolute_hours / 24,
            "verification_link_hours": c.auth.verification_link_hours,
            "reset_link_minutes": c.auth.reset_link_minutes,
            "smtp": c.mail.transport == crate::config::MailTransport::Smtp,
        }),
    )
}

#[get("/terms")]
fn terms(page: PageCtx<'_>) -> AppResult<Page> {
    page.render(
        "terms.html",
        json!({ "contact": page.app.config.legal.contact }),
    )
}

/// Liveness and readiness: 200 with `db: "ok"` when the database answers.
#[get("/healthz")]
async fn healthz(app: &State<App>) -> (rocket::http::Status, Json<Value>) {
    let db = app
        .db
        .run(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await;
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
    routes![home, privacy, terms, healthz]
}
