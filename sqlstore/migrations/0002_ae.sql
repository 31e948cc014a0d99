-- Known DICOM application entities: who may associate, where C-MOVE may send, and the defaults applied to what
-- each one sends (issuer of patient IDs, fallback character set).
CREATE TABLE aes (
    title        TEXT PRIMARY KEY,
    host         TEXT NOT NULL DEFAULT '',
    port         INTEGER NOT NULL DEFAULT 0,
    institution  TEXT NOT NULL DEFAULT '',
    issuer       TEXT NOT NULL DEFAULT '',
    charset      TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
