-- WebAuthn security keys and passkeys (the credential record as go-webauthn keeps it, as JSON), and the state of a
-- WebAuthn ceremony in progress, kept with the session that started it so that any node can finish it.
CREATE TABLE webauthn_credentials (
    id          BLOB PRIMARY KEY,
    user_pk     INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    name        TEXT NOT NULL DEFAULT '',
    record      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_used   INTEGER
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_pk);

ALTER TABLE sessions ADD COLUMN ceremony TEXT NOT NULL DEFAULT '';
