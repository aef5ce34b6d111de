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

-- migration 2: the task queue and stored images
-- The tasks table is the queue. Every state change is a compare-and-swap on
-- `status`; a worker holds a task through `lease_until`, which it renews while
-- it works; an expired lease means the worker died and the task is retried or
-- failed by lease recovery.
CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    model           TEXT NOT NULL,
    prompt          TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    n               INTEGER NOT NULL,
    seed            INTEGER NOT NULL,
    webhook_url     TEXT,
    cost            INTEGER NOT NULL DEFAULT 0,
    progress        REAL NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER NOT NULL,
    lease_until     INTEGER,
    worker          TEXT,
    claim_seq       INTEGER,
    provider        TEXT,
    error           TEXT,
    error_raw       TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
) STRICT;
CREATE INDEX tasks_queue ON tasks(status, user_id, id);
CREATE INDEX tasks_user ON tasks(user_id, id);
CREATE INDEX tasks_claims ON tasks(claim_seq);

-- Files under <data_dir>/assets: generated results and uploaded references.
-- The row and the file live and die together (the retention sweep removes
-- both; `novart doctor` looks for strays).
CREATE TABLE assets (
    id           INTEGER PRIMARY KEY,
    public_id    TEXT NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    task_id      INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('result', 'reference')),
    path         TEXT NOT NULL,
    preview_path TEXT,
    mime         TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    downloads    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX assets_user ON assets(user_id, kind, id);
CREATE INDEX assets_task ON assets(task_id);
CREATE INDEX assets_expiry ON assets(expires_at);

-- Per creator: tasks waiting and running, and when they were last served.
-- Kept exact by the triggers below (same transaction as the task change), so
-- a claim looks only at creators with waiting work instead of every task.
CREATE TABLE queue_users (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    queued  INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    served  INTEGER
) STRICT;
CREATE INDEX queue_users_waiting ON queue_users(queued) WHERE queued > 0;

CREATE TRIGGER tasks_queue_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO queue_users (user_id, queued, running)
    VALUES (new.user_id, new.status = 'queued', new.status = 'running')
    ON CONFLICT(user_id) DO UPDATE SET queued = queued + (new.status = 'queued'),
                                       running = running + (new.status = 'running');
END;

CREATE TRIGGER tasks_queue_status AFTER UPDATE OF status ON tasks WHEN old.status <> new.status BEGIN
    UPDATE queue_users
    SET queued = queued - (old.status = 'queued') + (new.status = 'queued'),
        running = running - (old.status = 'running') + (new.status = 'running'),
        served = CASE WHEN new.status = 'running' THEN new.claim_seq ELSE served END
    WHERE user_id = new.user_id;
END;

CREATE TRIGGER tasks_queue_delete AFTER DELETE ON tasks BEGIN
    UPDATE queue_users
    SET queued = queued - (old.status = 'queued'), running = running - (old.status = 'running')
    WHERE user_id = old.user_id;
END;

-- Reference images a task was given, in order.
CREATE TABLE task_references (
    task_id  INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (task_id, position)
) STRICT;

-- migration 3: credits — wallets and the ledger
-- Two buckets per user: `balance` (paid) and `bonus` (granted). Spending takes
-- bonus first. Every change to a wallet is one immutable ledger row written in
-- the same transaction; `idem_key` makes each logical change (a task's charge,
-- its refund, a grant) happen at most once.
CREATE TABLE wallets (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    bonus   INTEGER NOT NULL DEFAULT 0 CHECK (bonus >= 0)
) STRICT;

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('signup_bonus', 'redeem', 'referral_reward', 'task_charge',
                                               'task_refund', 'admin_grant', 'admin_deduct')),
    delta_balance INTEGER NOT NULL,
    delta_bonus   INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    bonus_after   INTEGER NOT NULL CHECK (bonus_after >= 0),
    task_id       INTEGER,            -- the task charged or refunded (kept for history)
    code_id       INTEGER,            -- the code redeemed
    related_user  INTEGER,            -- for a referral reward: the invited account
    idem_key      TEXT NOT NULL UNIQUE,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_user ON ledger(user_id, id);
CREATE INDEX ledger_task ON ledger(task_id);

-- The ledger is append-only.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN
    SELECT RAISE(ABORT, 'ledger rows are immutable');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger WHEN (SELECT count(*) FROM users WHERE id = old.user_id) > 0 BEGIN
    SELECT RAISE(ABORT, 'ledger rows are immutable');
END;

-- Redemption / recharge codes, stored only as SHA-256 of their normalized
-- text. `uses` moves by compare-and-swap, so a single-use code is redeemed
-- once whatever the concurrency; `redemptions` (UNIQUE per code and user) and
-- the ledger's idempotency key are the backstops.
CREATE TABLE codes (
    id         INTEGER PRIMARY KEY,
    code_hash  TEXT NOT NULL UNIQUE,
    hint       TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    bucket     TEXT NOT NULL CHECK (bucket IN ('balance', 'bonus')),
    max_uses   INTEGER NOT NULL CHECK (max_uses >= 1),
    uses       INTEGER NOT NULL DEFAULT 0,
    batch      TEXT,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    CHECK (uses >= 0 AND uses <= max_uses)
) STRICT;
CREATE INDEX codes_batch ON codes(batch);

-- Failed redemption attempts, for the brute-force limit (kept in the
-- database so a restart does not reset it).
CREATE TABLE redeem_failures (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ip         TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX redeem_failures_user ON redeem_failures(user_id, created_at);
CREATE INDEX redeem_failures_ip ON redeem_failures(ip, created_at);

CREATE TABLE redemptions (
    id         INTEGER PRIMARY KEY,
    code_id    INTEGER NOT NULL REFERENCES codes(id),
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    UNIQUE (code_id, user_id)
) STRICT;

-- migration 4: developer center — API keys, idempotency, webhooks, request logs, limit requests, messages
-- API keys `nva_<prefix>_<secret>`: only the prefix (for lookup and display)
-- and the SHA-256 of the whole key are stored. Limits are per key; the
-- daily cap and concurrency are checked against `key_usage` inside the
-- submitting transaction, so they hold exactly under concurrency.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    prefix       TEXT NOT NULL UNIQUE,
    key_hash     TEXT NOT NULL,
    name         TEXT NOT NULL,
    permissions  TEXT NOT NULL,          -- space-separated: generate read_tasks read_account
    models       TEXT,                   -- space-separated allowlist; NULL = every model
    rpm          INTEGER NOT NULL CHECK (rpm >= 1),
    concurrency  INTEGER NOT NULL CHECK (concurrency >= 1),
    daily_cap    INTEGER NOT NULL CHECK (daily_cap >= 1),
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    rotated_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    revoked_by   TEXT
) STRICT;
CREATE INDEX api_keys_user ON api_keys(user_id, id);

ALTER TABLE tasks ADD COLUMN api_key_id INTEGER REFERENCES api_keys(id) ON DELETE SET NULL;

-- Per key: tasks queued or running, and tasks made on the current UTC day.
-- Kept exact by the triggers below in the same transaction as the task
-- change, so the limit checks read one row instead of counting tasks.
CREATE TABLE key_usage (
    key_id    INTEGER PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,
    active    INTEGER NOT NULL DEFAULT 0,
    day       INTEGER NOT NULL DEFAULT 0,
    day_tasks INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TRIGGER tasks_key_insert AFTER INSERT ON tasks WHEN new.api_key_id IS NOT NULL BEGIN
    INSERT INTO key_usage (key_id, active, day, day_tasks)
    VALUES (new.api_key_id, new.status IN ('queued', 'running'), new.created_at - new.created_at % 86400, 1)
    ON CONFLICT(key_id) DO UPDATE SET
        active = active + (new.status IN ('queued', 'running')),
        day_tasks = CASE WHEN day = excluded.day THEN day_tasks + 1 ELSE 1 END,
        day = excluded.day;
END;

CREATE TRIGGER tasks_key_status AFTER UPDATE OF status ON tasks
WHEN new.api_key_id IS NOT NULL AND old.status <> new.status BEGIN
    UPDATE key_usage
    SET active = active - (old.status IN ('queued', 'running')) + (new.status IN ('queued', 'running'))
    WHERE key_id = new.api_key_id;
END;

CREATE TRIGGER tasks_key_delete AFTER DELETE ON tasks WHEN old.api_key_id IS NOT NULL BEGIN
    UPDATE key_usage SET active = active - (old.status IN ('queued', 'running')) WHERE key_id = old.api_key_id;
END;

-- An edit's mask (transparent where the image may change) is stored like a
-- reference image, with its own role.
ALTER TABLE task_references ADD COLUMN role TEXT NOT NULL DEFAULT 'image' CHECK (role IN ('image', 'mask'));

-- `Idempotency-Key` of task submissions: the same key with the same body
-- returns the same task; with another body it is a conflict.
CREATE TABLE idempotency (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    task_id    INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;
CREATE INDEX idempotency_age ON idempotency(created_at);

-- Per-account webhook signing secret (`whsec_...`).
CREATE TABLE webhook_secrets (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret     TEXT NOT NULL,
    rotated_at INTEGER NOT NULL
) STRICT;

-- The webhook outbox: a row is written in the same transaction as the task's
-- final state change; the delivery job sends it (signed), retrying with
-- backoff. `payload` is frozen at the first attempt so every retry sends the
-- same bytes under the same `webhook-id`.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,    -- msg_...: the webhook-id header
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    task_id         INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    event           TEXT NOT NULL CHECK (event IN ('task.succeeded', 'task.failed', 'task.canceled')),
    url             TEXT NOT NULL,
    payload         TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'gone')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (task_id, event)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_user ON webhook_deliveries(user_id, id);

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    status       INTEGER,                -- HTTP status, NULL when no answer
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    response     TEXT                    -- the first bytes of the answer
) STRICT;
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);

-- Every API request: who (key prefix or the studio session), what, and how
-- it ended. Kept for [api] request_log_retention_days.
CREATE TABLE api_requests (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_prefix  TEXT,                    -- NULL: the studio (session)
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    latency_ms  INTEGER NOT NULL,
    ip          TEXT,
    summary     TEXT NOT NULL DEFAULT '',
    task_id     TEXT,
    error_code  TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX api_requests_user ON api_requests(user_id, id);
CREATE INDEX api_requests_age ON api_requests(created_at);

-- Requests for higher per-key limits, decided by an admin.
CREATE TABLE limit_requests (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id      INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    rpm         INTEGER,
    concurrency INTEGER,
    daily_cap   INTEGER,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    decision    TEXT,
    decided_by  TEXT,
    decided_at  INTEGER,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX limit_requests_status ON limit_requests(status, id);

-- Messages to a user (limit decisions today; the inbox shows them).
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
) STRICT;
CREATE INDEX messages_user ON messages(user_id, id);

-- migration 5: audit log
-- Every admin action (CLI or web) and every automatic risk decision. The
-- application only appends; triggers refuse changes and deletions.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    actor      TEXT NOT NULL,            -- admin:cli:<os user>, user:<id>, system
    action     TEXT NOT NULL,            -- e.g. credits.grant, keys.revoke
    target     TEXT NOT NULL DEFAULT '', -- e-mail, key prefix, code hint, task id
    reason     TEXT NOT NULL DEFAULT '',
    before     TEXT,                     -- JSON
    after      TEXT,                     -- JSON
    ip         TEXT
) STRICT;
CREATE INDEX audit_log_time ON audit_log(created_at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit rows are immutable');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit rows are immutable');
END;

-- migration 6: risk control — bans, blocked generation attempts, known sign-in devices
-- A restriction on an account. `scope` 'all' is a full ban (no task
-- submission, redemption or key creation; API keys refused); the narrower
-- scopes are for restrictions that stop one kind of action. A ban is active
-- while lifted_at IS NULL and (ends_at IS NULL or ends_at > now); the
-- scheduler lifts expired ones. Rows stay as history.
CREATE TABLE bans (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scope       TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'generate', 'api', 'upload')),
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('admin', 'escalation')),
    actor       TEXT NOT NULL,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER,                  -- NULL: permanent
    lifted_at   INTEGER,
    lifted_by   TEXT,
    lift_reason TEXT
) STRICT;
CREATE INDEX bans_user ON bans(user_id, id);
CREATE INDEX bans_open ON bans(ends_at) WHERE lifted_at IS NULL;

-- Prompts the content rules refused. The prompt itself is kept only as a
-- SHA-256 digest and a short excerpt.
CREATE TABLE blocked_attempts (
    id            INTEGER PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    user_id       INTEGER REFERENCES users(id) ON DELETE SET NULL,
    api_key_id    INTEGER REFERENCES api_keys(id) ON DELETE SET NULL,
    ip            TEXT,
    rule          TEXT NOT NULL,          -- builtin:<category>:<term>, term:<term>, pattern:<n>, provider:<categories>
    field         TEXT NOT NULL,          -- prompt | negative_prompt
    prompt_sha256 TEXT NOT NULL,
    excerpt       TEXT NOT NULL
) STRICT;
CREATE INDEX blocked_attempts_user ON blocked_attempts(user_id, created_at);
CREATE INDEX blocked_attempts_time ON blocked_attempts(created_at);

-- Where an account has signed in from: a digest of IP address and user
-- agent, so a sign-in from somewhere new can be reported to the user.
CREATE TABLE known_devices (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_hash TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_hash)
) STRICT, WITHOUT ROWID;

-- migration 7: data exports ("Download my data")
-- A requested export of one account's data. Large ones are built by the
-- scheduler; the file is served at /settings/export/<public_id> to the
-- signed-in owner only, until expires_at, then deleted.
CREATE TABLE exports (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    public_id   TEXT NOT NULL UNIQUE,     -- exp_...: the link
    file        TEXT,                     -- relative to the data directory
    bytes       INTEGER,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX exports_user ON exports(user_id, id);
CREATE INDEX exports_pending ON exports(id) WHERE status = 'pending';

-- migration 8: account deletion
-- A deleted account keeps its row (the ledger, redemptions, audit and risk
-- records point at it) with every personal field replaced.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- The audit log stays append-only, with one exception: when an account is
-- deleted its e-mail address is replaced in the rows that name it. Such an
-- update may only set redacted_at (once) and change target, reason,
-- before and after; the redaction itself is a new audit row.
ALTER TABLE audit_log ADD COLUMN redacted_at INTEGER;
DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT (OLD.redacted_at IS NULL AND NEW.redacted_at IS NOT NULL
          AND NEW.id = OLD.id AND NEW.created_at = OLD.created_at
          AND NEW.actor = OLD.actor AND NEW.action = OLD.action
          AND NEW.ip IS OLD.ip)
BEGIN
    SELECT RAISE(ABORT, 'audit rows are immutable');
END;

-- migration 9: privacy requests (access, correction, deletion, objection)
-- filed by users on /settings and answered with `novart privacy resolve`.
CREATE TABLE privacy_requests (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'correction', 'deletion', 'objection')),
    details     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    decision    TEXT,
    decided_by  TEXT,
    decided_at  INTEGER,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX privacy_requests_user ON privacy_requests(user_id, id);
CREATE INDEX privacy_requests_pending ON privacy_requests(id) WHERE status = 'pending';

-- migration 10: the public gallery and share links
-- Images are private by default. published_at: shown on /gallery;
-- share_id: an unguessable link (/s/<share_id>) that shows the image to
-- whoever has it. Both can be withdrawn at any time.
ALTER TABLE assets ADD COLUMN published_at INTEGER;
ALTER TABLE assets ADD COLUMN share_id TEXT;
CREATE UNIQUE INDEX assets_share ON assets(share_id) WHERE share_id IS NOT NULL;
CREATE INDEX assets_published ON assets(published_at) WHERE published_at IS NOT NULL;

-- migration 11: e-mail address changes
-- A requested change waits until the link mailed to the new address is
-- confirmed (the token is stored only as a digest); the old address is told.
CREATE TABLE email_changes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    new_email  TEXT NOT NULL COLLATE NOCASE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX email_changes_user ON email_changes(user_id);

-- migration 12: each account's language
-- NULL: follow the browser (the `lang` cookie, then Accept-Language).
-- Set at registration from the page's language and changed in Settings;
-- e-mails and the pages of every signed-in device use it.
ALTER TABLE users ADD COLUMN language TEXT;

-- migration 13: appeals against restrictions
-- A restriction (a row of `bans`: scope all, generate, api or upload) can be
-- appealed once (UNIQUE ban_id): the account explains, an admin accepts it
-- (the restriction is lifted) or rejects it, with a reason the account
-- receives as a message. Kept with the restriction for appeal handling; the
-- explanation is blanked when the account is deleted.
CREATE TABLE appeals (
    id              INTEGER PRIMARY KEY,
    ban_id          INTEGER NOT NULL UNIQUE REFERENCES bans(id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    decided_by      TEXT,
    decision_reason TEXT
) STRICT;
CREATE INDEX appeals_user ON appeals(user_id, id);
CREATE INDEX appeals_pending ON appeals(id) WHERE status = 'pending';

-- migration 14: an e-mail change remembers the session that asked for it
-- Confirming the change needs that session (or the password again), so a
-- link confirmed from another browser cannot move an account whose password
-- someone else knew. The SHA-256 of the session's token, like `sessions`.
ALTER TABLE email_changes ADD COLUMN session_hash TEXT;

-- migration 15: what a creator should know about a finished task's images
-- When the image service made fewer or more images than asked, or another
-- size, the task says so (one sentence per line); NULL when all was as asked.
ALTER TABLE tasks ADD COLUMN notice TEXT;

-- migration 16: each server node's view of the providers' health; run times
-- Written by a node's fleet watch every few seconds; `novart providers`
-- reads it. A row not updated for a while belongs to a node that stopped.
CREATE TABLE provider_health (
    node        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    health      TEXT NOT NULL CHECK (health IN ('up', 'degraded', 'down')),
    running     INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    weight      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    latency_ms  INTEGER,
    calls       INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    last_error  TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (node, provider)
) STRICT;
-- A model's recent run times (the queue's time estimates).
CREATE INDEX tasks_model_done ON tasks(model, status, finished_at);

-- migration 17: extra images kept and charged
-- A model with `charge_extra_images` keeps the images an image service made
-- beyond those asked for and charges them: a ledger kind of its own
-- (`task_extra`, once per task). SQLite cannot change a CHECK in place, so
-- the append-only ledger is copied into a table that allows it.
CREATE TABLE ledger_v17 (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('signup_bonus', 'redeem', 'referral_reward', 'task_charge',
                                               'task_refund', 'admin_grant', 'admin_deduct', 'task_extra')),
    delta_balance INTEGER NOT NULL,
    delta_bonus   INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    bonus_after   INTEGER NOT NULL CHECK (bonus_after >= 0),
    task_id       INTEGER,
    code_id       INTEGER,
    related_user  INTEGER,
    idem_key      TEXT NOT NULL UNIQUE,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_v17 (id, user_id, kind, delta_balance, delta_bonus, balance_after, bonus_after, task_id,
                        code_id, related_user, idem_key, actor, reason, created_at)
    SELECT id, user_id, kind, delta_balance, delta_bonus, balance_after, bonus_after, task_id,
           code_id, related_user, idem_key, actor, reason, created_at FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v17 RENAME TO ledger;
CREATE INDEX ledger_user ON ledger(user_id, id);
CREATE INDEX ledger_task ON ledger(task_id);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN
    SELECT RAISE(ABORT, 'ledger rows are immutable');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger WHEN (SELECT count(*) FROM users WHERE id = old.user_id) > 0 BEGIN
    SELECT RAISE(ABORT, 'ledger rows are immutable');
END;

-- migration 18: what the nodes of a cluster share: periodic jobs' turns, account rate limits
-- Before a periodic job (retention, exports, ended bans, backups, lease
-- recovery) runs, its node takes the job's turn here: the first node to find
-- the previous turn over takes the next one, the others skip that round. On
-- SQLite there is one node, which always gets the turn.
CREATE TABLE job_turns (
    job   TEXT PRIMARY KEY,
    node  TEXT NOT NULL,
    until INTEGER NOT NULL
) STRICT;

-- The account-facing rate limits (sign-in, registration, password reset,
-- verification e-mails, redemption) when several nodes share the database:
-- one row per counted attempt, so spreading attempts over nodes gains
-- nothing. A single node counts in memory and leaves this empty.
CREATE TABLE rate_hits (
    id     INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    at_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX rate_hits_bucket ON rate_hits(bucket, at_ms);

-- migration 19: a claim does not touch the key's usage row
-- A task moving from queued to running stays active for its key, so the
-- key's row need not change; leaving it alone lets a claim lock only the
-- creator's queue row and the task (see `db::tasks::claim`).
DROP TRIGGER tasks_key_status;
CREATE TRIGGER tasks_key_status AFTER UPDATE OF status ON tasks
WHEN new.api_key_id IS NOT NULL
 AND (old.status IN ('queued', 'running')) <> (new.status IN ('queued', 'running')) BEGIN
    UPDATE key_usage
    SET active = active - (old.status IN ('queued', 'running')) + (new.status IN ('queued', 'running'))
    WHERE key_id = new.api_key_id;
END;
