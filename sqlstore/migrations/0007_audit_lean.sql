-- Each audit event is a transaction's worth of pages written; a read's event must commit before its answer, so every
-- page counts (measured: a commit per read cost about as much as a small QIDO-RS request). The chain's head is the
-- last event itself (found by its primary key, on the page the next event is written to), not a row of its own, and
-- the actor index waits for the monitoring that will query by actor (issue 10). Removing the newest events is
-- detected by the signed checkpoints, as before: a head row in the same database never protected against that.
DROP INDEX audit_actor;
DROP TABLE audit_head;
