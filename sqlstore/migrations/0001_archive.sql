-- The archive index: institutions, and the patients keyed by (issuer, PatientID), studies, series and instances
-- each institution owns. Every row of patient data carries its owning institution_pk, and UIDs are unique per
-- institution: a hospital's copy of a clinic's study (imported from a referral CD) is the hospital's own rows.
-- institution_pk 0 owns nothing anyone can see (only tests of the bare index write it).
-- Text is UTF-8. Dates are YYYYMMDD and times HHMMSS.FFFFFF so that strings compare in time order.
-- deleted_at (unix ms) marks rows in the trash; live queries select deleted_at IS NULL.

CREATE TABLE institutions (
    pk              INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    name_en         TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL,
    code            TEXT NOT NULL DEFAULT '',
    care_functions  TEXT NOT NULL DEFAULT '',
    issuer          TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL
);

CREATE TABLE patients (
    pk          INTEGER PRIMARY KEY,
    institution_pk INTEGER NOT NULL,
    issuer      TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    birth_date  TEXT NOT NULL DEFAULT '',
    sex         TEXT NOT NULL DEFAULT '',
    UNIQUE (institution_pk, issuer, patient_id)
);
CREATE INDEX patients_patient_id ON patients (patient_id);

-- Folded search keys of each patient's name (every component group, with and without '^', and each component
-- prefixed by \x01 for fuzzy matching).
CREATE TABLE patient_names (
    key         TEXT NOT NULL,
    patient_pk  INTEGER NOT NULL REFERENCES patients (pk) ON DELETE CASCADE,
    PRIMARY KEY (key, patient_pk)
);
CREATE INDEX patient_names_patient ON patient_names (patient_pk);

CREATE TABLE studies (
    pk             INTEGER PRIMARY KEY,
    institution_pk INTEGER NOT NULL,
    patient_pk     INTEGER NOT NULL REFERENCES patients (pk),
    study_uid      TEXT NOT NULL,
    study_date     TEXT NOT NULL DEFAULT '',
    study_time     TEXT NOT NULL DEFAULT '',
    accession      TEXT NOT NULL DEFAULT '',
    study_id       TEXT NOT NULL DEFAULT '',
    description    TEXT NOT NULL DEFAULT '',
    referring      TEXT NOT NULL DEFAULT '',
    referring_key  TEXT NOT NULL DEFAULT '',
    tz_offset      TEXT NOT NULL DEFAULT '',
    modalities     TEXT NOT NULL DEFAULT '',
    num_series     INTEGER NOT NULL DEFAULT 0,
    num_instances  INTEGER NOT NULL DEFAULT 0,
    attrs          BLOB,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deleted_at     INTEGER,
    UNIQUE (institution_pk, study_uid)
);
CREATE INDEX studies_uid ON studies (study_uid);
CREATE INDEX studies_institution_date ON studies (institution_pk, study_date, study_time);
CREATE INDEX studies_patient ON studies (patient_pk);
CREATE INDEX studies_date ON studies (study_date, study_time);
CREATE INDEX studies_accession ON studies (accession);
CREATE INDEX studies_deleted ON studies (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE series (
    pk             INTEGER PRIMARY KEY,
    institution_pk INTEGER NOT NULL,
    study_pk       INTEGER NOT NULL REFERENCES studies (pk),
    series_uid     TEXT NOT NULL,
    modality       TEXT NOT NULL DEFAULT '',
    series_number  INTEGER,
    description    TEXT NOT NULL DEFAULT '',
    body_part      TEXT NOT NULL DEFAULT '',
    series_date    TEXT NOT NULL DEFAULT '',
    series_time    TEXT NOT NULL DEFAULT '',
    pps_date       TEXT NOT NULL DEFAULT '',
    pps_time       TEXT NOT NULL DEFAULT '',
    num_instances  INTEGER NOT NULL DEFAULT 0,
    attrs          BLOB,
    deleted_at     INTEGER,
    UNIQUE (institution_pk, series_uid)
);
CREATE INDEX series_uid ON series (series_uid);
CREATE INDEX series_study ON series (study_pk);

CREATE TABLE instances (
    pk               INTEGER PRIMARY KEY,
    institution_pk   INTEGER NOT NULL,
    series_pk        INTEGER NOT NULL REFERENCES series (pk),
    sop_uid          TEXT NOT NULL,
    sop_class        TEXT NOT NULL,
    instance_number  INTEGER,
    ts_uid           TEXT NOT NULL,
    rows             INTEGER NOT NULL DEFAULT 0,
    columns          INTEGER NOT NULL DEFAULT 0,
    frames           INTEGER NOT NULL DEFAULT 0,
    bits_allocated   INTEGER NOT NULL DEFAULT 0,
    blob_key         TEXT NOT NULL,
    size             INTEGER NOT NULL,
    charset_flag     INTEGER NOT NULL DEFAULT 0,
    attrs            BLOB,
    received_at      INTEGER NOT NULL,
    source           TEXT NOT NULL DEFAULT '',
    deleted_at       INTEGER,
    UNIQUE (institution_pk, sop_uid)
);
CREATE INDEX instances_uid ON instances (sop_uid);
CREATE INDEX instances_series ON instances (series_pk);
CREATE INDEX instances_blob ON instances (blob_key);
