-- Blobs that are not DICOM instances (clinical documents, printed referral letters, reading-report PDFs) are named
-- here when stored, so that the hourly sweep of blobs nothing refers to keeps them. Consent forms are found through
-- consents.document_key. The documents and letters stored before this table existed are named from their JSON.
CREATE TABLE blob_refs (
    blob_key   TEXT PRIMARY KEY,
    what       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO blob_refs (blob_key, what, created_at)
    SELECT DISTINCT json_extract(body, '$.blobKey'), 'document', 0 FROM facts
    WHERE kind = 'document' AND coalesce(json_extract(body, '$.blobKey'), '') <> ''
    ON CONFLICT (blob_key) DO NOTHING;
INSERT INTO blob_refs (blob_key, what, created_at)
    SELECT DISTINCT json_extract(body, '$.attachmentKey'), 'letter', 0 FROM referral_letters
    WHERE coalesce(json_extract(body, '$.attachmentKey'), '') <> ''
    ON CONFLICT (blob_key) DO NOTHING;
