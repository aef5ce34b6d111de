//! Privacy requests: a user asks for access, correction, deletion or
//! objection through the site; an admin answers with `novart privacy
//! resolve`, and the user gets the answer in their inbox.

use crate::domain::Connection;
use serde_json::json;

use crate::domain::db::{self, privacy::PrivacyRequest};
use crate::error::{AppError, AppResult};
use crate::model::UserId;

use super::audit::{self, Entry};

pub const KINDS: [&str; 4] = ["access", "correction", "deletion", "objection"];
pub const MAX_DETAILS_CHARS: usize = 4000;
/// Open requests one account may have at once.
pub const MAX_PENDING: i64 = 3;

pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "access" => "Access to my data",
        "correction" => "Correction of my data",
        "deletion" => "Deletion of my data",
        "objection" => "Objection to a use of my data",
        _ => "Request",
    }
}

/// Files a request; returns its id.
pub fn file(conn: &mut Connection, user: UserId, kind: &str, details: &str) -> AppResult<i64> {
    if !KINDS.contains(&kind) {
        return Err(AppError::invalid("kind", "Choose what you are asking for."));
    }
    let details = details.trim();
    if details.is_empty() || details.chars().count() > MAX_DETAILS_CHARS {
        return Err(AppError::invalid(
            "details",
            format!("Describe your request in 1 to {MAX_DETAILS_CHARS} characters."),
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        if db::privacy::pending_count(tx, user)? >= MAX_PENDING {
            return Err(AppError::invalid(
                "details",
                format!("You already have {MAX_PENDING} open requests; please wait for an answer."),
            ));
        }
        let id = db::privacy::insert(tx, user, kind, details, now)?;
        audit::record(
            tx,
            &Entry {
                actor: &format!("user:{}", user.0),
                action: "privacy.request",
                target: &format!("privacy request #{id}"),
                reason: kind,
                ..Default::default()
            },
        )?;
        Ok(id)
    })
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<PrivacyRequest>> {
    db::privacy::for_user(conn, user)
}

pub fn list(conn: &Connection, pending_only: bool) -> AppResult<Vec<PrivacyRequest>> {
    db::privacy::list(conn, pending_only)
}

/// An admin answers a request; the user is told in their inbox.
pub fn resolve(
    conn: &mut Connection,
    id: i64,
    status: &str,
    reason: &str,
    actor: &str,
) -> AppResult<PrivacyRequest> {
    if !["accepted", "rejected"].contains(&status) {
        return Err(AppError::invalid(
            "status",
            "The status is accepted or rejected.",
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::invalid(
            "reason",
            "Give the user a reason or an answer.",
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        let req = db::privacy::by_id(tx, id)?.ok_or(AppError::NotFound)?;
        if !db::privacy::decide(tx, id, status, reason, actor, now)? {
            return Err(AppError::Conflict(format!(
                "Request #{id} was already {}.",
                req.status
            )));
        }
        db::messages::add(
            tx,
            UserId(req.user_id),
            "privacy",
            &format!("Your privacy request was {status}"),
            &format!(
                "Your request \u{201c}{}\u{201d} of {} was {status}.\n\n{reason}",
                kind_label(&req.kind),
                super::format_time(req.created_at)
            ),
            now,
        )?;
        audit::record(
            tx,
            &Entry {
                actor,
                action: "privacy.resolve",
                target: &req.email,
                reason,
                before: Some(json!({ "request": id, "status": req.status })),
                after: Some(json!({ "status": status })),
                ip: None,
            },
        )?;
        db::privacy::by_id(tx, id)?.ok_or(AppError::NotFound)
    })
}
