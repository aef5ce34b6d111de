//! The public gallery (`/gallery`), share-link pages (`/s/<id>`), and the
//! owner's publish / share switches in the library.

use rocket::http::uri::Origin;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, Route};
use serde_json::{json, Value};

use super::auth::EmptyForm;
use super::guards::{CsrfForm, CurrentUser};
use super::render::{query_param, Page, PageCtx};
use crate::domain::gallery;
use crate::error::AppResult;

const PAGE: u32 = 48;

use super::studio::model_name;

/// Images their owners chose to show everyone. No prompts, no names.
#[get("/gallery")]
async fn public_gallery(page: PageCtx<'_>, uri: &Origin<'_>) -> AppResult<Page> {
    let before = query_param(uri, "before").and_then(|b| b.parse::<i64>().ok());
    let rows = page
        .app
        .db
        .run(move |conn| gallery::public(conn, before, PAGE))
        .await?;
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().and_then(|(a, _)| a.published_at))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|(a, model)| {
            json!({
                "url": format!("/media/{}", a.public_id),
                "preview_url": format!("/media/{}/preview", a.public_id),
                "width": a.width, "height": a.height,
                "model_name": model_name(&page, model),
                "published_at": a.published_at,
            })
        })
        .collect();
    let mut values = json!({ "next": next });
    values["items"] = Value::Array(items);
    page.render("gallery.html", values)
}

/// A shared image, for whoever has the link.
#[get("/s/<share>")]
async fn shared(page: PageCtx<'_>, share: &str) -> AppResult<Page> {
    let s = share.to_string();
    let a = page
        .app
        .db
        .run(move |conn| gallery::by_share(conn, &s))
        .await?;
    let q = format!("?share={share}");
    page.render(
        "shared.html",
        json!({
            "url": format!("/media/{}{q}", a.public_id),
            "download_url": format!("/media/{}/download{q}", a.public_id),
            "width": a.width, "height": a.height,
            "expires_at": a.expires_at,
        }),
    )
}

async fn switch(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    id: &str,
    action: &'static str,
) -> AppResult<Flash<Redirect>> {
    let (user, id, config) = (me.0.user.id, id.to_string(), page.app.config.clone());
    let message = page
        .app
        .db
        .run(move |conn| {
            Ok(match action {
                "publish" => {
                    gallery::publish(conn, &config, user, &id)?;
                    "The image is in the public gallery."
                }
                "unpublish" => {
                    gallery::unpublish(conn, &config, user, &id)?;
                    "The image is private again."
                }
                "share" => {
                    gallery::share(conn, user, &id)?;
                    "Anyone with the link can now see the image."
                }
                _ => {
                    gallery::unshare(conn, user, &id)?;
                    "The share link no longer works."
                }
            })
        })
        .await?;
    Ok(Flash::success(Redirect::to("/library"), message))
}

#[post("/library/<id>/publish", data = "<_form>")]
async fn publish(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    switch(&page, &me, id, "publish").await
}

#[post("/library/<id>/unpublish", data = "<_form>")]
async fn unpublish(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    switch(&page, &me, id, "unpublish").await
}

#[post("/library/<id>/share", data = "<_form>")]
async fn share(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    switch(&page, &me, id, "share").await
}

#[post("/library/<id>/unshare", data = "<_form>")]
async fn unshare(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: &str,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    switch(&page, &me, id, "unshare").await
}

pub fn routes() -> Vec<Route> {
    routes![public_gallery, shared, publish, unpublish, share, unshare]
}
