//! The wallet page: balances, the ledger with filter and pagination, and a
//! CSV export of the ledger.

use rocket::http::uri::Origin;
use rocket::http::{ContentType, Header};
use rocket::response::{self, Responder, Response};
use rocket::{get, routes, Request, Route};
use serde_json::json;

use rocket::http::Status;
use rocket::post;
use rocket::response::{Flash, Redirect};

use super::auth::csrf_form;
use super::guards::{CsrfForm, CsrfProtected, CurrentUser};
use super::render::{query_param, Page, PageCtx};
use crate::domain::wallet::{self, Entry};
use crate::error::AppResult;
use crate::templates::format_time;

pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "signup_bonus" => "Welcome credits",
        "redeem" => "Code redeemed",
        "referral_reward" => "Referral reward",
        "task_charge" => "Images",
        "task_refund" => "Refund",
        "task_extra" => "Extra images kept",
        "admin_grant" => "Added by the operator",
        "admin_deduct" => "Removed by the operator",
        _ => "Other",
    }
}

const PAGE: u32 = 50;

csrf_form!(RedeemForm { code });

#[get("/wallet")]
async fn wallet_page(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Page> {
    render_wallet(
        &page,
        &me,
        uri.query().is_some().then_some(uri),
        Status::Ok,
        serde_json::Value::Null,
    )
    .await
}

#[post("/wallet/redeem", data = "<form>")]
async fn redeem(
    page: PageCtx<'_>,
    me: CurrentUser,
    client: super::guards::ClientInfo,
    form: CsrfForm<RedeemForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let (user, code, config) = (me.0.user.id, form.0.code, page.app.config.clone());
    let c = code.clone();
    let throttle = page.app.auth_limits.attempt(
        &config,
        crate::domain::ratelimit::Action::Redeem,
        client.ip.as_deref(),
        Some(&user.0.to_string()),
    );
    let result = match throttle {
        Err(e) => Err(e),
        Ok(()) => {
            page.app
                .db
                .run(move |conn| {
                    crate::domain::codes::redeem(conn, &config, user, client.ip.as_deref(), &c)
                })
                .await
        }
    };
    match result {
        Ok(r) => Ok(Ok(Flash::success(
            Redirect::to("/wallet"),
            format!(
                "Code redeemed: {} {}credits added.",
                r.credited,
                if r.bonus { "bonus " } else { "" }
            ),
        ))),
        Err(crate::AppError::Invalid { field, message }) => {
            let error = json!({ "field": field, "message": message, "code": code });
            Ok(Err(render_wallet(
                &page,
                &me,
                None,
                Status::BadRequest,
                error,
            )
            .await?))
        }
        Err(e @ crate::AppError::Banned(_)) => {
            let error = json!({ "field": null, "message": e.to_string(), "code": code });
            Ok(Err(render_wallet(
                &page,
                &me,
                None,
                Status::Forbidden,
                error,
            )
            .await?))
        }
        Err(crate::AppError::RateLimited { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let plural = if minutes == 1 { "" } else { "s" };
            let message = format!(
                "Too many attempts. Redeeming is paused; try again in {minutes} minute{plural}."
            );
            let error = json!({ "field": "code", "message": message, "code": code });
            let mut p = render_wallet(&page, &me, None, Status::TooManyRequests, error).await?;
            p.retry_after = Some(retry_after_secs);
            Ok(Err(p))
        }
        Err(e) => Err(e),
    }
}

async fn render_wallet(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    uri: Option<&Origin<'_>>,
    status: Status,
    error: serde_json::Value,
) -> AppResult<Page> {
    let uri_param = |name: &str| uri.and_then(|u| query_param(u, name));
    let kind = uri_param("kind").filter(|k| wallet::KINDS.contains(&k.as_str()));
    let before = uri_param("before").and_then(|b| b.parse::<i64>().ok());
    let (user, k) = (me.0.user.id, kind.clone());
    let (w, entries, invitees) = page
        .app
        .db
        .run(move |conn| {
            Ok((
                wallet::get(conn, user)?,
                wallet::entries(conn, user, k.as_deref(), before, PAGE)?,
                crate::domain::referrals::invitees(conn, user)?,
            ))
        })
        .await?;
    let next = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "when": format_time(e.created_at),
                "label": kind_label(&e.kind),
                "change": e.delta_balance + e.delta_bonus,
                "delta_balance": e.delta_balance,
                "delta_bonus": e.delta_bonus,
                "after": e.balance_after + e.bonus_after,
                "task": e.task,
                "reason": e.reason,
            })
        })
        .collect();
    let kinds: Vec<_> = wallet::KINDS
        .iter()
        .map(|k| json!({ "id": k, "label": kind_label(k) }))
        .collect();
    let billing = &page.app.config.billing;
    let invited: Vec<_> = invitees
        .iter()
        .map(|i| json!({ "email": i.email, "joined": format_time(i.joined), "rewarded": i.rewarded }))
        .collect();
    let rewarded = invitees.iter().filter(|i| i.rewarded).count() as i64;
    let mut values = json!({ "wallet": { "balance": w.balance, "bonus": w.bonus, "total": w.total() },
            "entries": rows, "kinds": kinds, "kind": kind, "next": next,
            "referral": {
                "link": format!("{}/register?ref={}", page.app.config.public_url(), me.0.user.referral_code),
                "reward": billing.referral_reward,
                "on_redeem": billing.referral_trigger == crate::config::ReferralTrigger::FirstRedeem,
                "invited": invited,
                "earned": rewarded * billing.referral_reward as i64,
            } });
    if !error.is_null() {
        values["form"] = json!({ "code": error["code"] });
        values["error"] = error;
    }
    page.render_status(status, "wallet.html", values)
}

/// The whole ledger as CSV.
pub struct Csv {
    body: String,
}

impl<'r> Responder<'r, 'static> for Csv {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::new("text", "csv").with_params(("charset", "utf-8")))
            .header(Header::new(
                "Content-Disposition",
                "attachment; filename=\"novart-ledger.csv\"",
            ))
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(self.body.len(), std::io::Cursor::new(self.body))
            .ok()
    }
}

/// One CSV field: quoted when needed, and text that a spreadsheet would run
/// as a formula is prefixed with an apostrophe.
pub(crate) fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn to_csv(entries: &[Entry]) -> String {
    let mut out = String::from(
        "time_utc,kind,delta_balance,delta_bonus,balance_after,bonus_after,task,reason\n",
    );
    for e in entries {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            field(&format_time(e.created_at)),
            field(&e.kind),
            e.delta_balance,
            e.delta_bonus,
            e.balance_after,
            e.bonus_after,
            field(e.task.as_deref().unwrap_or("")),
            field(&e.reason)
        ));
    }
    out
}

#[get("/wallet/ledger.csv")]
async fn ledger_csv(page: PageCtx<'_>, me: CurrentUser) -> AppResult<Csv> {
    let user = me.0.user.id;
    let entries = page
        .app
        .db
        .run(move |conn| wallet::entries(conn, user, None, None, 1_000_000))
        .await?;
    Ok(Csv {
        body: to_csv(&entries),
    })
}

pub fn routes() -> Vec<Route> {
    routes![wallet_page, redeem, ledger_csv]
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
    }
}
