-- Share links (issue 7): a time-limited URL plus a PIN that shows one patient's studies, view-only, to someone
-- outside renkei. The URL's token is 256 random bits, stored as its SHA-256; the PIN, being short, as argon2id.
-- failed_pins counts wrong PINs since the last right one, whatever address they came from; at 10 the link locks
-- (locked_at) for good. A right PIN opens a view of 30 minutes, kept by the SHA-256 of its cookie's value.
-- Purging a study or patient from the trash takes it out of its links (cascade) rather than failing; a link of
-- chosen studies (all_studies 0) whose studies are all gone shows nothing.

CREATE TABLE share_links (
    pk               INTEGER PRIMARY KEY,
    token_hash       TEXT NOT NULL UNIQUE,
    pin_hash         TEXT NOT NULL,
    institution_pk   INTEGER NOT NULL REFERENCES institutions (pk),
    patient_pk       INTEGER NOT NULL REFERENCES patients (pk) ON DELETE CASCADE,
    all_studies      INTEGER NOT NULL,
    note             TEXT NOT NULL DEFAULT '',
    created_by       INTEGER NOT NULL,
    created_by_name  TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    failed_pins      INTEGER NOT NULL DEFAULT 0,
    locked_at        INTEGER,
    last_view_at     INTEGER
);
CREATE INDEX share_links_institution ON share_links (institution_pk, pk);

CREATE TABLE share_link_studies (
    link_pk    INTEGER NOT NULL REFERENCES share_links (pk) ON DELETE CASCADE,
    study_pk   INTEGER NOT NULL REFERENCES studies (pk) ON DELETE CASCADE,
    PRIMARY KEY (link_pk, study_pk)
);

CREATE TABLE share_link_views (
    view_hash   TEXT PRIMARY KEY,
    link_pk     INTEGER NOT NULL REFERENCES share_links (pk) ON DELETE CASCADE,
    source      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX share_link_views_link ON share_link_views (link_pk);
