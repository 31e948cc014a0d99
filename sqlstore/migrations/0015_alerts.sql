-- Security monitoring (issue 10): the alerts the rules raise over the audit trail, the events behind each, and the
-- monitor's durable cursor. One open (or acknowledged) alert per rule and subject: the partial unique index keeps a
-- pattern from raising a second one on any node; new events are added to the open one.
CREATE TABLE alerts (
    pk                INTEGER PRIMARY KEY,
    rule              TEXT NOT NULL,
    subject           TEXT NOT NULL,
    severity          TEXT NOT NULL,
    institution_pk    INTEGER NOT NULL DEFAULT 0,
    explanation       TEXT NOT NULL DEFAULT '',
    explanation_en    TEXT NOT NULL DEFAULT '',
    actor             TEXT NOT NULL DEFAULT '',
    actor_kind        TEXT NOT NULL DEFAULT '',
    actor_id          INTEGER NOT NULL DEFAULT 0,
    data_institution  INTEGER NOT NULL DEFAULT 0,
    issuer            TEXT NOT NULL DEFAULT '',
    patient_id        TEXT NOT NULL DEFAULT '',
    source            TEXT NOT NULL DEFAULT '',
    event_count       INTEGER NOT NULL DEFAULT 0,
    first_at          INTEGER NOT NULL,
    last_at           INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT 'open',
    acknowledged_by   TEXT NOT NULL DEFAULT '',
    acknowledged_at   INTEGER,
    resolved_by       TEXT NOT NULL DEFAULT '',
    resolved_at       INTEGER,
    note              TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE status <> 'resolved';
CREATE INDEX alerts_subject ON alerts (rule, subject);
CREATE INDEX alerts_institution ON alerts (institution_pk, last_at);

-- The audit events (by seq) behind each alert.
CREATE TABLE alert_events (
    alert_pk  INTEGER NOT NULL REFERENCES alerts (pk) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (alert_pk, seq)
);

-- The monitor's cursor: the last audit event whose alerts are committed, moved by compare-and-set in the alerts'
-- transaction, so that with several nodes each pattern is raised once; state is what the rules learned (JSON).
CREATE TABLE monitor_cursor (
    name        TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL
);
