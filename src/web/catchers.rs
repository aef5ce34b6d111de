//! Error pages for failures that never reached a handler (no route, a guard
//! refused, a body too large): an HTML page, or the JSON envelope for the API.

use rocket::http::Status;
use rocket::response::{Redirect, Responder};
use rocket::{catch, catchers, Catcher, Request};

use super::guards::CSRF_FAILED;
use super::render::{error_envelope, error_page, json_response, wants_json};
use crate::templates::urlencode;

fn message_for(status: Status) -> &'static str {
    match status.code {
        400 => "The request could not be understood.",
        401 => "Sign in to continue.",
        403 => CSRF_FAILED,
        404 => "There is no page at this address.",
        413 => "What you sent is larger than this studio accepts.",
        415 => "This kind of content is not accepted here.",
        422 => "Some of the submitted values could not be read.",
        429 => "Too many requests. Wait a moment and try again.",
        500 => "Something went wrong on our side. Please try again.",
        503 => "The studio is not available right now. Please try again shortly.",
        _ => "The request could not be completed.",
    }
}

fn code_for(status: Status) -> (&'static str, &'static str) {
    match status.code {
        401 => ("authentication_error", "unauthenticated"),
        403 => ("permission_error", "forbidden"),
        404 => ("invalid_request_error", "not_found"),
        413 => ("invalid_request_error", "too_large"),
        429 => ("rate_limit_error", "rate_limited"),
        500..=599 => ("server_error", "internal_error"),
        _ => ("invalid_request_error", "invalid_input"),
    }
}

#[catch(default)]
fn default(status: Status, req: &Request<'_>) -> CatcherResponse {
    // An API guard that refused with a reason (bad key, rate limit).
    let failure = req
        .local_cache(super::caller::GuardFailure::default)
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(err) = failure {
        return CatcherResponse::Error(err);
    }
    if wants_json(req) {
        let (kind, code) = code_for(status);
        super::caller::NoteCell::of(req).error(code);
        return CatcherResponse::Json(
            status,
            error_envelope(message_for(status), kind, code, None),
        );
    }
    if status == Status::Unauthorized {
        let next = req.uri().to_string();
        let to = format!("/login?next={}", urlencode(&next));
        return CatcherResponse::Redirect(Box::new(Redirect::to(to)));
    }
    CatcherResponse::Page(error_page(req, status, message_for(status)))
}

pub enum CatcherResponse {
    Json(Status, serde_json::Value),
    Redirect(Box<Redirect>),
    Page(super::render::Page),
    Error(crate::error::AppError),
}

impl<'r> Responder<'r, 'static> for CatcherResponse {
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'static> {
        match self {
            CatcherResponse::Json(status, body) => Ok(json_response(status, &body)),
            CatcherResponse::Redirect(r) => (*r).respond_to(req),
            CatcherResponse::Page(p) => p.respond_to(req),
            CatcherResponse::Error(e) => e.respond_to(req),
        }
    }
}

pub fn catchers() -> Vec<Catcher> {
    catchers![default]
}
