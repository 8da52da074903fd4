-- devext store on PostgreSQL, version 1: the SQLite store's tables (migrations 0001-0004 of the
-- SQLite store) plus what several replicas share: the upstream limiter's accounts and leases,
-- and the claimant of an idempotency record. Times of records are RFC 3339 UTC text, as in
-- SQLite (the API shows them as stored); JSON documents are text (kept as written).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE orgs (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    org_id       BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    name         TEXT NOT NULL DEFAULT '',
    hash         BYTEA NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_org ON api_keys(org_id);

CREATE TABLE extensions (
    org_id     BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    plugin     TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL,
    config     TEXT NOT NULL,
    secrets    BYTEA,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, plugin)
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    org_id     BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    name       TEXT NOT NULL,
    type       TEXT,
    extensions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Whole-table order for the lookup rebuild (SQLite's rowid).
    rowid      BIGSERIAL NOT NULL UNIQUE
);
CREATE UNIQUE INDEX devices_org_seq ON devices(org_id, seq);
CREATE INDEX devices_org_name ON devices(org_id, name);

CREATE TABLE device_lookup (
    org_id    BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    plugin    TEXT NOT NULL,
    field     TEXT NOT NULL,
    value     TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    UNIQUE (org_id, plugin, field, value)
);
CREATE INDEX device_lookup_device ON device_lookup(device_id);

CREATE TABLE audit (
    id         BIGSERIAL PRIMARY KEY,
    org_id     BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    key_id     TEXT,
    action     TEXT NOT NULL,
    device_id  TEXT,
    plugin     TEXT,
    op         TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    request_id TEXT,
    user_id    TEXT
);
CREATE INDEX audit_org ON audit(org_id, id);

-- Dashboard users, their sessions (token hashes) and login-failure counters (see the SQLite
-- store's migration 0004).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    org_id        BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    hash         BYTEA PRIMARY KEY,
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

CREATE TABLE idempotency (
    org_id     BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    request    TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- The replica running the request, while it runs (status 0), and until when its claim is
    -- renewed: a claim whose replica stopped renewing it has an unknown outcome.
    claimant   TEXT,
    claim_until TIMESTAMPTZ,
    PRIMARY KEY (org_id, key)
);

-- The upstream limiter (the `limit.*` capability) shared by the replicas. One row per upstream
-- account: the GCRA's theoretical arrival time of the next start (`tat`, advanced on the
-- database's clock), a back-off, and until when an interactive caller waits (bulk callers step
-- aside meanwhile).
CREATE TABLE limiter_accounts (
    key                    TEXT PRIMARY KEY,
    tat                    TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    paused_until           TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    interactive_wait_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);

-- Permits held (concurrency leases). A replica renews its leases while it runs; a lease not
-- renewed (its replica died) frees its slot when it expires.
CREATE TABLE limiter_leases (
    id         BIGSERIAL PRIMARY KEY,
    key        TEXT NOT NULL,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX limiter_leases_key ON limiter_leases(key, expires_at);
CREATE INDEX limiter_leases_owner ON limiter_leases(owner);

-- One attempt at a permit, atomically (the account's row is locked): on the database's clock,
-- so the replicas' clocks do not matter. Answers a lease id and how long to wait before the
-- start (the GCRA spaces starts `window / rate` apart, so no rolling window holds more than
-- `rate` starts), or no lease, the reason and when to look again.
CREATE FUNCTION devext_limiter_acquire(
    p_key TEXT, p_owner TEXT, p_rate INTEGER, p_max_in_flight INTEGER, p_window_ms INTEGER,
    p_interactive BOOLEAN, p_lease_ms INTEGER, p_max_wait_ms DOUBLE PRECISION)
RETURNS TABLE (permit BIGINT, delay_ms DOUBLE PRECISION, retry_ms DOUBLE PRECISION, reason TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    acc limiter_accounts%ROWTYPE;
    t TIMESTAMPTZ;
    first_start TIMESTAMPTZ;
    held INTEGER;
    spacing INTERVAL := (p_window_ms::float8 / GREATEST(p_rate, 1)) * INTERVAL '1 millisecond';
    lease BIGINT;
BEGIN
    INSERT INTO limiter_accounts (key) VALUES (p_key) ON CONFLICT DO NOTHING;
    SELECT * INTO acc FROM limiter_accounts WHERE key = p_key FOR UPDATE;
    t := clock_timestamp();
    IF acc.paused_until > t THEN
        RETURN QUERY SELECT NULL::BIGINT, 0::float8,
            (extract(epoch FROM acc.paused_until - t) * 1000)::float8, 'backoff'::TEXT;
        RETURN;
    END IF;
    IF NOT p_interactive AND acc.interactive_wait_until > t THEN
        RETURN QUERY SELECT NULL::BIGINT, 0::float8, 20::float8, 'in_flight'::TEXT;
        RETURN;
    END IF;
    DELETE FROM limiter_leases WHERE key = p_key AND expires_at <= t;
    SELECT count(*) INTO held FROM limiter_leases WHERE key = p_key;
    IF held >= p_max_in_flight THEN
        IF p_interactive THEN
            UPDATE limiter_accounts SET interactive_wait_until = t + INTERVAL '250 milliseconds'
                WHERE key = p_key;
        END IF;
        RETURN QUERY SELECT NULL::BIGINT, 0::float8, 5::float8, 'in_flight'::TEXT;
        RETURN;
    END IF;
    first_start := GREATEST(acc.tat, t);
    IF (extract(epoch FROM first_start - t) * 1000)::float8 > p_max_wait_ms THEN
        RETURN QUERY SELECT NULL::BIGINT, 0::float8,
            (extract(epoch FROM first_start - t) * 1000)::float8, 'rate'::TEXT;
        RETURN;
    END IF;
    UPDATE limiter_accounts SET tat = first_start + spacing WHERE key = p_key;
    INSERT INTO limiter_leases (key, owner, expires_at)
        VALUES (p_key, p_owner, first_start + p_lease_ms * INTERVAL '1 millisecond')
        RETURNING id INTO lease;
    RETURN QUERY SELECT lease, (extract(epoch FROM first_start - t) * 1000)::float8, 0::float8,
        'granted'::TEXT;
END
$$;
