//! The studio (prompt panel + live task cards) and the library (a grid of
//! the creator's images). Both render on the server; studio.js adds live
//! updates over SSE and submits through the JSON API. A task card has one
//! template (`partials/task_card.html`), used for the page and for updates.

use rocket::http::uri::Origin;
use rocket::http::Status;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, Route};
use serde_json::{json, Value};
use std::sync::Arc;

use super::auth::{csrf_form, EmptyForm};
use super::guards::{ClientIp, CsrfForm, CsrfProtected, CurrentUser};
use super::render::{query_param, Page, PageCtx};
use crate::domain::tasks::{self, NewTaskInput, QueueSpot, TaskView};
use crate::domain::{assets, now};
use crate::error::{AppError, AppResult};
use crate::templates::format_time;

csrf_form!(StudioForm {
    prompt,
    negative_prompt,
    model,
    aspect_ratio,
    resolution,
    n,
    seed,
    webhook_url,
    submit_key
});

/// What a task card shows, its descriptions written in the page's language
/// here rather than by many template calls per card.
pub fn card(page: &PageCtx<'_>, view: &TaskView, model_name: &str) -> Value {
    let t = &view.task;
    let c = page.app.templates.catalogs();
    let images = if t.n == 1 {
        "units.images_one"
    } else {
        "units.images"
    };
    let images = c.text(page.lang, images, &[("n", t.n.to_string())]);
    let seed = c.text(page.lang, "task.seed", &[("seed", t.seed.to_string())]);
    let now = crate::domain::now();
    let mut card = json!({
        "meta": format!("{model_name} · {}×{} · {images} · {seed}", t.width, t.height),
        "id": t.public_id,
        "status": t.status,
        "prompt": t.prompt,
        "negative_prompt": t.negative_prompt,
        "model": t.model,
        "model_name": model_name,
        "width": t.width,
        "height": t.height,
        "n": t.n,
        "seed": t.seed,
        "cost": t.cost,
        "progress_pct": (t.progress * 100.0).round() as i64,
        "error": t.error,
        "created": format_time(t.created_at),
        "active": !t.status.is_final(),
    });
    if t.status == crate::model::TaskStatus::Running && view.preview_seq > 0 {
        card["preview_url"] = format!(
            "/studio/tasks/{}/preview?v={}",
            t.public_id, view.preview_seq
        )
        .into();
    }
    card["notices"] = t
        .notice
        .iter()
        .flat_map(|n| n.lines())
        .map(|line| c.message(page.lang, line))
        .collect();
    let state = state_words(page, t, view.queue);
    card["state"] = state.words.into();
    card["reason"] = state.reason.into();
    card["retry_at"] = state.retry_at.into();
    card["references"] = view
        .references
        .iter()
        .map(|r| json!({"id": r.id, "preview_url": r.preview_url}))
        .collect();
    let outputs = view.outputs.iter().map(|o| {
        let left = crate::templates::time_left(c, page.lang, o.expires_at - now);
        let expires = c.text(page.lang, "task.expires_in", &[("left", left)]);
        json!({
            "id": o.id, "url": o.url, "preview_url": o.preview_url, "width": o.width, "height": o.height,
            "meta": format!("{model_name} · {}×{} · {seed} · {expires}", o.width, o.height),
        })
    });
    // Moved in: `json!` would copy a nested array value by value.
    card["outputs"] = Value::Array(outputs.collect());
    card
}

/// What an unfinished task is doing, in words: waiting for a GPU, trying
/// again after the image service failed (and why), creating.
struct StateWords {
    words: Option<String>,
    reason: Option<String>,
    /// When a retry is due (the page counts down to it).
    retry_at: Option<i64>,
}

/// "40 s", "3 min".
fn eta_words(c: &crate::i18n::Catalogs, lang: crate::i18n::Lang, secs: u32) -> String {
    if secs < 90 {
        c.text(lang, "task.eta_seconds", &[("n", secs.to_string())])
    } else {
        c.text(
            lang,
            "task.eta_minutes",
            &[("n", secs.div_ceil(60).to_string())],
        )
    }
}

fn state_words(page: &PageCtx<'_>, t: &crate::model::Task, queue: Option<QueueSpot>) -> StateWords {
    let c = page.app.templates.catalogs();
    let text = |key: &str, args: &[(&str, String)]| Some(c.text(page.lang, key, args));
    let retrying = t.attempts > 0 && t.error.is_some();
    // Sent back untried: every image service of its model is down.
    let held = t.attempts == 0 && t.error.is_some();
    match t.status {
        crate::model::TaskStatus::Queued if retrying => StateWords {
            words: text("task.state_retrying", &[]),
            reason: t.error.as_deref().map(|e| c.message(page.lang, e)),
            retry_at: Some(t.not_before),
        },
        crate::model::TaskStatus::Queued if held => StateWords {
            words: text("task.state_held", &[]),
            reason: t.error.as_deref().map(|e| c.message(page.lang, e)),
            retry_at: None,
        },
        crate::model::TaskStatus::Queued => StateWords {
            words: match queue {
                Some(QueueSpot {
                    position,
                    eta_secs: Some(eta),
                }) => text(
                    "task.state_waiting_eta",
                    &[
                        ("n", position.to_string()),
                        ("eta", eta_words(c, page.lang, eta)),
                    ],
                ),
                Some(QueueSpot { position, .. }) => {
                    text("task.state_waiting_at", &[("n", position.to_string())])
                }
                None => text("task.state_waiting", &[]),
            },
            reason: None,
            retry_at: None,
        },
        crate::model::TaskStatus::Running if t.progress > 0.0 => StateWords {
            words: text(
                "task.state_creating_pct",
                &[("pct", ((t.progress * 100.0).round() as i64).to_string())],
            ),
            reason: None,
            retry_at: None,
        },
        crate::model::TaskStatus::Running => StateWords {
            words: text("task.state_creating", &[]),
            reason: None,
            retry_at: None,
        },
        _ => StateWords {
            words: None,
            reason: None,
            retry_at: None,
        },
    }
}

/// A task's card as HTML, the same for the studio's list and for the live
/// update of one card; rendered once per distinct content (see
/// `Templates::fragment`).
fn card_html(page: &PageCtx<'_>, view: &TaskView) -> AppResult<Arc<str>> {
    let mut view = view.clone();
    view.preview_seq = page.app.engine.hub.preview_seq(&view.task.public_id);
    let view = &view;
    page.fragment("partials/task_card.html", view, || {
        let task = card(page, view, &model_name(page, &view.task.model));
        [("task".into(), task)].into_iter().collect()
    })
}

/// Models with their sizes grouped by aspect ratio, for the studio form.
fn models_view(page: &PageCtx<'_>) -> Vec<Value> {
    // The built-in model's own name and text are in the catalogue; names an
    // operator configured are shown as written.
    let tr = |s: &str| page.app.templates.catalogs().message(page.lang, s);
    page.app
        .engine
        .catalog
        .models
        .iter()
        .map(|m| {
            let aspects: Vec<Value> = m
                .aspect_ratios()
                .into_iter()
                .map(|ar| {
                    let mut sizes: Vec<&crate::domain::catalog::SizeOption> =
                        m.sizes.iter().filter(|s| s.aspect_ratio == ar).collect();
                    sizes.sort_by_key(|s| s.resolution);
                    json!({
                        "ratio": ar,
                        "slug": ar.replace(':', "-"),
                        "sizes": sizes.iter().map(|s| json!({"resolution": s.resolution, "size": s.size})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "id": m.id, "name": tr(&m.name), "description": tr(&m.description), "price": m.price,
                "max_n": m.max_n, "reference_images": m.reference_images, "builtin": m.builtin,
                "aspects": aspects,
            })
        })
        .collect()
}

/// A model's name as shown in the page's language.
pub(super) fn model_name(page: &PageCtx<'_>, id: &str) -> String {
    page.app
        .engine
        .catalog
        .model(id)
        .map(|m| page.app.templates.catalogs().message(page.lang, &m.name))
        .unwrap_or_else(|_| id.to_string())
}

async fn studio_page(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    status: Status,
    form: Value,
    error: Option<Value>,
) -> AppResult<Page> {
    let user = me.0.user.id;
    let (config, catalog) = (
        page.app.engine.config.clone(),
        page.app.engine.catalog.clone(),
    );
    let (views, available) = page
        .app
        .db
        .run(move |conn| {
            let mut views = tasks::list(conn, user, None, None, 24)?.0;
            tasks::place_in_queue(conn, &config, &catalog, &mut views)?;
            Ok((views, crate::domain::wallet::get(conn, user)?.total()))
        })
        .await?;
    // One string for the list: the page copies it once.
    let mut cards = String::new();
    for v in &views {
        cards.push_str(&card_html(page, v)?);
    }
    let mut error = error;
    if let Some(e) = error.as_mut() {
        page.translate_message(e);
    }
    // The form (models, sizes, what was typed, the error, the balance) is a
    // fragment too: the same form again is a lookup.
    let form_html = page.fragment(
        "partials/studio_form.html",
        &(
            form.to_string(),
            error.as_ref().map(Value::to_string),
            available,
        ),
        || {
            let models = models_view(page);
            let selected = form["model"]
                .as_str()
                .and_then(|id| models.iter().find(|m| m["id"] == id))
                .unwrap_or(&models[0])
                .clone();
            // Embedded in <script type="application/json">: no '<', '>' or
            // '&' can survive, so the data cannot close the element.
            let models_json = serde_json::to_string(&models)
                .unwrap_or_default()
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            let config = &page.app.config.storage;
            let mut values: serde_json::Map<String, Value> = [
                ("model", selected),
                ("models_json", Value::String(models_json)),
                ("models", Value::Array(models)),
                ("form", form.clone()),
                ("available", available.into()),
                (
                    "max_upload_mb",
                    (config.max_upload_bytes / 1_048_576).into(),
                ),
                ("reference_hours", config.reference_retention_hours.into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(e) = &error {
                values.insert("error".into(), e.clone());
            }
            values
        },
    )?;
    let mut values = json!({
        "form_html": &*form_html,
        "result_hours": page.app.config.storage.result_retention_hours,
        // Outside the cached form: a fresh key per page, so sending the same
        // form twice (a double click, a reload that re-posts) makes one task.
        "submit_key": crate::domain::secrets::random_token(16),
    });
    values["cards"] = Value::String(cards);
    // Counted here: `{% if cards %}` would have Tera escape the whole list
    // only to see that it is not empty.
    values["card_count"] = views.len().into();
    page.render_status(status, "studio.html", values)
}

#[get("/studio")]
async fn studio(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Page> {
    // "Use these settings again": ?from=<task id> fills the form.
    let mut form = json!({});
    if let Some(from) = query_param(uri, "from") {
        let user = me.0.user.id;
        if let Ok(v) = page
            .app
            .db
            .run(move |conn| tasks::get(conn, user, &from))
            .await
        {
            let t = v.task;
            let ar = crate::domain::catalog::aspect_label(t.width, t.height);
            form = json!({
                "prompt": t.prompt, "negative_prompt": t.negative_prompt, "model": t.model,
                "aspect_ratio": ar, "resolution": t.width.max(t.height), "n": t.n, "seed": t.seed,
                "webhook_url": t.webhook_url,
            });
        }
    }
    studio_page(&page, &me, Status::Ok, form, None).await
}

/// The form without JavaScript: queue and come back to the studio.
#[post("/studio", data = "<form>")]
async fn submit(
    page: PageCtx<'_>,
    me: CurrentUser,
    ip: ClientIp,
    form: CsrfForm<StudioForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let parse_u = |s: &str| s.trim().parse::<u32>().ok();
    let input = NewTaskInput {
        prompt: f.prompt.clone(),
        negative_prompt: Some(f.negative_prompt.clone()),
        model: f.model.clone(),
        size: None,
        aspect_ratio: Some(f.aspect_ratio.clone()).filter(|s| !s.is_empty()),
        resolution: parse_u(&f.resolution),
        n: parse_u(&f.n),
        seed: match f.seed.trim() {
            "" => None,
            s => Some(
                s.parse::<i64>()
                    .map_err(|_| AppError::invalid("seed", "The seed is a whole number."))
                    .unwrap_or(-1),
            ),
        },
        webhook_url: Some(f.webhook_url.clone()),
        references: Vec::new(),
        mask: None,
        api_key: None,
        idempotency: {
            let key = format!("studio:{}", f.submit_key.trim());
            let request = [
                &f.prompt,
                &f.negative_prompt,
                &f.model,
                &f.aspect_ratio,
                &f.resolution,
                &f.n,
                &f.seed,
                &f.webhook_url,
            ]
            .map(|s| s.as_str())
            .join("\n");
            let key = (!f.submit_key.trim().is_empty()).then_some(key);
            crate::domain::submission::idempotency(key.as_deref(), &request)
        },
        client_ip: ip.0.map(|i| i.to_string()),
    };
    let user = me.0.user.id;
    let result = super::submit::task(page.app, user, input).await;
    match result {
        Ok((task, _)) => {
            page.app.engine.hub.wake();
            page.app.engine.hub.publish(user, &task.public_id);
            Ok(Ok(Flash::success(
                Redirect::to("/studio"),
                "Your task is queued.",
            )))
        }
        Err(
            e @ (AppError::Invalid { .. }
            | AppError::InsufficientBalance(_)
            | AppError::ContentBlocked(_)
            | AppError::Banned(_)
            | AppError::Unavailable(_)
            | AppError::Busy { .. }),
        ) => {
            let status = Status::from_code(e.status()).unwrap_or(Status::BadRequest);
            let (field, message, wallet) = match e {
                AppError::Invalid { field, message } => (field, message, false),
                e @ AppError::InsufficientBalance(_) => (None, e.to_string(), true),
                e @ AppError::ContentBlocked(_) => (Some("prompt"), e.to_string(), false),
                other => (None, other.to_string(), false),
            };
            let form = json!({
                "prompt": f.prompt, "negative_prompt": f.negative_prompt, "model": f.model,
                "aspect_ratio": f.aspect_ratio, "resolution": f.resolution, "n": f.n, "seed": f.seed,
                "webhook_url": f.webhook_url,
            });
            let error = json!({ "field": field, "message": message, "wallet": wallet });
            Ok(Err(
                studio_page(&page, &me, status, form, Some(error)).await?
            ))
        }
        Err(e) => Err(e),
    }
}

/// One task card as HTML, for the live view.
#[get("/studio/tasks/<id>/card")]
async fn task_card(page: PageCtx<'_>, me: CurrentUser, id: &str) -> AppResult<Page> {
    let (user, id) = (me.0.user.id, id.to_string());
    let (config, catalog) = (
        page.app.engine.config.clone(),
        page.app.engine.catalog.clone(),
    );
    let view = page
        .app
        .db
        .run(move |conn| {
            let mut view = tasks::get(conn, user, &id)?;
            tasks::place_in_queue(conn, &config, &catalog, std::slice::from_mut(&mut view))?;
            Ok(view)
        })
        .await?;
    Ok(Page {
        status: Status::Ok,
        html: card_html(&page, &view)?.to_string(),
        retry_after: None,
    })
}

#[post("/studio/tasks/<id>/cancel", data = "<_form>")]
async fn cancel(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, id) = (me.0.user.id, id.to_string());
    let result = page
        .app
        .db
        .run(move |conn| tasks::cancel(conn, user, &id))
        .await;
    Ok(match result {
        Ok(v) => {
            page.app.engine.hub.canceled(user, &v.task.public_id);
            Flash::success(Redirect::to("/studio"), "The task is canceled.")
        }
        Err(AppError::Conflict(m)) => Flash::error(Redirect::to("/studio"), m),
        Err(e) => return Err(e),
    })
}

#[get("/library")]
async fn library(page: PageCtx<'_>, me: CurrentUser, uri: &Origin<'_>) -> AppResult<Page> {
    let model = query_param(uri, "model").filter(|m| !m.is_empty());
    let before = query_param(uri, "before").and_then(|b| b.parse::<i64>().ok());
    // Date filter: made within the last hour / 24 hours, or any time.
    let period = query_param(uri, "since").filter(|p| p == "hour" || p == "day");
    let since = period
        .as_deref()
        .map(|p| now() - if p == "hour" { 3600 } else { 86_400 });
    let text = query_param(uri, "q")
        .map(|q| q.trim().chars().take(200).collect::<String>())
        .filter(|q| !q.is_empty());
    let filter = assets::LibraryFilter {
        model: model.clone(),
        since,
        text: text.clone(),
    };
    let user = me.0.user.id;
    const PAGE: u32 = 48;
    let (rows, (total, first_expiry)) = page
        .app
        .db
        .run(move |conn| {
            assets::library(conn, user, &filter, before.map(crate::model::AssetId), PAGE)
        })
        .await?;
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|r| r.asset.id.0))
        .flatten();
    let mut tiles = String::new();
    for r in &rows {
        tiles.push_str(&page.fragment("partials/library_tile.html", r, || {
            [("it".into(), library_item(&page, r))]
                .into_iter()
                .collect()
        })?);
    }
    let mut values = json!({
            "models": page.app.engine.catalog.models.iter().map(|m| json!({ "id": m.id, "name": model_name(&page, &m.id) })).collect::<Vec<_>>(),
            "model": model,
            "since": period,
            "q": text,
            "total": total,
            "first_expiry": first_expiry.map(|t| crate::templates::time_left(page.app.templates.catalogs(), page.lang, t - now())),
            "next": next,
            "allow_delete": true,
            "result_hours": page.app.config.storage.result_retention_hours,
    });
    values["tiles"] = Value::String(tiles);
    values["tile_count"] = rows.len().into();
    page.render("library.html", values)
}

/// One library image's tile values, with its texts in the page's language.
fn library_item(page: &PageCtx<'_>, r: &assets::LibraryItem) -> Value {
    let (c, lang, a) = (page.app.templates.catalogs(), page.lang, &r.asset);
    let name = model_name(page, &r.model);
    let made = c.text(
        lang,
        "library.made_at",
        &[("when", format_time(a.created_at))],
    );
    let left = crate::templates::time_left(c, lang, a.expires_at - now());
    let expires = c.text(lang, "task.expires_in", &[("left", left.clone())]);
    json!({
        "id": a.public_id,
        "url": format!("/media/{}", a.public_id),
        "preview_url": format!("/media/{}/preview", a.public_id),
        "width": a.width, "height": a.height,
        "prompt": r.prompt,
        "meta": format!("{name} · {}×{} · {made} · {expires}", a.width, a.height),
        "left": left,
        "task_id": r.task_public_id,
        "published": a.published_at.is_some(),
        "share_url": a.share_id.as_ref().map(|s| format!("{}/s/{s}", page.app.config.public_url())),
    })
}

#[post("/library/<id>/delete", data = "<_form>")]
async fn delete(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, id, config) = (me.0.user.id, id.to_string(), page.app.config.clone());
    page.app
        .db
        .run(move |conn| assets::delete_own(conn, &config, user, &id))
        .await?;
    Ok(Flash::success(
        Redirect::to("/library"),
        "The image is deleted.",
    ))
}

/// A running task's latest preview, for its card.
#[get("/studio/tasks/<id>/preview")]
async fn task_preview(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
) -> AppResult<super::media::Preview> {
    super::media::preview_of(page.app, me.0.user.id, id).await
}

pub fn routes() -> Vec<Route> {
    routes![
        studio,
        submit,
        task_card,
        task_preview,
        cancel,
        library,
        delete
    ]
}
