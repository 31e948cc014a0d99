-- Requests to an institution's gateway to fetch a patient's earlier studies from its local PACS (C-FIND, C-MOVE),
-- and what the gateway reported back.
CREATE TABLE fetch_requests (
    pk                       INTEGER PRIMARY KEY,
    institution_pk           INTEGER NOT NULL REFERENCES institutions (pk),
    patient_issuer           TEXT NOT NULL,
    patient_id               TEXT NOT NULL,
    since                    TEXT NOT NULL DEFAULT '',
    reason                   TEXT NOT NULL DEFAULT '',
    requested_by             TEXT NOT NULL,
    requested_by_institution INTEGER NOT NULL REFERENCES institutions (pk),
    created_at               INTEGER NOT NULL,
    status                   TEXT NOT NULL DEFAULT 'pending',
    detail                   TEXT NOT NULL DEFAULT '',
    studies                  INTEGER NOT NULL DEFAULT 0,
    instances                INTEGER NOT NULL DEFAULT 0,
    updated_at               INTEGER NOT NULL
);
CREATE INDEX fetch_requests_institution ON fetch_requests (institution_pk, status);
CREATE INDEX fetch_requests_requester ON fetch_requests (requested_by_institution, created_at);
