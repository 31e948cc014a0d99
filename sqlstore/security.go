package sqlstore

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"renkei"
)

// The security status (accounts, AE transports, audit verifications) and the audit export's cursor (migration 0016).

// Accounts lists every user with how they log in and when they last did, by login.
func (db *DB) Accounts(ctx context.Context) ([]renkei.Account, error) {
	rows, err := db.queryContext(ctx, `SELECT u.pk, u.login, u.name, i.id, u.role, u.disabled, u.totp_secret <> '',
		(SELECT count(*) FROM webauthn_credentials w WHERE w.user_pk = u.pk), u.created_at, u.last_login
		FROM users u JOIN institutions i ON i.pk = u.institution_pk ORDER BY u.login`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.Account
	for rows.Next() {
		var a renkei.Account
		var created int64
		if err := rows.Scan(&a.PK, &a.Login, &a.Name, &a.Institution, (*string)(&a.Role), &a.Disabled, &a.HasTOTP, &a.SecurityKeys,
			&created, msTimeScanner{&a.LastLogin}); err != nil {
			return nil, queryErr(err)
		}
		a.CreatedAt = time.UnixMilli(created)
		out = append(out, a)
	}
	return out, queryErr(rows.Err())
}

// noteLogin records a completed login inside the transaction that makes the session full.
func noteLogin(ctx context.Context, tx *sql.Tx, s *renkei.Session) error {
	if s.SecondFactorAt == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE users SET last_login = ? WHERE pk = ?`, s.SecondFactorAt.UnixMilli(), s.User)
	return err
}

// NoteAEConnection records the transport an AE title associated over. The registry's check has already admitted it.
func (db *DB) NoteAEConnection(ctx context.Context, c renkei.AEConnection) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO ae_connections (title, at, tls, address) VALUES (?, ?, ?, ?)
		ON CONFLICT (title) DO UPDATE SET at = excluded.at, tls = excluded.tls, address = excluded.address`,
		c.Title, c.At.UnixMilli(), c.TLS, c.Address)
	return queryErr(err)
}

// AEConnections returns how each AE title last associated, by title.
func (db *DB) AEConnections(ctx context.Context) (map[string]renkei.AEConnection, error) {
	rows, err := db.queryContext(ctx, `SELECT title, at, tls, address FROM ae_connections`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	out := map[string]renkei.AEConnection{}
	for rows.Next() {
		var c renkei.AEConnection
		var at int64
		if err := rows.Scan(&c.Title, &at, &c.TLS, &c.Address); err != nil {
			return nil, queryErr(err)
		}
		c.At = time.UnixMilli(at)
		out[c.Title] = c
	}
	return out, queryErr(rows.Err())
}

// RecordAuditVerification keeps the result of a verification of the audit chain.
func (db *DB) RecordAuditVerification(ctx context.Context, v renkei.AuditVerification) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO audit_verifications (at, "by", events, last_seq, problems, first_problem)
		VALUES (?, ?, ?, ?, ?, ?)`, v.At.UnixMilli(), v.By, v.Events, v.LastSeq, v.Problems, v.FirstProblem)
	return queryErr(err)
}

// LastAuditVerification returns the newest recorded verification; none is a renkei.NotFound error.
func (db *DB) LastAuditVerification(ctx context.Context) (renkei.AuditVerification, error) {
	var v renkei.AuditVerification
	var at int64
	err := db.queryRowContext(ctx, `SELECT at, "by", events, last_seq, problems, first_problem FROM audit_verifications
		ORDER BY at DESC, pk DESC LIMIT 1`).Scan(&at, &v.By, &v.Events, &v.LastSeq, &v.Problems, &v.FirstProblem)
	if errors.Is(err, sql.ErrNoRows) {
		return v, renkei.Errorf("index.LastAuditVerification", renkei.NotFound, "the audit trail has never been verified")
	}
	v.At = time.UnixMilli(at)
	return v, queryErr(err)
}

// AuditEventsAfter returns up to limit events with Seq > seq, oldest first: the audit export reads the chain in
// order with it.
func (db *DB) AuditEventsAfter(ctx context.Context, seq int64, limit int) ([]renkei.AuditEvent, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return nil, err
	}
	rows, err := db.queryContext(ctx, `SELECT seq, at, actor, actor_kind, actor_id, institution_pk, role, action, outcome, purpose,
		source, data_institution, issuer, patient_id, study_uid, detail, prev_hash, hash FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`,
		seq, limit)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.AuditEvent
	for rows.Next() {
		var e renkei.AuditEvent
		var at int64
		if err := rows.Scan(auditDest(&e, &at)...); err != nil {
			return nil, queryErr(err)
		}
		e.Time = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, queryErr(rows.Err())
}

// AuditHead returns the newest event's Seq (0 for an empty chain).
func (db *DB) AuditHead(ctx context.Context) (int64, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return 0, err
	}
	var seq int64
	err := db.queryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM audit_events`).Scan(&seq)
	return seq, queryErr(err)
}

// ExportCursor returns how far the named audit export has delivered the chain (0: nothing yet).
func (db *DB) ExportCursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := db.queryRowContext(ctx, `SELECT seq FROM audit_exports WHERE name = ?`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, queryErr(err)
}

// SetExportCursor records that the named audit export has delivered every event up to seq.
func (db *DB) SetExportCursor(ctx context.Context, name string, seq int64) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO audit_exports (name, seq, at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, at = excluded.at`, name, seq, db.Now().UnixMilli())
	return queryErr(err)
}

// VerifyAndRecordAudit verifies the audit chain (VerifyAudit) and records the result for the security status page,
// naming who ran it.
func (db *DB) VerifyAndRecordAudit(ctx context.Context, keys map[string]ed25519.PublicKey, by string) (*AuditReport, error) {
	rep, err := db.VerifyAudit(ctx, keys)
	if err != nil {
		return nil, err
	}
	v := renkei.AuditVerification{At: db.Now(), By: by, Events: rep.Events, LastSeq: rep.LastSeq, Problems: len(rep.Problems)}
	if len(rep.Problems) > 0 {
		v.FirstProblem = fmt.Sprintf("event %d: %s", rep.Problems[0].Seq, rep.Problems[0].Problem)
	}
	if err := db.RecordAuditVerification(ctx, v); err != nil {
		return rep, err
	}
	return rep, nil
}
