-- The regional directory: each institution's profile (JSON body, coordinates as columns), its current capacity (one
-- row per item, each with its own time) and the history of every capacity report. directory_version changes with
-- every write, so that a node's in-memory copy of the directory knows when to read it again.
CREATE TABLE profiles (
    institution_pk INTEGER PRIMARY KEY REFERENCES institutions (pk),
    body           TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    updated_by     TEXT NOT NULL
);

CREATE TABLE capacity (
    institution_pk INTEGER NOT NULL REFERENCES institutions (pk),
    key            TEXT NOT NULL,
    body           TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    updated_by     TEXT NOT NULL,
    PRIMARY KEY (institution_pk, key)
);

CREATE TABLE capacity_history (
    pk             INTEGER PRIMARY KEY,
    institution_pk INTEGER NOT NULL REFERENCES institutions (pk),
    key            TEXT NOT NULL,
    body           TEXT NOT NULL,
    at             INTEGER NOT NULL,
    by_name        TEXT NOT NULL
);
CREATE INDEX capacity_history_institution ON capacity_history (institution_pk, at);

CREATE TABLE directory_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);
