//! The account settings page: profile, password, sessions.

use rocket::http::CookieJar;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, Route};
use serde_json::json;

use super::auth::{csrf_form, session_cookie, EmptyForm};
use super::guards::{ClientInfo, CsrfForm, CsrfProtected, CurrentUser};
use super::render::{Page, PageCtx};
use crate::domain::{accounts, sessions};
use crate::error::AppResult;
use crate::model::SessionId;

csrf_form!(ProfileForm { display_name });
csrf_form!(LanguageForm { language });
csrf_form!(PasswordForm {
    current_password,
    password
});

pub(super) async fn settings_page(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    status: rocket::http::Status,
    extra: serde_json::Value,
) -> AppResult<Page> {
    let user_id = me.0.user.id;
    let current = me.0.session.id;
    let (list, exports, requests, restrictions) = page
        .app
        .db
        .run(move |conn| {
            Ok((
                sessions::list(conn, user_id)?,
                crate::domain::export::for_user(conn, user_id)?,
                crate::domain::privacy::for_user(conn, user_id)?,
                (
                    crate::domain::bans::history(conn, user_id)?,
                    crate::domain::appeals::for_user(conn, user_id)?,
                ),
            ))
        })
        .await?;
    let now = crate::domain::now();
    let restrictions = super::appeals::history(restrictions.0, restrictions.1, now);
    let exports: Vec<_> = exports
        .into_iter()
        .filter(|e| e.expires_at > now)
        .map(|e| {
            let size = e.bytes.map(|b| match b {
                b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
                b => format!("{} KB", (b + 1023) / 1024),
            });
            json!({ "public_id": e.public_id, "status": e.status, "created_at": e.created_at,
                    "expires_at": e.expires_at, "size": size })
        })
        .collect();
    let list: Vec<_> = list
        .into_iter()
        .map(|s| {
            let (browser, os) = s
                .user_agent
                .as_deref()
                .map(crate::domain::sessions::device_name)
                .unwrap_or((None, None));
            json!({
                "id": s.id,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "browser": browser,
                "os": os,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "current": s.id == current,
            })
        })
        .collect();
    let u = &me.0.user;
    let mut values = json!({
        "account": {
            "email": u.email,
            "display_name": u.display_name,
            "verified": u.is_verified(),
            "created_at": u.created_at,
            "last_sign_in_at": u.last_sign_in_at,
            "referral_code": u.referral_code,
            "referral_link": format!("{}/register?ref={}", page.app.config.public_url(), u.referral_code),
            "role": u.role.as_str(),
            "language": u.language,
        },
        "all_languages": crate::i18n::READY.iter().map(|l| json!({ "code": l.code(), "label": l.label() })).collect::<Vec<_>>(),
        "sessions": list,
        "restrictions": restrictions,
        "appeal_limits": { "min": crate::domain::appeals::MIN_BODY_CHARS, "max": crate::domain::appeals::MAX_BODY_CHARS },
        "exports": exports,
        "privacy_requests": requests.iter().map(|r| json!({
            "id": r.id, "kind": r.kind, "details": r.details,
            "status": r.status, "decision": r.decision, "created_at": r.created_at,
        })).collect::<Vec<_>>(),
        "form": { "display_name": u.display_name },
        "email_form": { "new_email": "" },
    });
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            values[k] = v;
        }
    }
    page.render_status(status, "settings.html", values)
}

#[get("/settings")]
async fn settings(page: PageCtx<'_>, me: CurrentUser) -> AppResult<Page> {
    settings_page(&page, &me, rocket::http::Status::Ok, json!({})).await
}

#[post("/settings/profile", data = "<form>")]
async fn profile(
    page: PageCtx<'_>,
    me: CurrentUser,
    form: CsrfForm<ProfileForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let name = form.0.display_name;
    let user = me.0.user.clone();
    let n = name.clone();
    match page.app.db.run(move |conn| accounts::update_display_name(conn, &user, &n)).await {
        Ok(_) => Ok(Err(Flash::success(Redirect::to("/settings"), "Your display name is saved."))),
        Err(crate::AppError::Invalid { field, message }) => Ok(Ok(settings_page(
            &page,
            &me,
            rocket::http::Status::BadRequest,
            json!({ "error": { "field": field, "message": message }, "form": { "display_name": name } }),
        )
        .await?)),
        Err(e) => Err(e),
    }
}

/// The account's language: kept with the account (every device, e-mails)
/// and in the `lang` cookie so the page after signing out matches.
#[post("/settings/language", data = "<form>")]
async fn language(
    page: PageCtx<'_>,
    me: CurrentUser,
    cookies: &CookieJar<'_>,
    form: CsrfForm<LanguageForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, choice) = (me.0.user.id, form.0.language);
    let lang = page
        .app
        .db
        .run(move |conn| crate::domain::preferences::set_language(conn, user, &choice))
        .await?;
    match lang {
        Some(l) => super::pages::remember_language(page.app, cookies, l),
        None => cookies.remove(rocket::http::Cookie::build("lang").path("/")),
    }
    Ok(Flash::success(
        Redirect::to("/settings"),
        "Your language is saved.",
    ))
}

#[post("/settings/password", data = "<form>")]
async fn password(
    page: PageCtx<'_>,
    me: CurrentUser,
    client: ClientInfo,
    cookies: &CookieJar<'_>,
    form: CsrfForm<PasswordForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let f = form.0;
    let user = me.0.user.clone();
    let (config, mailer) = (page.app.config.clone(), page.app.mailer.clone());
    let (ip, ua) = (client.ip.clone(), client.user_agent.clone());
    // bcrypt (the current password, the new hash) with no database
    // connection held.
    let (c, u) = (config.clone(), user.clone());
    let hashed = super::submit::off_thread(move || {
        accounts::new_password_hash(&c, &u, &f.current_password, &f.password)
    })
    .await;
    let result = match hashed {
        Ok(hash) => {
            page.app
                .db
                .run(move |conn| {
                    let client = crate::model::Client {
                        ip: ip.as_deref(),
                        user_agent: ua.as_deref(),
                    };
                    accounts::change_password_hashed(conn, &config, &mailer, &user, &hash, &client)
                })
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(session) => {
            cookies.add(session_cookie(page.app, &session));
            Ok(Err(Flash::success(
                Redirect::to("/settings"),
                "Your password is changed. Every other session has been signed out.",
            )))
        }
        Err(crate::AppError::Invalid { field, message }) => Ok(Ok(settings_page(
            &page,
            &me,
            rocket::http::Status::BadRequest,
            json!({ "error": { "field": field, "message": message } }),
        )
        .await?)),
        Err(e) => Err(e),
    }
}

#[post("/settings/sessions/<id>/end", data = "<_form>")]
async fn end_session(
    page: PageCtx<'_>,
    me: CurrentUser,
    id: i64,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let user = me.0.user.id;
    let ended = page
        .app
        .db
        .run(move |conn| sessions::end_one(conn, user, SessionId(id)))
        .await?;
    if id == me.0.session.id.0 {
        return Ok(Flash::success(Redirect::to("/"), "You are signed out."));
    }
    Ok(if ended {
        Flash::success(
            Redirect::to("/settings"),
            "That session has been signed out.",
        )
    } else {
        Flash::error(Redirect::to("/settings"), "That session had already ended.")
    })
}

#[post("/settings/sessions/end-others", data = "<_form>")]
async fn end_others(
    page: PageCtx<'_>,
    me: CurrentUser,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    let (user, keep) = (me.0.user.id, me.0.session.id);
    let n = page
        .app
        .db
        .run(move |conn| sessions::end_all(conn, user, Some(keep)))
        .await?;
    Ok(Flash::success(
        Redirect::to("/settings"),
        match n {
            0 => "There were no other sessions.".to_string(),
            1 => "1 other session has been signed out.".to_string(),
            n => format!("{n} other sessions have been signed out."),
        },
    ))
}

pub fn routes() -> Vec<Route> {
    routes![
        settings,
        profile,
        language,
        password,
        end_session,
        end_others
    ]
}
