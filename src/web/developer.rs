//! The developer center (/developer): API keys (created, rotated, revoked;
//! the secret shown once), the webhook signing secret and deliveries, the API
//! request log with filters, pagination and CSV/JSON export, and requests for
//! higher limits.

use rocket::form::FromForm;
use rocket::http::uri::Origin;
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Flash, Redirect, Responder, Response};
use rocket::{get, post, routes, Request, Route};
use serde_json::{json, Value};

use super::auth::{csrf_form, EmptyForm};
use super::guards::{CsrfForm, CsrfProtected, CurrentUser};
use super::render::{query_param, Page, PageCtx};
use super::wallet::field as csv_field;
use crate::domain::apikeys::{self, ApiKey, Authority, KeySpec};
use crate::domain::reqlog::{self, Filter, RequestRow, Source};
use crate::domain::{limits, webhooks};
use crate::error::{AppError, AppResult};
use crate::templates::format_time;

const LOG_PAGE: u32 = 50;

#[derive(FromForm)]
pub struct KeyForm {
    #[field(default = String::new())]
    csrf_token: String,
    #[field(default = String::new())]
    name: String,
    #[field(default = Vec::new())]
    permissions: Vec<String>,
    #[field(default = Vec::new())]
    models: Vec<String>,
    #[field(default = String::new())]
    rpm: String,
    #[field(default = String::new())]
    concurrency: String,
    #[field(default = String::new())]
    daily_cap: String,
    #[field(default = String::new())]
    expires_days: String,
}

impl CsrfProtected for KeyForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

csrf_form!(LimitForm {
    key,
    rpm,
    concurrency,
    daily_cap,
    reason
});

fn status_of(k: &ApiKey) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= crate::domain::now()) {
        "expired"
    } else {
        "active"
    }
}

fn log_filter(uri: Option<&Origin<'_>>) -> Filter {
    let p = |name: &str| {
        uri.and_then(|u| query_param(u, name))
            .filter(|v| !v.is_empty())
    };
    Filter {
        source: match p("key").as_deref() {
            None => Source::Keys,
            Some("studio") => Source::Studio,
            Some("all") => Source::All,
            Some(prefix) => Source::Key(prefix.to_string()),
        },
        outcome: p("outcome").filter(|o| o == "ok" || o == "error"),
        before: p("before").and_then(|b| b.parse().ok()),
        limit: LOG_PAGE,
    }
}

/// The page, with an optional just-created key (shown once) or form error.
async fn render(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    uri: Option<&Origin<'_>>,
    status: Status,
    extra: Value,
) -> AppResult<Page> {
    let user = me.0.user.id;
    let filter = log_filter(uri);
    let f = filter.clone();
    let (keys, secret, deliveries, (logs, studio_calls), requests) = page
        .app
        .db
        .run(move |conn| {
            let logs = reqlog::list(conn, user, &f)?;
            // Say so when the default view is empty only because it hides
            // the studio's own calls.
            let hidden = logs.is_empty()
                && f.source == Source::Keys
                && reqlog::has_studio_calls(conn, user)?;
            let logs = (logs, hidden);
            Ok((
                apikeys::list(conn, user)?,
                webhooks::secret(conn, user)?,
                webhooks::list(conn, user, 50)?,
                logs,
                limits::for_user(conn, user)?,
            ))
        })
        .await?;
    let key_rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "name": k.name, "prefix": k.prefix, "permissions": k.permissions,
                "models": k.models, "rpm": k.rpm, "concurrency": k.concurrency,
                "daily_cap": k.daily_cap, "status": status_of(k),
                "created": format_time(k.created_at),
                "last_used": k.last_used_at.map(format_time),
                "expires": k.expires_at.map(format_time),
            })
        })
        .collect();
    let next = (logs.len() == LOG_PAGE as usize)
        .then(|| logs.last().map(|r| r.id))
        .flatten();
    let log_rows: Vec<Value> = logs
        .iter()
        .map(|r| {
            json!({
                "when": format_time(r.created_at), "key": r.key_prefix, "method": r.method,
                "path": r.path, "status": r.status, "latency_ms": r.latency_ms,
                "summary": r.summary, "task": r.task_id, "error": r.error_code,
                "ok": r.status < 400,
            })
        })
        .collect();
    let delivery_rows: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "id": d.public_id, "event": d.event, "url": d.url, "state": d.state,
                "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
                "when": format_time(d.created_at),
                "next": (d.state == "pending").then(|| format_time(d.next_attempt_at)),
            })
        })
        .collect();
    let request_rows: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "key": r.key_prefix, "rpm": r.rpm, "concurrency": r.concurrency,
                "daily_cap": r.daily_cap, "reason": r.reason, "status": r.status,
                "decision": r.decision, "when": format_time(r.created_at),
            })
        })
        .collect();
    let query = |before: Option<i64>| {
        let mut q = Vec::new();
        if let Some(k) = uri
            .and_then(|u| query_param(u, "key"))
            .filter(|k| !k.is_empty())
        {
            q.push(format!("key={}", crate::templates::urlencode(&k)));
        }
        if let Some(o) = &filter.outcome {
            q.push(format!("outcome={o}"));
        }
        if let Some(b) = before {
            q.push(format!("before={b}"));
        }
        q.join("&")
    };
    let l = &page.app.config.limits;
    let mut values = json!({
        "keys": key_rows,
        "models": page.app.engine.catalog.models.iter().map(|m| json!({"id": m.id, "name": page.app.templates.catalogs().message(page.lang, &m.name)})).collect::<Vec<_>>(),
        "permissions": apikeys::PERMISSIONS,
        "limit_fields": [
            { "name": "rpm", "label": "Requests per minute" },
            { "name": "concurrency", "label": "Tasks at once" },
            { "name": "daily_cap", "label": "Tasks per day" },
        ],
        "log_retention_days": page.app.config.api.request_log_retention_days,
        "defaults": { "rpm": l.key_rpm, "concurrency": l.key_concurrency, "daily_cap": l.key_daily_cap },
        "webhook_secret": secret,
        "deliveries": delivery_rows,
        "logs": log_rows,
        "studio_calls": studio_calls,
        "log_filter": { "key": uri.and_then(|u| query_param(u, "key")), "outcome": filter.outcome },
        "log_query": query(None),
        "next_page": next.map(|b| query(Some(b))),
        "limit_requests": request_rows,
        "api_base": page.app.config.public_url(),
    });
    if let (Value::Object(v), Value::Object(e)) = (&mut values, extra) {
        v.extend(e);
    }
    page.render_status(status, "developer.html", values)
}

#[get("/developer")]
async fn developer(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Page> {
    render(&page, &me, Some(uri), Status::Ok, Value::Null).await
}

fn parse_limit(field: &'static str, s: &str, default: u32) -> AppResult<u32> {
    match s.trim() {
        "" => Ok(default),
        v => v
            .parse()
            .map_err(|_| AppError::invalid(field, "Use a whole number.")),
    }
}

fn key_spec(page: &PageCtx<'_>, f: &KeyForm) -> AppResult<KeySpec> {
    let mut spec = KeySpec::defaults(&page.app.config, &f.name);
    spec.permissions = f.permissions.clone();
    spec.models = Some(f.models.clone()).filter(|m| !m.is_empty());
    spec.rpm = parse_limit("rpm", &f.rpm, spec.rpm)?;
    spec.concurrency = parse_limit("concurrency", &f.concurrency, spec.concurrency)?;
    spec.daily_cap = parse_limit("daily_cap", &f.daily_cap, spec.daily_cap)?;
    spec.expires_at = match f.expires_days.trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(crate::domain::now() + days * 86_400),
            _ => {
                return Err(AppError::invalid(
                    "expires_days",
                    "The key can expire after 1 to 3650 days, or never (leave it empty).",
                ))
            }
        },
    };
    Ok(spec)
}

fn shown_once(key: &ApiKey, secret: &str, rotated: bool) -> Value {
    json!({ "new_key": { "secret": secret, "name": key.name, "prefix": key.prefix, "rotated": rotated } })
}

#[post("/developer/keys", data = "<form>")]
async fn create_key(
    page: PageCtx<'_>,
    me: CurrentUser,
    form: CsrfForm<KeyForm>,
) -> AppResult<Page> {
    let f = form.0;
    let spec = match key_spec(&page, &f) {
        Ok(s) => s,
        Err(e) => return key_form_error(&page, &me, &f, e).await,
    };
    let (config, catalog, user) = (
        page.app.config.clone(),
        page.app.engine.catalog.clone(),
        me.0.user.id,
    );
    match page
        .app
        .db
        .run(move |conn| apikeys::create(conn, &config, &catalog, user, spec, Authority::Creator))
        .await
    {
        Ok((key, secret)) => {
            render(
                &page,
                &me,
                None,
                Status::Created,
                shown_once(&key, &secret, false),
            )
            .await
        }
        Err(e) => key_form_error(&page, &me, &f, e).await,
    }
}

async fn key_form_error(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    f: &KeyForm,
    e: AppError,
) -> AppResult<Page> {
    match e {
        AppError::Invalid { field, message } => {
            let extra = json!({
                "key_error": { "field": field, "message": message },
                "key_form": { "name": f.name, "permissions": f.permissions, "models": f.models,
                              "rpm": f.rpm, "concurrency": f.concurrency, "daily_cap": f.daily_cap,
                              "expires_days": f.expires_days },
            });
            render(page, me, None, Status::BadRequest, extra).await
        }
        AppError::Conflict(message) => {
            let extra = json!({ "key_error": { "field": null, "message": message } });
            render(page, me, None, Status::Conflict, extra).await
        }
        e @ AppError::Banned(_) => {
            let extra = json!({ "key_error": { "field": null, "message": e.to_string() } });
            render(page, me, None, Status::Forbidden, extra).await
        }
        other => Err(other),
    }
}

#[post("/developer/keys/<prefix>/rotate", data = "<_form>")]
async fn rotate_key(
    page: PageCtx<'_>,
    me: CurrentUser,
    prefix: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Page> {
    let (user, prefix) = (me.0.user.id, prefix.to_string());
    let (key, secret) = page
        .app
        .db
        .run(move |conn| {
            let k = apikeys::own(conn, user, &prefix)?;
            apikeys::rotate(conn, &k)
        })
        .await?;
    render(
        &page,
        &me,
        None,
        Status::Ok,
        shown_once(&key, &secret, true),
    )
    .await
}

#[post("/developer/keys/<prefix>/revoke", data = "<_form>")]
async fn revoke_key(
    page: PageCtx<'_>,
    me: CurrentUser,
    prefix: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, prefix) = (me.0.user.id, prefix.to_string());
    let name = page
        .app
        .db
        .run(move |conn| {
            let k = apikeys::own(conn, user, &prefix)?;
            apikeys::revoke(conn, &k, "owner")?;
            Ok(k.name)
        })
        .await?;
    Ok(Flash::success(
        Redirect::to("/developer"),
        format!("Key \u{201c}{name}\u{201d} revoked. Requests with it are refused from now on."),
    ))
}

#[post("/developer/webhook-secret", data = "<_form>")]
async fn rotate_secret(
    page: PageCtx<'_>,
    me: CurrentUser,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let user = me.0.user.id;
    page.app
        .db
        .run(move |conn| webhooks::rotate_secret(conn, user))
        .await?;
    Ok(Flash::success(
        Redirect::to("/developer#webhooks"),
        "New signing secret made. Deliveries from now on are signed with it; update your receiver.",
    ))
}

#[post("/developer/deliveries/<id>/redeliver", data = "<_form>")]
async fn redeliver(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, id) = (me.0.user.id, id.to_string());
    page.app
        .db
        .run(move |conn| webhooks::redeliver(conn, user, &id))
        .await?;
    Ok(Flash::success(
        Redirect::to("/developer#webhooks"),
        "The delivery will be sent again within a few seconds, with the same webhook-id.",
    ))
}

#[post("/developer/limits", data = "<form>")]
async fn ask_limits(
    page: PageCtx<'_>,
    me: CurrentUser,
    form: CsrfForm<LimitForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let opt = |field: &'static str, s: &str| -> AppResult<Option<u32>> {
        match s.trim() {
            "" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| AppError::invalid(field, "Use a whole number.")),
        }
    };
    let ask = (|| {
        Ok::<_, AppError>(limits::Ask {
            rpm: opt("rpm", &f.rpm)?,
            concurrency: opt("concurrency", &f.concurrency)?,
            daily_cap: opt("daily_cap", &f.daily_cap)?,
            reason: f.reason.clone(),
        })
    })();
    let (user, key) = (me.0.user.id, f.key.clone());
    let result = match ask {
        Ok(ask) => {
            page.app
                .db
                .run(move |conn| limits::request(conn, user, &key, &ask))
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Ok(Flash::success(
            Redirect::to("/developer#limits"),
            "Request sent. You will get a message when the operator decides.",
        ))),
        Err(AppError::Invalid { field, message }) => {
            let extra = json!({
                "limit_error": { "field": field, "message": message },
                "limit_form": { "key": f.key, "rpm": f.rpm, "concurrency": f.concurrency,
                                "daily_cap": f.daily_cap, "reason": f.reason },
            });
            Ok(Err(
                render(&page, &me, None, Status::BadRequest, extra).await?
            ))
        }
        Err(AppError::Conflict(message)) | Err(AppError::Forbidden(message)) => {
            let extra = json!({ "limit_error": { "field": null, "message": message } });
            Ok(Err(render(&page, &me, None, Status::Conflict, extra).await?))
        }
        Err(AppError::NotFound) => {
            let extra =
                json!({ "limit_error": { "field": "key", "message": "Choose one of your keys." } });
            Ok(Err(
                render(&page, &me, None, Status::BadRequest, extra).await?
            ))
        }
        Err(e) => Err(e),
    }
}

/// The request log as a download.
pub struct Export {
    body: String,
    content_type: ContentType,
    filename: &'static str,
}

impl<'r> Responder<'r, 'static> for Export {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(self.content_type)
            .header(Header::new(
                "Content-Disposition",
                format!("attachment; filename=\"{}\"", self.filename),
            ))
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(self.body.len(), std::io::Cursor::new(self.body))
            .ok()
    }
}

async fn export_rows(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    uri: &Origin<'_>,
) -> AppResult<Vec<RequestRow>> {
    let mut filter = log_filter(Some(uri));
    filter.limit = 10_000;
    filter.before = None;
    let user = me.0.user.id;
    page.app
        .db
        .run(move |conn| reqlog::list(conn, user, &filter))
        .await
}

#[get("/developer/requests.csv")]
async fn requests_csv(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Export> {
    let rows = export_rows(&page, &me, uri).await?;
    let mut out = String::from(
        "time_utc,key_prefix,method,path,status,latency_ms,ip,summary,task_id,error_code\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&format_time(r.created_at)),
            csv_field(r.key_prefix.as_deref().unwrap_or("studio")),
            r.method,
            csv_field(&r.path),
            r.status,
            r.latency_ms,
            csv_field(r.ip.as_deref().unwrap_or("")),
            csv_field(&r.summary),
            csv_field(r.task_id.as_deref().unwrap_or("")),
            csv_field(r.error_code.as_deref().unwrap_or("")),
        ));
    }
    Ok(Export {
        body: out,
        content_type: ContentType::new("text", "csv").with_params(("charset", "utf-8")),
        filename: "novart-api-requests.csv",
    })
}

#[get("/developer/requests.json")]
async fn requests_json(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Export> {
    let rows = export_rows(&page, &me, uri).await?;
    Ok(Export {
        body: json!({ "object": "list", "data": rows }).to_string(),
        content_type: ContentType::JSON,
        filename: "novart-api-requests.json",
    })
}

pub fn routes() -> Vec<Route> {
    routes![
        developer,
        create_key,
        rotate_key,
        revoke_key,
        rotate_secret,
        redeliver,
        ask_limits,
        requests_csv,
        requests_json
    ]
}
