-- The audit journal of a SQLite index (sqlstore/journal.go): the events of reads are written to numbered files
-- beside the index first and appended to the chain in larger transactions. This row names the newest file whose
-- events the chain holds, and how many of them, so that a restart after a crash appends only the rest.
CREATE TABLE audit_journal (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    file    INTEGER NOT NULL,
    drained INTEGER NOT NULL
);
INSERT INTO audit_journal (one, file, drained) VALUES (1, 0, 0);
