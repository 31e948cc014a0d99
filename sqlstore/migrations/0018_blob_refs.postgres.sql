-- PostgreSQL form of 0018_blob_refs.sql: the JSON of the existing documents and letters read with ->>.
CREATE TABLE blob_refs (
    blob_key   TEXT PRIMARY KEY,
    what       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO blob_refs (blob_key, what, created_at)
    SELECT DISTINCT body::json ->> 'blobKey', 'document', 0 FROM facts
    WHERE kind = 'document' AND coalesce(body::json ->> 'blobKey', '') <> ''
    ON CONFLICT (blob_key) DO NOTHING;
INSERT INTO blob_refs (blob_key, what, created_at)
    SELECT DISTINCT body::json ->> 'attachmentKey', 'letter', 0 FROM referral_letters
    WHERE coalesce(body::json ->> 'attachmentKey', '') <> ''
    ON CONFLICT (blob_key) DO NOTHING;
