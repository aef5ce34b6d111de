//! The API's machine-readable description (`GET /api/openapi.json`, OpenAPI
//! 3.1) and its human reference (`/docs/api`). A test checks that every API
//! route is described and that the Task schema matches what the API sends.

use rocket::{get, routes, Route, State};
use serde_json::{json, Value};

use super::api::ApiJson;
use super::render::{Page, PageCtx};
use crate::error::AppResult;
use crate::App;

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for c in codes {
        let d = match c {
            400 => "Invalid input; `error.param` names the field.",
            401 => "Missing, malformed, revoked or expired key (or a key in the URL).",
            402 => "Not enough credits.",
            403 => "The key lacks the permission or the model, or the account is suspended (`code: banned`; the message gives the reason and the end).",
            404 => "No such task (or it belongs to someone else).",
            409 => "Idempotency-Key reused with another body, or the task already finished.",
            413 => "Body or image too large.",
            422 => "The prompt was blocked by the content rules (`code: content_blocked`); nothing was charged.",
            503 => "The content check is unavailable, or the server is busy reading other images; try again after Retry-After (if sent).",
            429 => "Rate limit, daily cap or concurrency reached; see Retry-After and x-ratelimit-*.",
            502 => "The generation failed upstream (credits refunded); `x-should-retry: false`.",
            504 => "Not finished within [api] sync_wait_secs; the task goes on. `x-should-retry: false`.",
            _ => "Error.",
        };
        m.insert(c.to_string(), error_response(d));
    }
    m
}

fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn op(summary: &str, tag: &str, success: (&str, Value), errs: &[u16]) -> Value {
    let mut responses = errors(errs);
    responses.insert(success.0.to_string(), success.1);
    json!({ "summary": summary, "tags": [tag], "responses": responses })
}

fn with(mut op: Value, key: &str, value: Value) -> Value {
    op[key] = value;
    op
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn task_id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "example": "tsk_3k2j..." } }])
}

/// The OpenAPI 3.1 document for this instance.
pub fn openapi(app: &App) -> Value {
    let nullable_str = json!({ "type": ["string", "null"] });
    let nullable_int = json!({ "type": ["integer", "null"] });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Novart Studio API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Native asynchronous task API under /api/v1 and an OpenAI-compatible images API under /v1. Authenticate with `Authorization: Bearer nva_<prefix>_<secret>` (keys in the URL are refused). Every response has `x-request-id`; key-authenticated responses carry `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds).",
        },
        "servers": [{ "url": app.config.public_url() }],
        "security": [{ "bearer": [] }],
        "tags": [
            { "name": "tasks", "description": "Native asynchronous generation" },
            { "name": "account", "description": "Balance, limits, codes" },
            { "name": "openai", "description": "OpenAI-compatible images API" },
            { "name": "media", "description": "Stored images behind signed links" },
        ],
        "paths": {
            "/api/v1/models": { "get": op("Models this key may use", "tasks", ("200", ok("Models", "ModelList")), &[401, 403, 429]) },
            "/api/v1/account": { "get": op("The account, its credits, and the key's limits and usage (needs read_account)", "account", ("200", ok("Account", "Account")), &[401, 403, 429]) },
            "/api/v1/redeem": { "post": with(op("Redeem a code (needs read_account)", "account", ("200", ok("Credited", "RedeemResult")), &[400, 401, 403, 429]), "requestBody", json_body("RedeemRequest")) },
            "/api/v1/tasks": {
                "post": with(with(op("Create a task (needs generate). Charged at once; refunded if it fails or is canceled.", "tasks",
                        ("201", json!({ "description": "Created (200 when an Idempotency-Key replays an earlier task)", "headers": { "Location": { "schema": { "type": "string" } } }, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Task" } } } })),
                        &[400, 401, 402, 403, 409, 413, 422, 429, 503]),
                    "requestBody", json_body("CreateTask")),
                    "parameters", json!([{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 255 }, "description": "The same key and body return the same task; the same key with another body is 409." }])),
                "get": with(op("List tasks, newest first (needs read_tasks)", "tasks", ("200", ok("A page of tasks", "TaskList")), &[400, 401, 403, 429]),
                    "parameters", json!([
                        { "name": "status", "in": "query", "schema": { "$ref": "#/components/schemas/TaskStatus" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 20 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" }, "description": "`next_cursor` of the previous page" },
                    ])),
            },
            "/api/v1/tasks/{id}": { "get": with(op("One task (needs read_tasks)", "tasks", ("200", ok("The task", "Task")), &[401, 403, 404, 429]), "parameters", task_id_param()) },
            "/api/v1/tasks/{id}/preview": { "get": with(op("The latest preview of a running task (needs read_tasks): JPEG or PNG, not cached; 404 until the image service sends one and after the task ends", "tasks",
                ("200", json!({ "description": "The preview image", "content": { "image/jpeg": { "schema": { "type": "string", "format": "binary" } }, "image/png": { "schema": { "type": "string", "format": "binary" } } } })), &[401, 403, 404, 429]), "parameters", task_id_param()) },
            "/api/v1/tasks/{id}/cancel": { "post": with(op("Cancel a queued or running task (needs generate); refunds it", "tasks", ("200", ok("The canceled task", "Task")), &[401, 403, 404, 409, 429]), "parameters", task_id_param()) },
            "/api/v1/uploads": { "post": with(op("Upload a reference image (raw body; needs generate)", "tasks", ("201", ok("Stored", "Upload")), &[400, 401, 403, 413, 429, 503]),
                "requestBody", json!({ "required": true, "content": { "image/png": { "schema": { "type": "string", "format": "binary" } }, "image/jpeg": { "schema": { "type": "string", "format": "binary" } }, "image/webp": { "schema": { "type": "string", "format": "binary" } } } })) },
            "/api/v1/events": { "get": with(op("Live task updates for the signed-in studio (Server-Sent Events; session cookie + csrf_token, not API keys)", "tasks",
                ("200", json!({ "description": "An event stream: `ready`, then `task` events with a Task as data and `message` events (new inbox messages, with the message id as the event id; a reconnect's Last-Event-ID resumes after it)", "content": { "text/event-stream": { "schema": { "type": "string" } } } })), &[401, 403]),
                "parameters", json!([
                    { "name": "csrf_token", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "messages_after", "in": "query", "required": false, "description": "Send messages newer than this id (default: only new ones)", "schema": { "type": "integer" } }
                ])) },
            "/v1/images/generations": { "post": with(op("Generate images, waiting for them (OpenAI-compatible; needs generate)", "openai", ("200", ok("Images", "ImagesResponse")), &[400, 401, 402, 403, 409, 422, 429, 502, 503, 504]), "requestBody", json_body("ImagesRequest")) },
            "/v1/images/edits": { "post": with(op("Edit an image, optionally with a mask (OpenAI-compatible; needs generate)", "openai", ("200", ok("Images", "ImagesResponse")), &[400, 401, 402, 403, 409, 413, 422, 429, 502, 503, 504]),
                "requestBody", json!({ "required": true, "content": { "multipart/form-data": { "schema": { "$ref": "#/components/schemas/ImageEditRequest" } } } })) },
            "/v1/models": { "get": op("Models (OpenAI shape)", "openai", ("200", ok("Models", "OpenAiModelList")), &[401, 429]) },
            "/media/{id}": { "get": with(with(op("A stored image (signed link, or the owner's session)", "media",
                ("200", json!({ "description": "The image", "content": { "image/png": { "schema": { "type": "string", "format": "binary" } }, "image/jpeg": { "schema": { "type": "string", "format": "binary" } } } })), &[401, 403, 404]),
                "parameters", json!([
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "expires", "in": "query", "schema": { "type": "integer" } },
                    { "name": "signature", "in": "query", "schema": { "type": "string" } },
                ])), "security", json!([])) },
            "/healthz": { "get": with(op("Liveness and database check", "media", ("200", json!({ "description": "Healthy", "content": { "application/json": { "schema": { "type": "object", "properties": { "status": { "type": "string" }, "db": { "type": "string" }, "version": { "type": "string" } } } } } })), &[]), "security", json!([])) },
        },
        "webhooks": {
            "task.finished": { "post": {
                "summary": "A task succeeded, failed or was canceled (to the task's webhook_url). Signed per Standard Webhooks with the account's whsec_ secret; answer 2xx. 410 stops retries; 3xx counts as a failure.",
                "parameters": [
                    { "name": "webhook-id", "in": "header", "required": true, "schema": { "type": "string" }, "description": "Same on every retry: use it to de-duplicate." },
                    { "name": "webhook-timestamp", "in": "header", "required": true, "schema": { "type": "integer" } },
                    { "name": "webhook-signature", "in": "header", "required": true, "schema": { "type": "string" }, "description": "v1,<base64 HMAC-SHA256 of id.timestamp.body>" },
                ],
                "requestBody": json_body("WebhookEvent"),
                "responses": { "200": { "description": "Received" } },
            } },
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "nva_<prefix>_<secret>" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object", "required": ["message", "type", "param", "code"], "properties": {
                    "message": { "type": "string" }, "type": { "type": "string" }, "param": nullable_str, "code": nullable_str } } } },
                "TaskStatus": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"] },
                "Output": { "type": "object", "required": ["id", "url", "preview_url", "width", "height", "expires_at", "url_expires_at"], "properties": {
                    "id": { "type": "string" }, "url": { "type": "string", "format": "uri", "description": "Signed link to the full PNG" },
                    "preview_url": { "type": "string", "format": "uri" }, "width": { "type": "integer" }, "height": { "type": "integer" },
                    "expires_at": { "type": "integer", "description": "When the image is deleted (unix seconds)" },
                    "url_expires_at": { "type": "integer", "description": "When the signed links stop working" } } },
                "Task": { "type": "object", "required": ["id", "status", "model", "prompt", "negative_prompt", "width", "height", "n", "seed", "webhook_url", "cost", "progress", "attempts", "error", "notice", "queue", "preview_url", "created_at", "started_at", "finished_at", "outputs"], "properties": {
                    "id": { "type": "string" }, "status": { "$ref": "#/components/schemas/TaskStatus" }, "model": { "type": "string" },
                    "prompt": { "type": "string" }, "negative_prompt": { "type": "string" }, "width": { "type": "integer" }, "height": { "type": "integer" },
                    "n": { "type": "integer" }, "seed": { "type": "integer" }, "webhook_url": nullable_str, "cost": { "type": "integer", "description": "Credits charged" },
                    "progress": { "type": "number", "minimum": 0, "maximum": 1 }, "attempts": { "type": "integer" }, "error": nullable_str,
                    "notice": { "type": ["string", "null"], "description": "Set when the images differ from the request (fewer or more than n, another size); one sentence per line" },
                    "preview_url": { "type": ["string", "null"], "format": "uri", "description": "While running: the latest preview (JPEG or PNG, 404 until the image service sends one)" },
                    "queue": { "type": ["object", "null"], "description": "While queued: the place in line (1 = next) and the seconds until the images should be ready (null when unknown)",
                               "required": ["position", "eta_secs"], "properties": { "position": { "type": "integer", "minimum": 1 }, "eta_secs": nullable_int } },
                    "created_at": { "type": "integer" }, "started_at": nullable_int, "finished_at": nullable_int,
                    "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/Output" } } } },
                "TaskList": { "type": "object", "required": ["object", "data", "next_cursor"], "properties": { "object": { "const": "list" }, "data": { "type": "array", "items": { "$ref": "#/components/schemas/Task" } }, "next_cursor": nullable_str } },
                "CreateTask": { "type": "object", "required": ["prompt"], "additionalProperties": false, "properties": {
                    "prompt": { "type": "string", "maxLength": 4000 }, "negative_prompt": { "type": "string", "maxLength": 2000 },
                    "model": { "type": "string", "description": "Default: the first model" }, "size": { "type": "string", "example": "1024x1024" },
                    "aspect_ratio": { "type": "string", "example": "16:9" }, "resolution": { "type": "integer" }, "n": { "type": "integer", "minimum": 1 },
                    "seed": { "type": "integer", "minimum": 0, "maximum": 4294967295u64 },
                    "reference_images": { "type": "array", "maxItems": 4, "items": { "type": "string" }, "description": "Upload ids (ref_...) or base64 images" },
                    "mask": { "type": "string", "description": "For an edit: upload id or base64 PNG, transparent where the first reference may change" },
                    "webhook_url": { "type": "string", "format": "uri" } } },
                "Upload": { "type": "object", "required": ["id", "width", "height", "preview_url", "expires_at"], "properties": { "id": { "type": "string" }, "width": { "type": "integer" }, "height": { "type": "integer" }, "preview_url": { "type": "string" }, "expires_at": { "type": "integer" } } },
                "Model": { "type": "object", "required": ["id", "name", "price", "max_n", "reference_images", "sizes"], "properties": {
                    "id": { "type": "string" }, "name": { "type": "string" }, "description": { "type": "string" }, "price": { "type": "integer", "description": "Credits per image" },
                    "max_n": { "type": "integer" }, "reference_images": { "type": "boolean" }, "builtin": { "type": "boolean" },
                    "sizes": { "type": "array", "items": { "type": "object", "properties": { "size": { "type": "string" }, "width": { "type": "integer" }, "height": { "type": "integer" }, "aspect_ratio": { "type": "string" }, "resolution": { "type": "integer" } } } } } },
                "ModelList": { "type": "object", "required": ["object", "data"], "properties": { "object": { "const": "list" }, "data": { "type": "array", "items": { "$ref": "#/components/schemas/Model" } } } },
                "Account": { "type": "object", "required": ["email", "display_name", "balance", "bonus", "available"], "properties": {
                    "email": { "type": "string" }, "display_name": { "type": "string" }, "balance": { "type": "integer" }, "bonus": { "type": "integer" }, "available": { "type": "integer" },
                    "key": { "type": "object", "properties": { "prefix": { "type": "string" }, "name": { "type": "string" }, "permissions": { "type": "array", "items": { "type": "string" } }, "models": { "type": ["array", "null"], "items": { "type": "string" } } } },
                    "limits": { "type": "object", "properties": { "rpm": { "type": "integer" }, "concurrency": { "type": "integer" }, "daily_cap": { "type": "integer" } } },
                    "usage": { "type": "object", "properties": { "tasks_today": { "type": "integer" }, "active_tasks": { "type": "integer" } } } } },
                "RedeemRequest": { "type": "object", "required": ["code"], "properties": { "code": { "type": "string" } } },
                "RedeemResult": { "type": "object", "required": ["credited", "balance", "bonus"], "properties": { "credited": { "type": "integer" }, "balance": { "type": "integer" }, "bonus": { "type": "integer" } } },
                "ImagesRequest": { "type": "object", "required": ["prompt"], "properties": {
                    "prompt": { "type": "string" }, "model": { "type": "string", "description": "A studio model id; OpenAI names (dall-e-*, gpt-image-*) mean the default model" },
                    "n": { "type": "integer" }, "size": { "type": "string", "description": "WxH or auto" }, "response_format": { "enum": ["url", "b64_json"], "default": "url" },
                    "output_format": { "enum": ["png"] }, "quality": { "type": "string" }, "style": { "type": "string" }, "user": { "type": "string" }, "background": { "type": "string" },
                    "negative_prompt": { "type": "string", "description": "Extension" }, "seed": { "type": "integer", "description": "Extension" }, "aspect_ratio": { "type": "string", "description": "Extension" } } },
                "ImageEditRequest": { "type": "object", "required": ["image", "prompt"], "properties": {
                    "image": { "type": "string", "format": "binary", "description": "Also accepted as repeated image[] parts (up to 4)" },
                    "mask": { "type": "string", "format": "binary", "description": "PNG, transparent where the image may change" },
                    "prompt": { "type": "string" }, "model": { "type": "string" }, "n": { "type": "integer" }, "size": { "type": "string" }, "response_format": { "enum": ["url", "b64_json"] } } },
                "ImagesResponse": { "type": "object", "required": ["created", "data"], "properties": {
                    "created": { "type": "integer" }, "data": { "type": "array", "items": { "type": "object", "properties": { "url": { "type": "string" }, "b64_json": { "type": "string" }, "revised_prompt": { "type": "null" } } } },
                    "output_format": { "type": "string" }, "size": { "type": "string" }, "task_id": { "type": "string", "description": "Extension: the native task" } } },
                "OpenAiModelList": { "type": "object", "required": ["object", "data"], "properties": { "object": { "const": "list" }, "data": { "type": "array", "items": { "type": "object", "required": ["id", "object", "created", "owned_by"], "properties": { "id": { "type": "string" }, "object": { "const": "model" }, "created": { "type": "integer" }, "owned_by": { "type": "string" } } } } } },
                "WebhookEvent": { "type": "object", "required": ["type", "timestamp", "data"], "properties": {
                    "type": { "enum": ["task.succeeded", "task.failed", "task.canceled"] }, "timestamp": { "type": "string", "format": "date-time" }, "data": { "$ref": "#/components/schemas/Task" } } },
            },
        },
    })
}

#[get("/api/openapi.json")]
fn openapi_json(app: &State<App>) -> ApiJson {
    ApiJson::ok(openapi(app))
}

#[get("/docs/api")]
fn docs_page(page: PageCtx<'_>) -> AppResult<Page> {
    let base = page.app.config.public_url();
    page.render("docs_api.html", json!({ "base": base }))
}

pub fn routes() -> Vec<Route> {
    routes![openapi_json, docs_page]
}
