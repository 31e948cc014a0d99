-- Destinations reached over DICOM TLS: C-MOVE sub-operations and storage-commitment reports to this AE open their
-- association with TLS (its port is then its TLS port).
ALTER TABLE aes ADD COLUMN tls INTEGER NOT NULL DEFAULT 0;
