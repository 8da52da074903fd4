-- devext store, version 1: organisations, API keys, extension settings, devices, audit log,
-- idempotency records. Times are RFC 3339 UTC text; JSON documents are text.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    name         TEXT NOT NULL DEFAULT '',
    hash         BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_org ON api_keys(org_id);

CREATE TABLE extensions (
    org_id     INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    plugin     TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    config     TEXT NOT NULL,
    secrets    BLOB,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, plugin)
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    name       TEXT NOT NULL,
    type       TEXT,
    extensions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX devices_org_seq ON devices(org_id, seq);
CREATE INDEX devices_org_name ON devices(org_id, name);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id    INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    at        TEXT NOT NULL,
    key_id    TEXT,
    action    TEXT NOT NULL,
    device_id TEXT,
    plugin    TEXT,
    op        TEXT,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_org ON audit(org_id, id);

CREATE TABLE idempotency (
    org_id     INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    request    TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, key)
);
