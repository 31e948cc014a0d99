-- The audit journal's files carry the index's journal name (set at the journal's first open), so that files left
-- beside a folder's earlier index.db (deleted and made anew) are never taken for this one's.
ALTER TABLE audit_journal ADD COLUMN id TEXT NOT NULL DEFAULT '';
