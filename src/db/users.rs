//! SQL for the `users` table.

use super::sql::{params, Connection, OptionalExtension, Row};

use crate::error::AppResult;
use crate::model::{Role, User, UserId};

const COLUMNS: &str = "id, email, display_name, role, email_verified_at, created_at, \
     last_sign_in_at, password_changed_at, referral_code, referred_by, password_hash, language";

fn from_row(r: &Row<'_>) -> super::sql::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        display_name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::User),
        email_verified_at: r.get(4)?,
        created_at: r.get(5)?,
        last_sign_in_at: r.get(6)?,
        password_changed_at: r.get(7)?,
        referral_code: r.get(8)?,
        referred_by: r.get(9)?,
        password_hash: r.get(10)?,
        language: r.get(11)?,
    })
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub verified_at: Option<i64>,
    pub referral_code: &'a str,
    pub referred_by: Option<UserId>,
    pub registration_ip: Option<&'a str>,
    pub now: i64,
}

/// Sets (or with None clears) the account's language.
pub fn set_language(conn: &Connection, user: UserId, language: Option<&str>) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET language = ?2 WHERE id = ?1")?
        .execute(params![user, language])?;
    Ok(())
}

/// Inserts a user; returns None if the e-mail is taken.
pub fn insert(conn: &Connection, u: &NewUser<'_>) -> AppResult<Option<UserId>> {
    let n = conn.prepare_cached("INSERT INTO users (email, display_name, password_hash, role, email_verified_at, created_at,
                            password_changed_at, referral_code, referred_by, registration_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)
         ON CONFLICT(email) DO NOTHING")?
            .execute(params![
            u.email,
            u.display_name,
            u.password_hash,
            u.role.as_str(),
            u.verified_at,
            u.now,
            u.referral_code,
            u.referred_by,
            u.registration_ip
        ],
    )?;
    Ok(if n == 1 {
        Some(UserId(conn.last_insert_rowid()?))
    } else {
        None
    })
}

pub fn referral_code_taken(conn: &Connection, code: &str) -> AppResult<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM users WHERE referral_code = ?1",
            [code],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn by_referral_code(conn: &Connection, code: &str) -> AppResult<Option<UserId>> {
    Ok(conn
        .query_row(
            "SELECT id FROM users WHERE lower(referral_code) = lower(CAST(?1 AS TEXT))",
            [code],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn by_email(conn: &Connection, email: &str) -> AppResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([email], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: UserId) -> AppResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(conn: &Connection) -> AppResult<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map((), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_verified(conn: &Connection, id: UserId, now: i64) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?2) WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// A confirmed new address (verified by the link that confirmed it).
pub fn set_email(conn: &Connection, id: UserId, email: &str, now: i64) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET email = ?2, email_verified_at = ?3 WHERE id = ?1")?
        .execute(params![id, email, now])?;
    Ok(())
}

pub fn set_role(conn: &Connection, id: UserId, role: Role) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET role = ?2 WHERE id = ?1")?
        .execute(params![id, role.as_str()])?;
    Ok(())
}

pub fn set_password(conn: &Connection, id: UserId, hash: &str, now: i64) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, hash, now])?;
    Ok(())
}

pub fn set_display_name(conn: &Connection, id: UserId, name: &str) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET display_name = ?2 WHERE id = ?1")?
        .execute(params![id, name])?;
    Ok(())
}

pub fn touch_sign_in(conn: &Connection, id: UserId, now: i64) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET last_sign_in_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn set_password_hash(conn: &Connection, id: UserId, hash: &str) -> AppResult<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id, hash])?;
    Ok(())
}
