//! The JSON API under /api/v1. The studio's JavaScript calls it with the
//! session cookie plus an `x-csrf-token` header; errors use the JSON envelope.

use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder};
use rocket::{get, post, routes, Route, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{task_summary, Caller, ReqNote};
use super::render::json_response;
use crate::domain::apikeys;
use crate::domain::tasks::{self, ImageInput, NewTaskInput, TaskView};
use crate::domain::uploads;
use crate::error::{AppError, AppResult};
use crate::model::TaskStatus;
use crate::App;

/// A JSON body with a status (and optional Location).
pub struct ApiJson {
    status: Status,
    body: Value,
    location: Option<String>,
}

impl ApiJson {
    pub fn ok(body: Value) -> ApiJson {
        ApiJson {
            status: Status::Ok,
            body,
            location: None,
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiJson {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut r = json_response(self.status, &self.body);
        r.set_header(Header::new("Cache-Control", "no-store"));
        if let Some(l) = self.location {
            r.set_header(Header::new("Location", l));
        }
        Ok(r)
    }
}

/// Reads a request body up to `limit` bytes (413 beyond).
pub async fn read_body(data: Data<'_>, limit: u64) -> AppResult<String> {
    let body = data.open(limit.bytes()).into_string().await.map_err(|e| {
        AppError::invalid("body", format!("The request body could not be read: {e}"))
    })?;
    if !body.is_complete() {
        return Err(AppError::TooLarge(format!(
            "The request body is larger than {} bytes.",
            limit
        )));
    }
    Ok(body.into_inner())
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &str) -> AppResult<T> {
    serde_json::from_str(body).map_err(|e| {
        AppError::invalid(
            "body",
            format!("The request body is not valid JSON for this call: {e}"),
        )
    })
}

/// Reads a JSON body up to `limit`, with errors a client can act on.
async fn read_json<T: for<'de> Deserialize<'de>>(data: Data<'_>, limit: u64) -> AppResult<T> {
    parse_json(&read_body(data, limit).await?)
}

/// A task as the API shows it (signed image links).
pub fn present(app: &App, view: &TaskView) -> Value {
    tasks::present(&app.config, &app.secret, view)
}

fn models_json(app: &App, caller: &Caller) -> Vec<Value> {
    app.engine
        .catalog
        .models
        .iter()
        .filter(|m| caller.may_use(&m.id))
        .map(|m| json!(m))
        .collect()
}

#[get("/api/v1/models")]
fn models(app: &State<App>, caller: Caller) -> ApiJson {
    ApiJson::ok(json!({ "object": "list", "data": models_json(app, &caller) }))
}

/// The caller's account: who, the credits available, and (for a key) its
/// limits and today's usage.
#[get("/api/v1/account")]
async fn account(app: &State<App>, caller: Caller) -> AppResult<ApiJson> {
    caller.require(apikeys::READ_ACCOUNT)?;
    let user = caller.user;
    let key = caller.key.clone();
    let (u, w, usage, restrictions) = app
        .db
        .run(move |conn| {
            let usage = match &key {
                Some(k) => Some(apikeys::usage_today(conn, k.id)?),
                None => None,
            };
            Ok((
                crate::domain::accounts::by_id(conn, user)?,
                crate::domain::wallet::get(conn, user)?,
                usage,
                crate::domain::bans::restrictions(conn, user)?,
            ))
        })
        .await?;
    // Narrower restrictions in force (a key still works under generate or
    // upload ones), so client code can tell why an action will be refused.
    let restrictions: Vec<Value> = restrictions
        .iter()
        .map(|b| json!({ "scope": b.scope, "reason": b.reason, "ends_at": b.ends_at }))
        .collect();
    let mut body = json!({
        "email": u.email,
        "display_name": u.display_name,
        "balance": w.balance,
        "bonus": w.bonus,
        "available": w.total(),
        "restrictions": restrictions,
    });
    if let (Some(k), Some((today, active))) = (&caller.key, usage) {
        body["key"] = json!({ "prefix": k.prefix, "name": k.name, "permissions": k.permissions, "models": k.models });
        body["limits"] =
            json!({ "rpm": k.rpm, "concurrency": k.concurrency, "daily_cap": k.daily_cap });
        body["usage"] = json!({ "tasks_today": today, "active_tasks": active });
    }
    Ok(ApiJson::ok(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    code: String,
}

/// Redeems a code: `{code}` → `{credited, balance, bonus}`.
#[post("/api/v1/redeem", data = "<data>")]
async fn redeem(
    app: &State<App>,
    caller: Caller,
    client: super::guards::ClientInfo,
    data: Data<'_>,
) -> AppResult<ApiJson> {
    caller.require(apikeys::READ_ACCOUNT)?;
    let body: RedeemBody = read_json(data, 4096).await?;
    let (user, config) = (caller.user, app.config.clone());
    app.auth_limits.attempt(
        &config,
        crate::domain::ratelimit::Action::Redeem,
        client.ip.as_deref(),
        Some(&user.0.to_string()),
    )?;
    let r = app
        .db
        .run(move |conn| {
            crate::domain::codes::redeem(conn, &config, user, client.ip.as_deref(), &body.code)
        })
        .await?;
    Ok(ApiJson::ok(
        json!({ "credited": r.credited, "balance": r.wallet.balance, "bonus": r.wallet.bonus }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    prompt: Option<String>,
    negative_prompt: Option<String>,
    model: Option<String>,
    size: Option<String>,
    aspect_ratio: Option<String>,
    resolution: Option<u32>,
    n: Option<u32>,
    seed: Option<i64>,
    /// Ids of uploaded references, or base64-encoded images.
    reference_images: Option<Vec<String>>,
    /// For an edit: an uploaded mask id or base64 PNG, transparent where the
    /// first reference image may change.
    mask: Option<String>,
    webhook_url: Option<String>,
}

/// The `Idempotency-Key` request header.
pub struct IdempotencyKey(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        Outcome::Success(IdempotencyKey(
            req.headers()
                .get_one("Idempotency-Key")
                .map(|k| k.trim().to_string()),
        ))
    }
}

#[post("/api/v1/tasks", data = "<data>")]
async fn create_task(
    app: &State<App>,
    caller: Caller,
    idempotency: IdempotencyKey,
    note: ReqNote<'_>,
    data: Data<'_>,
) -> AppResult<ApiJson> {
    caller.require(apikeys::GENERATE)?;
    let raw = read_body(data, uploads::max_task_body_bytes(&app.config)).await?;
    let idempotency = crate::domain::submission::idempotency(idempotency.0.as_deref(), &raw);
    let body: CreateTask = parse_json(&raw)?;
    drop(raw);
    note.0.summary(task_summary(
        body.model.as_deref().unwrap_or("-"),
        body.size
            .as_deref()
            .or(body.aspect_ratio.as_deref())
            .unwrap_or("-"),
        body.n.unwrap_or(1),
        body.prompt.as_deref().unwrap_or(""),
    ));
    let model = body
        .model
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| app.engine.catalog.models[0].id.clone());
    let input = NewTaskInput {
        prompt: body.prompt.unwrap_or_default(),
        negative_prompt: body.negative_prompt,
        model,
        size: body.size,
        aspect_ratio: body.aspect_ratio,
        resolution: body.resolution,
        n: body.n,
        seed: body.seed,
        webhook_url: body.webhook_url,
        references: body
            .reference_images
            .unwrap_or_default()
            .into_iter()
            .map(ImageInput::from_json)
            .collect(),
        mask: body.mask.map(ImageInput::from_json),
        api_key: caller.quota(),
        idempotency,
        client_ip: caller.ip.clone(),
    };
    let user = caller.user;
    let (task, replayed) = super::submit::task(app, user, input).await?;
    let (config, catalog) = (app.engine.config.clone(), app.engine.catalog.clone());
    let view = app
        .db
        .run(move |conn| {
            let mut view = tasks::view(conn, task)?;
            tasks::place_in_queue(conn, &config, &catalog, std::slice::from_mut(&mut view))?;
            Ok(view)
        })
        .await?;
    note.0.task(&view.task.public_id);
    if !replayed {
        app.engine.hub.wake();
        app.engine.hub.publish(user, &view.task.public_id);
    }
    let location = format!("/api/v1/tasks/{}", view.task.public_id);
    Ok(ApiJson {
        status: if replayed {
            Status::Ok
        } else {
            Status::Created
        },
        body: present(app, &view),
        location: Some(location),
    })
}

#[get("/api/v1/tasks?<status>&<limit>&<cursor>")]
async fn list_tasks(
    app: &State<App>,
    caller: Caller,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> AppResult<ApiJson> {
    caller.require(apikeys::READ_TASKS)?;
    let status = match status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            AppError::invalid(
                "status",
                "status is one of queued, running, succeeded, failed, canceled.",
            )
        })?),
    };
    let user = caller.user;
    let (config, catalog) = (app.engine.config.clone(), app.engine.catalog.clone());
    let (data, next) = app
        .db
        .run(move |conn| {
            let (mut data, next) =
                tasks::list(conn, user, status, cursor.as_deref(), limit.unwrap_or(20))?;
            tasks::place_in_queue(conn, &config, &catalog, &mut data)?;
            Ok((data, next))
        })
        .await?;
    let data: Vec<Value> = data.iter().map(|v| present(app, v)).collect();
    Ok(ApiJson::ok(
        json!({ "object": "list", "data": data, "next_cursor": next }),
    ))
}

#[get("/api/v1/tasks/<id>")]
async fn get_task(
    app: &State<App>,
    caller: Caller,
    note: ReqNote<'_>,
    id: &str,
) -> AppResult<ApiJson> {
    caller.require(apikeys::READ_TASKS)?;
    note.0.task(id);
    let (user, id) = (caller.user, id.to_string());
    let (config, catalog) = (app.engine.config.clone(), app.engine.catalog.clone());
    let view = app
        .db
        .run(move |conn| {
            let mut view = tasks::get(conn, user, &id)?;
            tasks::place_in_queue(conn, &config, &catalog, std::slice::from_mut(&mut view))?;
            Ok(view)
        })
        .await?;
    Ok(ApiJson::ok(present(app, &view)))
}

#[post("/api/v1/tasks/<id>/cancel")]
async fn cancel_task(
    app: &State<App>,
    caller: Caller,
    note: ReqNote<'_>,
    id: &str,
) -> AppResult<ApiJson> {
    caller.require(apikeys::GENERATE)?;
    note.0.task(id);
    let (user, id) = (caller.user, id.to_string());
    let view = app
        .db
        .run(move |conn| tasks::cancel(conn, user, &id))
        .await?;
    app.engine.hub.canceled(user, &view.task.public_id);
    Ok(ApiJson::ok(present(app, &view)))
}

/// Uploads one reference image as the raw request body (`Content-Type:
/// image/png|jpeg|webp`). The account's restrictions are checked before the
/// body is read, and the body only up to the configured limit.
#[post("/api/v1/uploads", data = "<data>")]
async fn upload(app: &State<App>, caller: Caller, data: Data<'_>) -> AppResult<ApiJson> {
    caller.require(apikeys::GENERATE)?;
    let asset = super::submit::upload(app, caller.user, data).await?;
    Ok(ApiJson {
        status: Status::Created,
        body: json!({
            "id": asset.public_id,
            "width": asset.width,
            "height": asset.height,
            "preview_url": format!("/media/{}/preview", asset.public_id),
            "expires_at": asset.expires_at,
        }),
        location: None,
    })
}

/// A running task's latest preview (JPEG or PNG; 404 until one arrives,
/// or when the task runs on another node).
#[get("/api/v1/tasks/<id>/preview")]
async fn task_preview(
    app: &State<App>,
    caller: Caller,
    id: &str,
) -> AppResult<super::media::Preview> {
    caller.require(apikeys::READ_TASKS)?;
    super::media::preview_of(app, caller.user, id).await
}

pub fn routes() -> Vec<Route> {
    routes![
        models,
        account,
        redeem,
        create_task,
        list_tasks,
        get_task,
        task_preview,
        cancel_task,
        upload
    ]
}
