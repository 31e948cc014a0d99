-- Merges of regional patients nest: C merged into B, then B into A. merged_from alone kept only the last merge, so
-- undoing B's left C's links under B with nothing to say where they came from, and C's merge could no longer be
-- undone. merge_path keeps every merge a link went through, oldest first, as comma-separated regional numbers
-- ("C,B"); merged_from stays its last element (0: linked directly).
ALTER TABLE patient_links ADD COLUMN merge_path TEXT NOT NULL DEFAULT '';
UPDATE patient_links SET merge_path = CAST(merged_from AS TEXT) WHERE merged_from <> 0;
