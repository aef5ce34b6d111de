//! Account preferences: the language pages, e-mails and messages use.

use crate::domain::Connection;

use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, READY};
use crate::model::UserId;

/// Sets the account's language from a form value: a language the product
/// is ready in, or "" to follow the browser again.
pub fn set_language(conn: &Connection, user: UserId, choice: &str) -> AppResult<Option<Lang>> {
    let lang = match choice.trim() {
        "" => None,
        tag => Some(
            Lang::parse(tag)
                .filter(|l| READY.contains(l))
                .ok_or_else(|| AppError::invalid("language", "That language is not available."))?,
        ),
    };
    db::users::set_language(conn, user, lang.map(Lang::code))?;
    Ok(lang)
}
