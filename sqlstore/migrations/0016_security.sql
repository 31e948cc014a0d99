-- Security status and audit export (issue 10).
--
-- users.last_login: when the user last completed a login (second factor, or password alone where none is needed),
-- so that dormant accounts can be listed without reading the audit trail. Filled from the trail's login events
-- for logins before this migration.
ALTER TABLE users ADD COLUMN last_login INTEGER;
UPDATE users SET last_login = (SELECT max(at) FROM audit_events e WHERE e.actor_kind = 'user' AND e.actor_id = users.pk
    AND e.action = 'login' AND e.outcome = 'success');

-- The result of each audit-chain verification (renkei admin audit verify, or the security page's button).
CREATE TABLE audit_verifications (
    pk        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    by        TEXT NOT NULL,
    events    INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    problems  INTEGER NOT NULL,
    first_problem TEXT NOT NULL DEFAULT ''
);

-- How far each audit export (the syslog exporter to a SIEM) has sent the chain: every event with seq <= seq has
-- been delivered. The exporter resumes after it.
CREATE TABLE audit_exports (
    name    TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL
);

-- The transport each DICOM AE title last associated over: plain TCP or DICOM TLS.
CREATE TABLE ae_connections (
    title   TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    tls     INTEGER NOT NULL,
    address TEXT NOT NULL DEFAULT ''
);
