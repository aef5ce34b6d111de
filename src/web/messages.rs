//! The inbox (/messages): newest first, unread marked, read one or all.

use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, Route};
use serde_json::json;

use super::auth::EmptyForm;
use super::guards::{CsrfForm, CurrentUser};
use super::render::{Page, PageCtx};
use crate::domain::messages;
use crate::error::AppResult;
use crate::templates::format_time;

#[get("/messages")]
async fn inbox(page: PageCtx<'_>, me: CurrentUser) -> AppResult<Page> {
    let user = me.0.user.id;
    let list = page
        .app
        .db
        .run(move |conn| messages::list(conn, user))
        .await?;
    let rows: Vec<_> = list
        .iter()
        .map(|m| {
            json!({
                "id": m.id, "kind": messages::kind_label(&m.kind), "title": m.title, "body": m.body,
                "when": format_time(m.created_at), "unread": m.read_at.is_none(),
            })
        })
        .collect();
    let unread = list.iter().filter(|m| m.read_at.is_none()).count();
    page.render(
        "messages.html",
        json!({ "messages": rows, "unread_count": unread }),
    )
}

#[post("/messages/<id>/read", data = "<_form>")]
async fn read_one(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: i64,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Redirect> {
    let user = me.0.user.id;
    page.app
        .db
        .run(move |conn| messages::mark_read(conn, user, id))
        .await?;
    Ok(Redirect::to(format!("/messages#m{id}")))
}

#[post("/messages/read-all", data = "<_form>")]
async fn read_all(
    page: PageCtx<'_>,
    me: CurrentUser,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let user = me.0.user.id;
    let n = page
        .app
        .db
        .run(move |conn| messages::mark_all_read(conn, user))
        .await?;
    Ok(Flash::success(
        Redirect::to("/messages"),
        format!(
            "Marked {n} message{} as read.",
            if n == 1 { "" } else { "s" }
        ),
    ))
}

pub fn routes() -> Vec<Route> {
    routes![inbox, read_one, read_all]
}
