-- The character set an instance's undeclared text was decoded with at ingest, when its sender is registered with one
-- (an AE title's --charset): WADO-RS metadata decodes the stored bytes again and must use the same one, or a name
-- that QIDO-RS shows correctly comes back garbled. Empty: the server's --fallback-charset.
ALTER TABLE instances ADD COLUMN charset TEXT NOT NULL DEFAULT '';
