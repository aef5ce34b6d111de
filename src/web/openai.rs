//! The OpenAI-compatible images API under /v1, so existing SDKs work with a
//! changed base URL: `POST /v1/images/generations` (JSON),
//! `POST /v1/images/edits` (multipart `image` / `image[]`, `mask`) and
//! `GET /v1/models`. A generation is an ordinary task: the call waits for it
//! up to `[api] sync_wait_secs`. Once a task was accepted every answer
//! carries `x-should-retry: false`, so an SDK's automatic retry never
//! charges twice.

use std::time::Duration;

use base64::Engine as _;
use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder};
use rocket::{get, post, routes, Route, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{parse_json, read_body, IdempotencyKey};
use super::caller::{task_summary, Caller, ReqNote};
use super::render::{error_envelope, json_response};
use crate::domain::apikeys;
use crate::domain::tasks::{self, ImageInput, NewTaskInput, TaskView};
use crate::domain::{secrets, submission, uploads};
use crate::error::{AppError, AppResult};
use crate::model::{TaskStatus, UserId};
use crate::App;

/// A /v1 answer; `accepted` adds `x-should-retry: false`.
pub struct OpenAiReply {
    status: Status,
    body: Value,
    accepted: bool,
}

impl<'r> Responder<'r, 'static> for OpenAiReply {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut r = json_response(self.status, &self.body);
        r.set_header(Header::new("Cache-Control", "no-store"));
        if self.accepted {
            r.set_header(Header::new("x-should-retry", "false"));
        }
        if let Some(code) = self.body["error"]["code"].as_str() {
            super::caller::NoteCell::of(req).error(code);
        }
        Ok(r)
    }
}

fn after_accept(status: Status, message: &str, kind: &str, code: &str) -> OpenAiReply {
    OpenAiReply {
        status,
        body: error_envelope(message, kind, code, None),
        accepted: true,
    }
}

/// OpenAI's model names (what SDKs send by default) stand for the studio's
/// first model; the studio's own ids are used as they are.
fn model_for(app: &App, requested: Option<&str>) -> String {
    let default = app.engine.catalog.models[0].id.clone();
    match requested.map(str::trim).filter(|m| !m.is_empty()) {
        None => default,
        Some(m) if app.engine.catalog.models.iter().any(|x| x.id == m) => m.to_string(),
        Some(m)
            if m.starts_with("dall-e")
                || m.starts_with("gpt-image")
                || m.starts_with("chatgpt-image") =>
        {
            default
        }
        Some(m) => m.to_string(), // unknown: submit answers 400 naming the choices
    }
}

/// The parameters both endpoints share.
#[derive(Debug, Default, Deserialize)]
struct ImageParams {
    prompt: Option<String>,
    model: Option<String>,
    n: Option<u32>,
    size: Option<String>,
    response_format: Option<String>,
    // Extensions (SDKs pass them through `extra_body`).
    negative_prompt: Option<String>,
    seed: Option<i64>,
    aspect_ratio: Option<String>,
    // Accepted for compatibility; the configured model decides these.
    #[allow(dead_code)]
    quality: Option<String>,
    #[allow(dead_code)]
    style: Option<String>,
    #[allow(dead_code)]
    user: Option<String>,
    #[allow(dead_code)]
    background: Option<String>,
    output_format: Option<String>,
    stream: Option<bool>,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Url,
    B64,
}

fn check_params(p: &ImageParams) -> AppResult<Format> {
    if p.stream == Some(true) {
        return Err(AppError::invalid(
            "stream",
            "Streaming is not supported; leave stream unset or false.",
        ));
    }
    if let Some(f) = p.output_format.as_deref() {
        if f != "png" {
            return Err(AppError::invalid(
                "output_format",
                "Images are returned as PNG; use output_format \"png\" or leave it out.",
            ));
        }
    }
    match p.response_format.as_deref() {
        None | Some("url") => Ok(Format::Url),
        Some("b64_json") => Ok(Format::B64),
        Some(_) => Err(AppError::invalid(
            "response_format",
            "response_format is \"url\" or \"b64_json\".",
        )),
    }
}

fn input_from(app: &App, p: &ImageParams, caller: &Caller) -> NewTaskInput {
    NewTaskInput {
        prompt: p.prompt.clone().unwrap_or_default(),
        negative_prompt: p.negative_prompt.clone(),
        model: model_for(app, p.model.as_deref()),
        size: p.size.clone().filter(|s| s != "auto"),
        aspect_ratio: p.aspect_ratio.clone(),
        resolution: None,
        n: p.n,
        seed: p.seed,
        webhook_url: None,
        references: Vec::new(),
        mask: None,
        api_key: caller.quota(),
        idempotency: None,
        client_ip: caller.ip.clone(),
    }
}

/// Waits until the task is final or the configured time is up.
async fn wait(app: &App, user: UserId, id: &str) -> AppResult<Option<TaskView>> {
    let mut rx = app.engine.hub.subscribe();
    let deadline = rocket::tokio::time::Instant::now()
        + Duration::from_secs(app.config.api.sync_wait_secs as u64);
    loop {
        let (u, i) = (user, id.to_string());
        let view = app.db.run(move |conn| tasks::get(conn, u, &i)).await?;
        if view.task.status.is_final() {
            return Ok(Some(view));
        }
        let tick = rocket::tokio::time::sleep(Duration::from_secs(1));
        rocket::tokio::select! {
            _ = rx.recv() => {}
            _ = tick => {}
            _ = rocket::tokio::time::sleep_until(deadline) => return Ok(None),
        }
    }
}

/// Submits, waits, and answers in the OpenAI shape. `fingerprint` (a digest
/// of the request) lets a retry of a call that timed out pick up the same
/// task instead of paying for a second one: some clients retry 5xx answers
/// whatever `x-should-retry` says.
async fn generate(
    app: &App,
    caller: &Caller,
    note: &ReqNote<'_>,
    input: NewTaskInput,
    format: Format,
    fingerprint: String,
) -> AppResult<OpenAiReply> {
    caller.require(apikeys::GENERATE)?;
    let pending_key = format!("v1-timeout:{fingerprint}");
    note.0.summary(task_summary(
        &input.model,
        input
            .size
            .as_deref()
            .or(input.aspect_ratio.as_deref())
            .unwrap_or("-"),
        input.n.unwrap_or(1),
        &input.prompt,
    ));
    let user = caller.user;
    let pk = pending_key.clone();
    let pending = app
        .db
        .run(move |conn| submission::replay(conn, user, &pk, ""))
        .await?;
    let (task, resumed) = match pending {
        Some(t) => (t, true),
        None => super::submit::task(app, user, input).await?,
    };
    note.0.task(&task.public_id);
    if !resumed {
        app.engine.hub.wake();
        app.engine.hub.publish(user, &task.public_id);
    }
    let view = wait(app, user, &task.public_id).await?;
    let (pk, id) = (pending_key.clone(), task.id);
    let timed_out = view.is_none();
    app.db
        .run(move |conn| submission::remember_unanswered(conn, user, &pk, id, timed_out))
        .await?;
    let Some(view) = view else {
        return Ok(after_accept(
            Status::GatewayTimeout,
            &format!(
                "The images are not ready after {} seconds. The task goes on: fetch it with GET /api/v1/tasks/{}.",
                app.config.api.sync_wait_secs, task.public_id
            ),
            "server_error",
            "timeout",
        ));
    };
    match view.task.status {
        TaskStatus::Succeeded => {}
        TaskStatus::Canceled => {
            return Ok(after_accept(
                Status::Conflict,
                "The task was canceled before it finished; its credits were refunded.",
                "invalid_request_error",
                "canceled",
            ))
        }
        _ => {
            let message = view
                .task
                .error
                .clone()
                .unwrap_or_else(|| "The images could not be made.".into());
            return Ok(after_accept(
                Status::BadGateway,
                &format!("{message} The credits were refunded."),
                "server_error",
                "generation_failed",
            ));
        }
    }
    let mut data = Vec::new();
    let now = crate::domain::now();
    for o in &view.outputs {
        match format {
            Format::Url => data.push(json!({
                "url": crate::domain::links::media_url(&app.config, &app.secret, (&o.id, o.expires_at), "", now),
                "revised_prompt": null,
            })),
            Format::B64 => {
                let (user, id, config) = (user, o.id.clone(), app.config.clone());
                let asset = app
                    .db
                    .run(move |conn| crate::domain::assets::for_owner(conn, user, &id))
                    .await?;
                let bytes = rocket::tokio::task::spawn_blocking(move || {
                    crate::domain::assets::read_image(&config, &asset, false)
                })
                .await
                .map_err(AppError::internal)??;
                data.push(json!({
                    "b64_json": base64::engine::general_purpose::STANDARD.encode(bytes),
                    "revised_prompt": null,
                }));
            }
        }
    }
    Ok(OpenAiReply {
        status: Status::Ok,
        body: json!({
            "created": view.task.created_at,
            "data": data,
            "output_format": "png",
            "size": format!("{}x{}", view.task.width, view.task.height),
            // Extension: the native task behind this answer.
            "task_id": view.task.public_id,
        }),
        accepted: true,
    })
}

#[post("/v1/images/generations", data = "<data>")]
async fn generations(
    app: &State<App>,
    caller: Caller,
    idempotency: IdempotencyKey,
    note: ReqNote<'_>,
    data: Data<'_>,
) -> AppResult<OpenAiReply> {
    let body = read_body(data, 64 * 1024).await?;
    let p: ImageParams = parse_json(&body)?;
    let format = check_params(&p)?;
    let mut input = input_from(app, &p, &caller);
    let fingerprint = secrets::sha256_hex(&format!("generations\n{body}"));
    input.idempotency = submission::idempotency(idempotency.0.as_deref(), &fingerprint);
    generate(app, &caller, &note, input, format, fingerprint).await
}

/// Reads the multipart body of an edit: text fields into `ImageParams`,
/// `image` / `image[]` files as references, `mask` as the mask (checked and
/// decoded later, with the rest of the request).
async fn read_edit(
    app: &App,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<(ImageParams, Vec<ImageInput>, Option<ImageInput>, String)> {
    let boundary = content_type
        .filter(|ct| ct.top() == "multipart" && ct.sub() == "form-data")
        .and_then(|ct| {
            ct.params()
                .find(|(k, _)| *k == "boundary")
                .map(|(_, v)| v.to_string())
        })
        .ok_or_else(|| {
            AppError::invalid(
                "image",
                "Send the edit as multipart/form-data with image (or image[]) and prompt fields.",
            )
        })?;
    let per_file = app.config.storage.max_upload_bytes;
    let whole = per_file * (uploads::MAX_REFERENCES as u64 + 1) + 64 * 1024;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(whole)
            .per_field(per_file),
    );
    let stream = data.open((whole + 1).bytes());
    let mut form = multer::Multipart::with_reader_with_constraints(stream, boundary, constraints);
    let mut fields = serde_json::Map::new();
    let mut images: Vec<Vec<u8>> = Vec::new();
    let mut mask: Option<Vec<u8>> = None;
    let too_large = |e: &multer::Error| {
        matches!(
            e,
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. }
        )
    };
    let bad = |e: multer::Error| {
        if too_large(&e) {
            AppError::TooLarge(format!(
                "Each image may be at most {} MB.",
                per_file / 1_048_576
            ))
        } else {
            AppError::invalid(
                "image",
                format!("The multipart body could not be read: {e}"),
            )
        }
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" | "image[]" => {
                if images.len() >= uploads::MAX_REFERENCES {
                    return Err(AppError::invalid(
                        "image",
                        format!("At most {} images per edit.", uploads::MAX_REFERENCES),
                    ));
                }
                images.push(field.bytes().await.map_err(bad)?.to_vec());
            }
            "mask" => mask = Some(field.bytes().await.map_err(bad)?.to_vec()),
            "" => {}
            _ => {
                let text = field.text().await.map_err(bad)?;
                let value = match name.as_str() {
                    "n" | "seed" => match text.trim().parse::<i64>() {
                        Ok(v) => json!(v),
                        Err(_) => {
                            let field: &'static str = if name == "n" { "n" } else { "seed" };
                            return Err(AppError::invalid(
                                field,
                                format!("{name} is a whole number."),
                            ));
                        }
                    },
                    "stream" => json!(text.trim() == "true"),
                    _ => json!(text),
                };
                fields.insert(name, value);
            }
        }
    }
    if images.is_empty() {
        return Err(AppError::invalid(
            "image",
            "Attach the image to edit as image (or image[]).",
        ));
    }
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"edits\n");
        h.update(Value::Object(fields.clone()).to_string().as_bytes());
        for i in &images {
            h.update(Sha256::digest(i));
        }
        if let Some(m) = &mask {
            h.update(b"mask");
            h.update(Sha256::digest(m));
        }
        hex::encode(h.finalize())
    };
    let params: ImageParams = serde_json::from_value(Value::Object(fields))
        .map_err(|e| AppError::invalid("body", format!("A field has the wrong type: {e}")))?;
    let refs = images.into_iter().map(ImageInput::Bytes).collect();
    Ok((params, refs, mask.map(ImageInput::Bytes), fingerprint))
}

#[post("/v1/images/edits", data = "<data>")]
async fn edits(
    app: &State<App>,
    caller: Caller,
    idempotency: IdempotencyKey,
    note: ReqNote<'_>,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<OpenAiReply> {
    caller.require(apikeys::GENERATE)?;
    let (p, references, mask, fingerprint) = read_edit(app, content_type, data).await?;
    let format = check_params(&p)?;
    let mut input = input_from(app, &p, &caller);
    input.references = references;
    input.mask = mask;
    input.idempotency = submission::idempotency(idempotency.0.as_deref(), &fingerprint);
    generate(app, &caller, &note, input, format, fingerprint).await
}

#[get("/v1/models")]
fn models(app: &State<App>, caller: Caller) -> OpenAiReply {
    let data: Vec<Value> = app
        .engine
        .catalog
        .models
        .iter()
        .filter(|m| caller.may_use(&m.id))
        .map(|m| json!({ "id": m.id, "object": "model", "created": 0, "owned_by": "novart" }))
        .collect();
    OpenAiReply {
        status: Status::Ok,
        body: json!({ "object": "list", "data": data }),
        accepted: false,
    }
}

pub fn routes() -> Vec<Route> {
    routes![generations, edits, models]
}
