-- Hospital gateways: the last heartbeat of each gateway, keyed by its API token (one institution's), so that the
-- admin page shows every gateway's backlog and a silent one stands out.
CREATE TABLE gateways (
    token_pk       INTEGER PRIMARY KEY REFERENCES api_tokens (pk),
    institution_pk INTEGER NOT NULL REFERENCES institutions (pk),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL DEFAULT '',
    ae             TEXT NOT NULL DEFAULT '',
    address        TEXT NOT NULL DEFAULT '',
    instances      INTEGER NOT NULL DEFAULT 0,
    studies        INTEGER NOT NULL DEFAULT 0,
    bytes          INTEGER NOT NULL DEFAULT 0,
    oldest_at      INTEGER,
    last_sent_at   INTEGER,
    failures       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT NOT NULL DEFAULT '',
    disk_free      INTEGER NOT NULL DEFAULT 0,
    seen_at        INTEGER NOT NULL
);
CREATE INDEX gateways_institution ON gateways (institution_pk);
