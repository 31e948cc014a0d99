-- Live consults: a room on one study, its members (the creator and the people invited, each invitation sharing the
-- study with them for the consult) and its key events (joins, annotations, chat, control), kept with the study.
CREATE TABLE consults (
    pk              INTEGER PRIMARY KEY,
    study_uid       TEXT NOT NULL,
    study_owner     INTEGER NOT NULL REFERENCES institutions (pk),
    patient_issuer  TEXT NOT NULL,
    patient_id      TEXT NOT NULL,
    title           TEXT NOT NULL DEFAULT '',
    created_by      INTEGER NOT NULL,
    created_by_name TEXT NOT NULL,
    institution_pk  INTEGER NOT NULL REFERENCES institutions (pk),
    created_at      INTEGER NOT NULL,
    closed_at       INTEGER
);

CREATE TABLE consult_members (
    consult_pk  INTEGER NOT NULL REFERENCES consults (pk),
    user_pk     INTEGER NOT NULL,
    login       TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    invited_at  INTEGER NOT NULL,
    share_pk    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consult_pk, user_pk)
);
CREATE INDEX consult_members_user ON consult_members (user_pk);

CREATE TABLE consult_events (
    pk         INTEGER PRIMARY KEY,
    consult_pk INTEGER NOT NULL REFERENCES consults (pk),
    at         INTEGER NOT NULL,
    login      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX consult_events_consult ON consult_events (consult_pk, pk);
