-- Known DICOM application entities: who may associate, where C-MOVE may send, and the defaults applied to what
-- each one sends (issuer of patient IDs, fallback character set). An AE belongs to one institution, which owns what
-- it stores and whose data it may query and retrieve.
CREATE TABLE aes (
    title        TEXT PRIMARY KEY,
    host         TEXT NOT NULL DEFAULT '',
    port         INTEGER NOT NULL DEFAULT 0,
    institution_pk INTEGER NOT NULL REFERENCES institutions (pk),
    issuer       TEXT NOT NULL DEFAULT '',
    charset      TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
