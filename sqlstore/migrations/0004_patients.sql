-- One patient across the region (as IHE PIX): each institution's local patient (patients.pk) is linked to at most
-- one regional patient; a person confirms each link. Consent (同意) per local patient and disclosing institution.
-- Invitations let a patient create their own account. Break-glass grants are shares reviewed afterwards.

CREATE TABLE regional_patients (
    pk          INTEGER PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE patient_links (
    patient_pk   INTEGER PRIMARY KEY REFERENCES patients (pk) ON DELETE CASCADE,
    regional_pk  INTEGER NOT NULL REFERENCES regional_patients (pk),
    linked_by    TEXT NOT NULL,
    linked_at    INTEGER NOT NULL
);
CREATE INDEX patient_links_regional ON patient_links (regional_pk);

CREATE TABLE consents (
    pk              INTEGER PRIMARY KEY,
    institution_pk  INTEGER NOT NULL REFERENCES institutions (pk),
    patient_pk      INTEGER NOT NULL REFERENCES patients (pk),
    scope           TEXT NOT NULL,          -- "region", or a comma-separated list of institution IDs
    given_at        INTEGER NOT NULL,
    method          TEXT NOT NULL,          -- "paper" (a scanned 同意書) or "electronic"
    document_key    TEXT NOT NULL DEFAULT '', -- blob key of the scanned form or signed statement
    document_type   TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    recorded_by     TEXT NOT NULL,
    recorded_at     INTEGER NOT NULL,
    withdrawn_at    INTEGER,
    withdrawn_by    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX consents_patient ON consents (patient_pk);

CREATE TABLE invitations (
    code_hash       TEXT PRIMARY KEY,
    institution_pk  INTEGER NOT NULL REFERENCES institutions (pk),
    patient_pk      INTEGER NOT NULL REFERENCES patients (pk),
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE users ADD COLUMN patient_pk INTEGER NOT NULL DEFAULT 0;

ALTER TABLE shares ADD COLUMN reviewed_at INTEGER;
ALTER TABLE shares ADD COLUMN reviewed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE shares ADD COLUMN review_note TEXT NOT NULL DEFAULT '';
