//! PostgreSQL's side of the seam: the client with its prepared statements,
//! the placeholders, and values that take the type the server expects.

use super::{Error, ValueRef};
use postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
use std::collections::HashMap;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A PostgreSQL client with its prepared statements.
pub struct Client {
    /// `None` only while being dropped.
    client: Option<postgres::Client>,
    /// Inside BEGIN ... COMMIT (a failed prepare must not end it).
    pub in_transaction: bool,
    statements: HashMap<String, postgres::Statement>,
    /// Which database this is (hosts, ports and name), to tell apart the
    /// databases one process talks to.
    pub database: String,
}

/// How many prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 512;

impl Client {
    pub fn new(client: postgres::Client, database: String) -> Client {
        Client {
            database,
            client: Some(client),
            in_transaction: false,
            statements: HashMap::new(),
        }
    }

    pub fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("a client is open until dropped")
    }

    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }

    /// The prepared statement of `sql`. The server infers each
    /// parameter's type from where it is used; where it cannot (`?2 IS
    /// NULL` alone, `lower(?1)`), the statement is prepared again with the
    /// types of the values of this first call (text for a NULL).
    fn statement(
        &mut self,
        sql: &str,
        values: &[ValueRef<'_>],
    ) -> Result<postgres::Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let text = placeholders(sql);
        // In a transaction a failed prepare would abort it: a savepoint
        // keeps the transaction usable for the second try.
        let guard = self.in_transaction;
        let client = self.client();
        if guard {
            blocking(|| client.batch_execute("SAVEPOINT novart_prepare"))?;
        }
        let first = blocking(|| client.prepare(&text));
        if guard {
            let end = if first.is_ok() {
                "RELEASE novart_prepare"
            } else {
                "ROLLBACK TO novart_prepare; RELEASE novart_prepare"
            };
            blocking(|| client.batch_execute(end))?;
        }
        let stmt = match first {
            Ok(stmt) => stmt,
            Err(e)
                if [
                    postgres::error::SqlState::INDETERMINATE_DATATYPE,
                    postgres::error::SqlState::AMBIGUOUS_PARAMETER,
                    postgres::error::SqlState::AMBIGUOUS_FUNCTION,
                ]
                .iter()
                .any(|c| e.code() == Some(c)) =>
            {
                let types: Vec<Type> = values
                    .iter()
                    .map(|v| match v {
                        ValueRef::Integer(_) => Type::INT8,
                        ValueRef::Real(_) => Type::FLOAT8,
                        ValueRef::Blob(_) => Type::BYTEA,
                        ValueRef::Text(_) | ValueRef::Null => Type::TEXT,
                    })
                    .collect();
                blocking(|| client.prepare_typed(&text, &types)).map_err(|e| failed(sql, e))?
            }
            Err(e) => return Err(failed(sql, e)),
        };
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub fn execute(&mut self, sql: &str, values: &[ValueRef<'_>]) -> Result<u64, Error> {
        tracing::trace!(sql, "execute");
        let stmt = self.statement(sql, values)?;
        let args = args(values);
        let refs = refs(&args);
        let client = self.client();
        blocking(|| client.execute(&stmt, &refs)).map_err(|e| failed(sql, e))
    }

    pub fn query(
        &mut self,
        sql: &str,
        values: &[ValueRef<'_>],
    ) -> Result<Vec<postgres::Row>, Error> {
        tracing::trace!(sql, "query");
        let stmt = self.statement(sql, values)?;
        let args = args(values);
        let refs = refs(&args);
        let client = self.client();
        blocking(|| client.query(&stmt, &refs)).map_err(|e| failed(sql, e))
    }
}

/// A statement's error, logged with the statement (at debug level: the
/// caller decides whether it matters).
pub fn failed(sql: &str, e: postgres::Error) -> Error {
    let e = Error::from(e);
    tracing::debug!(sql, "statement failed: {e}");
    e
}

/// Runs a call of the sync driver, which blocks on a runtime of its
/// own; tokio refuses that on a thread that drives async tasks (a
/// request guard, a pool dropped when the server stops, a server built
/// inside `rocket::execute`). There the call runs with the thread handed
/// over to blocking (`block_in_place`), or on a thread of its own when
/// the runtime has a single thread. Elsewhere (the blocking pool, the
/// CLI) it just runs.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use rocket::tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => rocket::tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

/// Connects (see `blocking`).
pub fn connect(
    config: &postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<Client, Error> {
    let client = blocking(|| config.connect(tls.clone()))?;
    let database = format!(
        "postgres:{:?}:{:?}/{}",
        config.get_hosts(),
        config.get_ports(),
        config.get_dbname().unwrap_or("")
    );
    Ok(Client::new(client, database))
}

/// Closing a connection blocks too (see `blocking`).
impl Drop for Client {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            blocking(move || drop(client));
        }
    }
}

/// The shared SQL in PostgreSQL's spelling, outside quotes and
/// comments: `?N` becomes `$N` and a bare `?` the next number, and
/// SQLite's `instr(haystack, needle)` becomes `strpos` (the same
/// arguments and answer).
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut next = 0u32;
    let mut prev_ident = false;
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek().map(|p| p.1) == Some('-') => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some((_, d)) = chars.peek().filter(|d| d.1.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    next += 1;
                    digits = next.to_string();
                } else if let Ok(n) = digits.parse::<u32>() {
                    next = next.max(n);
                }
                out.push('$');
                out.push_str(&digits);
            }
            'i' | 'I'
                if !prev_ident
                    && sql
                        .get(at..at + 6)
                        .is_some_and(|w| w.eq_ignore_ascii_case("instr(")) =>
            {
                out.push_str("strpos(");
                for _ in 0..5 {
                    chars.next();
                }
            }
            c => out.push(c),
        }
        prev_ident = c.is_ascii_alphanumeric() || c == '_';
    }
    out
}

/// A parameter that takes whatever type the server inferred for it.
#[derive(Debug)]
pub struct Arg<'a>(pub ValueRef<'a>);

pub fn args<'a>(values: &'a [ValueRef<'a>]) -> Vec<Arg<'a>> {
    values.iter().map(|v| Arg(*v)).collect()
}

pub fn refs<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

fn mismatch(v: &ValueRef<'_>, ty: &Type) -> BoxError {
    format!("cannot pass {v:?} as {ty}").into()
}

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                Type::NUMERIC => numeric(i, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::UNKNOWN => {
                    i.to_string().as_str().to_sql(&Type::TEXT, out)
                }
                _ => Err(mismatch(&self.0, ty)),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(mismatch(&self.0, ty)),
            },
            ValueRef::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    t.to_sql(&Type::TEXT, out)
                }
                Type::BYTEA => t.as_bytes().to_sql(ty, out),
                // citext (the schema's case-insensitive text) is sent
                // as text.
                _ if ty.name() == "citext" => t.to_sql(&Type::TEXT, out),
                _ => Err(mismatch(&self.0, ty)),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(mismatch(&self.0, ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// An integer as NUMERIC's binary form (base-10000 digits).
fn numeric(i: i64, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
    use bytes::BufMut;
    let negative = i < 0;
    let mut n = i.unsigned_abs();
    let mut digits = Vec::new();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    out.put_i16(digits.len() as i16);
    out.put_i16(weight.max(0));
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_i16(0);
    for d in digits {
        out.put_i16(d);
    }
    Ok(IsNull::No)
}

/// Any column, read as one of the shared value kinds.
pub struct Any<'a>(pub ValueRef<'a>);

impl<'a> FromSql<'a> for Any<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Any(match *ty {
            Type::INT8 => ValueRef::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => ValueRef::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => ValueRef::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => ValueRef::Integer(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => ValueRef::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => ValueRef::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => ValueRef::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => read_numeric(raw)?,
            Type::BYTEA => ValueRef::Blob(raw),
            _ => match ty.kind() {
                Kind::Simple | Kind::Domain(_) | Kind::Enum(_) => {
                    ValueRef::Text(<&str>::from_sql(&Type::TEXT, raw)?)
                }
                _ => return Err(format!("unsupported column type {ty}").into()),
            },
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Any(ValueRef::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NUMERIC's binary form: an integer when it has no fraction (SUM over
/// integers), else a real number.
fn read_numeric(raw: &[u8]) -> Result<ValueRef<'static>, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short NUMERIC".into())
    };
    let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)? as u16);
    if sign == 0xC000 {
        return Ok(ValueRef::Real(f64::NAN));
    }
    let mut value: f64 = 0.0;
    let mut exact: Option<i64> = Some(0);
    for k in 0..ndigits as usize {
        let d = word(4 + k)? as i64;
        let power = weight as i32 - k as i32;
        value += d as f64 * 10_000f64.powi(power);
        exact = match (exact, power >= 0) {
            (Some(acc), true) => 10_000i64
                .checked_pow(power as u32)
                .and_then(|p| d.checked_mul(p))
                .and_then(|x| acc.checked_add(x)),
            (acc, false) if d == 0 => acc,
            _ => None,
        };
    }
    let negative = sign == 0x4000;
    Ok(match exact {
        Some(i) => ValueRef::Integer(if negative { -i } else { i }),
        _ => ValueRef::Real(if negative { -value } else { value }),
    })
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?', x FROM t WHERE a = ?1 AND b = ?2 -- ?\n AND c = ?"),
            "SELECT '?', x FROM t WHERE a = $1 AND b = $2 -- ?\n AND c = $3"
        );
        assert_eq!(placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            placeholders("WHERE instr(lower(p), ?1) > 0 AND xinstr(a)"),
            "WHERE strpos(lower(p), $1) > 0 AND xinstr(a)"
        );
    }
}
