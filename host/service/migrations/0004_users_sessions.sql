-- devext store, version 4: people who sign in to the dashboard, their sessions, login-failure
-- counters, and the user who made an audit entry.
--
-- A user belongs to one organisation; an email is unique across the store (kept lower-case).
-- `password_hash` is a PHC string (argon2id). A session is a random token in a cookie, stored
-- here only as its SHA-256 (`hash`), so that a copy of the store opens no session; its idle and
-- absolute expiry are checked against `last_seen_at` and `created_at`. Login failures are
-- counted per key (`account:<email>`, `address:<ip>`) in a fixed window, here rather than in
-- memory so that several replicas do not multiply the attempts allowed.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    org_id        INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    hash         BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start TEXT NOT NULL
);

ALTER TABLE audit ADD COLUMN user_id TEXT;
