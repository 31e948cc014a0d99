-- People, machines and grants: users (one role at one institution), their second factors, login sessions, API
-- tokens, shares, and the audit chain. Secrets are stored only as hashes (passwords: argon2id; session ids, tokens
-- and recovery codes: SHA-256 of 256-bit random values, which need no slow hash).

CREATE TABLE users (
    pk              INTEGER PRIMARY KEY,
    institution_pk  INTEGER NOT NULL REFERENCES institutions (pk),
    login           TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL DEFAULT '',
    role            TEXT NOT NULL,
    person          TEXT NOT NULL DEFAULT '',
    password_hash   TEXT NOT NULL DEFAULT '',
    must_change     INTEGER NOT NULL DEFAULT 1,
    totp_secret     TEXT NOT NULL DEFAULT '',
    totp_last_step  INTEGER NOT NULL DEFAULT 0,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    disabled        INTEGER NOT NULL DEFAULT 0,
    lang            TEXT NOT NULL DEFAULT 'ja',
    created_at      INTEGER NOT NULL
);
CREATE INDEX users_institution ON users (institution_pk);

CREATE TABLE recovery_codes (
    user_pk    INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_pk, hash)
);

-- A session is created after the password step (second_factor_at NULL: it may only complete the second factor)
-- and becomes full once the second factor is verified.
CREATE TABLE sessions (
    id_hash           TEXT PRIMARY KEY,
    user_pk           INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    csrf              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    second_factor_at  INTEGER,
    source            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_pk);

CREATE TABLE api_tokens (
    pk              INTEGER PRIMARY KEY,
    institution_pk  INTEGER NOT NULL REFERENCES institutions (pk),
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    write           INTEGER NOT NULL DEFAULT 0,
    created_by      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    revoked_at      INTEGER,
    last_used       INTEGER
);

CREATE TABLE shares (
    pk                INTEGER PRIMARY KEY,
    from_institution  INTEGER NOT NULL REFERENCES institutions (pk),
    patient_pk        INTEGER NOT NULL REFERENCES patients (pk),
    all_studies       INTEGER NOT NULL,
    to_institution    INTEGER NOT NULL DEFAULT 0,
    to_user           INTEGER NOT NULL DEFAULT 0,
    purpose           TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    created_by        INTEGER NOT NULL DEFAULT 0,
    created_by_name   TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked_at        INTEGER
);
CREATE INDEX shares_to_institution ON shares (to_institution, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX shares_to_user ON shares (to_user, expires_at) WHERE revoked_at IS NULL;

CREATE TABLE share_studies (
    share_pk   INTEGER NOT NULL REFERENCES shares (pk) ON DELETE CASCADE,
    study_pk   INTEGER NOT NULL REFERENCES studies (pk),
    PRIMARY KEY (share_pk, study_pk)
);

-- The audit chain. hash = SHA-256(prev_hash || canonical encoding of the row's other columns); audit_head holds the
-- last seq and hash so that every writer extends the one chain inside its own transaction.
CREATE TABLE audit_events (
    seq               INTEGER PRIMARY KEY,
    at                INTEGER NOT NULL,
    actor             TEXT NOT NULL,
    actor_kind        TEXT NOT NULL,
    actor_id          INTEGER NOT NULL,
    institution_pk    INTEGER NOT NULL,
    role              TEXT NOT NULL,
    action            TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    source            TEXT NOT NULL,
    data_institution  INTEGER NOT NULL,
    issuer            TEXT NOT NULL,
    patient_id        TEXT NOT NULL,
    study_uid         TEXT NOT NULL,
    detail            TEXT NOT NULL,
    prev_hash         BLOB NOT NULL,
    hash              BLOB NOT NULL
);
CREATE INDEX audit_patient ON audit_events (data_institution, issuer, patient_id);
CREATE INDEX audit_actor ON audit_events (actor_kind, actor_id, at);

CREATE TABLE audit_head (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
);
INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, x'');

-- Signed checkpoints: the Ed25519 signature of (seq, hash) by the region's audit key.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    at         INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL
);
