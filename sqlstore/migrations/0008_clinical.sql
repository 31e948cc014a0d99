-- The clinical record and referrals (issue 6).
--
-- A fact (allergy, medication, condition, document) is written by one institution about one local patient (of any
-- institution: a hospital's reply is written onto the referring clinic's patient). Its fields are a JSON body: they
-- are read per patient, never searched in SQL. Facts are never deleted; an author withdraws one as entered in error.
CREATE TABLE facts (
    pk               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,            -- allergy, medication, condition, document
    institution_pk   INTEGER NOT NULL REFERENCES institutions (pk),
    patient_pk       INTEGER NOT NULL REFERENCES patients (pk),
    author           TEXT NOT NULL,
    recorded_at      INTEGER NOT NULL,
    source           TEXT NOT NULL,            -- manual, fhir, referral
    source_id        TEXT NOT NULL DEFAULT '',
    body             TEXT NOT NULL,
    entered_in_error INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX facts_patient ON facts (patient_pk, kind);

-- A referral from one institution to another about the sender's local patient. status moves only forward, by
-- compare-and-set (UPDATE … WHERE status = the expected one), so two people acting at once cannot skip or repeat a
-- step.
CREATE TABLE referrals (
    pk               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,            -- referral, reverse, reading
    parent_pk        INTEGER NOT NULL DEFAULT 0,
    from_institution INTEGER NOT NULL REFERENCES institutions (pk),
    from_user        INTEGER NOT NULL,
    from_user_name   TEXT NOT NULL,
    to_institution   INTEGER NOT NULL REFERENCES institutions (pk),
    to_department    TEXT NOT NULL DEFAULT '',
    to_doctor        TEXT NOT NULL DEFAULT '',
    patient_pk       INTEGER NOT NULL REFERENCES patients (pk),
    priority         TEXT NOT NULL DEFAULT 'routine',
    status           TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 0,
    studies          TEXT NOT NULL DEFAULT '', -- StudyInstanceUIDs, backslash-separated
    documents        TEXT NOT NULL DEFAULT '', -- fact keys, comma-separated
    appointment      TEXT NOT NULL DEFAULT '',
    decline_reason   TEXT NOT NULL DEFAULT '',
    share_pk         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    due_at           INTEGER
);
CREATE INDEX referrals_to ON referrals (to_institution, updated_at);
CREATE INDEX referrals_from ON referrals (from_institution, updated_at);
CREATE INDEX referrals_patient ON referrals (patient_pk);

-- Letters: version 0 is the draft, editable; versions from 1 are sent and never change (the triggers refuse it).
-- reply = 1 holds the receiver's reply letter (返書) or reading report.
CREATE TABLE referral_letters (
    referral_pk INTEGER NOT NULL REFERENCES referrals (pk),
    reply       INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    written_by  TEXT NOT NULL,
    written_at  INTEGER NOT NULL,
    PRIMARY KEY (referral_pk, reply, version)
);
CREATE TRIGGER referral_letters_frozen_update BEFORE UPDATE ON referral_letters WHEN old.version > 0
BEGIN SELECT RAISE(ABORT, 'a sent letter never changes'); END;
CREATE TRIGGER referral_letters_frozen_delete BEFORE DELETE ON referral_letters WHEN old.version > 0
BEGIN SELECT RAISE(ABORT, 'a sent letter never changes'); END;

CREATE TABLE referral_events (
    pk             INTEGER PRIMARY KEY,
    referral_pk    INTEGER NOT NULL REFERENCES referrals (pk),
    status         TEXT NOT NULL,
    at             INTEGER NOT NULL,
    by_name        TEXT NOT NULL,
    by_institution INTEGER NOT NULL,
    note           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX referral_events_referral ON referral_events (referral_pk);
