-- Novart Studio schema.
--
-- Each migration starts with a line `-- migration N: description`; N counts up
-- from 1 without gaps. `novart migrate` (and every start-up) applies, in one
-- BEGIN IMMEDIATE transaction each, the migrations whose N is greater than the
-- database's PRAGMA user_version, then sets user_version to N. A migration is
-- never edited once released: add a new one below.
--
-- Conventions: times are INTEGER unix seconds (UTC); secrets (session tokens,
-- e-mail links, API keys) are stored only as SHA-256 hex digests; money is
-- INTEGER credits.

-- migration 1: accounts, sessions, one-time links, instance metadata
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id                INTEGER PRIMARY KEY,
    email             TEXT NOT NULL COLLATE NOCASE UNIQUE,
    display_name      TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    role              TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    email_verified_at INTEGER,
    created_at        INTEGER NOT NULL,
    last_sign_in_at   INTEGER,
    password_changed_at INTEGER NOT NULL,
    referral_code     TEXT NOT NULL UNIQUE,
    referred_by       INTEGER REFERENCES users(id) ON DELETE SET NULL,
    registration_ip   TEXT
) STRICT;

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    ip           TEXT,
    user_agent   TEXT,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user ON sessions(user_id);

-- Single-use links sent by e-mail (verify the address, reset the password).
CREATE TABLE auth_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX auth_tokens_user ON auth_tokens(user_id, purpose);
