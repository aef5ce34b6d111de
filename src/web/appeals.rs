//! A restricted account's appeal, filed from the settings page (where its
//! restrictions and earlier appeals are listed).

use rocket::response::{Flash, Redirect};
use rocket::{post, routes, Route};
use serde_json::{json, Value};

use super::auth::csrf_form;
use super::guards::{ClientIp, CsrfForm, CsrfProtected, CurrentUser};
use super::render::{Page, PageCtx};
use crate::domain::{appeals::Appeal, bans::Ban};
use crate::error::{AppError, AppResult};

csrf_form!(AppealForm { restriction, body });

const SECTION: &str = "/settings#restrictions-h";

/// The account's restrictions, newest first, each with its appeal (if
/// any) and whether one can still be filed.
pub fn history(bans: Vec<Ban>, appeals: Vec<Appeal>, now: i64) -> Vec<Value> {
    bans.into_iter()
        .map(|b| {
            let appeal = appeals.iter().find(|a| a.ban_id == b.id);
            let state = if b.lifted_at.is_some() {
                "lifted"
            } else if b.ends_at.is_some_and(|e| e <= now) {
                "ended"
            } else {
                "active"
            };
            json!({
                "id": b.id,
                "scope": b.scope,
                "reason": b.reason,
                "starts_at": b.starts_at,
                "ends_at": b.ends_at,
                "state": state,
                "lifted_at": b.lifted_at,
                "can_appeal": state == "active" && appeal.is_none(),
                "appeal": appeal.map(|a| json!({
                    "id": a.id,
                    "status": a.status,
                    "body": a.body,
                    "created_at": a.created_at,
                    "decided_at": a.decided_at,
                    "decision_reason": a.decision_reason,
                })),
            })
        })
        .collect()
}

#[post("/settings/appeals", data = "<form>")]
async fn file(
    page: PageCtx<'_>,
    me: CurrentUser,
    ip: ClientIp,
    form: CsrfForm<AppealForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let Ok(restriction) = f.restriction.trim().parse::<i64>() else {
        return Err(AppError::NotFound);
    };
    let (user, body, ip) = (me.0.user.id, f.body.clone(), ip.0.map(|i| i.to_string()));
    let r = page
        .app
        .db
        .run(move |conn| {
            crate::domain::appeals::file(conn, user, restriction, &body, ip.as_deref())
        })
        .await;
    let fail = |m: String| Ok(Ok(Flash::error(Redirect::to(SECTION), m)));
    match r {
        Ok(a) => Ok(Ok(Flash::success(
            Redirect::to(SECTION),
            format!(
                "Appeal #{} is sent. The decision arrives in your inbox.",
                a.id
            ),
        ))),
        Err(AppError::Invalid { field, message }) => {
            let extra = json!({
                "appeal_error": { "field": field, "message": message, "restriction": restriction },
                "appeal_form": { "body": f.body },
            });
            let status = rocket::http::Status::BadRequest;
            Ok(Err(super::settings::settings_page(
                &page, &me, status, extra,
            )
            .await?))
        }
        Err(e @ (AppError::Conflict(_) | AppError::RateLimited { .. })) => fail(e.to_string()),
        Err(e) => Err(e),
    }
}

pub fn routes() -> Vec<Route> {
    routes![file]
}
