package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"renkei"
)

// AuditAfter returns up to limit audit events with a Seq above after, oldest first, without their hashes: the
// monitor's read of the trail as it grows (a range of the primary key).
func (db *DB) AuditAfter(ctx context.Context, after int64, limit int) ([]renkei.AuditEvent, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.queryContext(ctx, `SELECT seq, at, actor, actor_kind, actor_id, institution_pk, role, action, outcome, purpose, source,
		data_institution, issuer, patient_id, study_uid, detail FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	out := make([]renkei.AuditEvent, 0, 64)
	for rows.Next() {
		out = append(out, renkei.AuditEvent{})
		e := &out[len(out)-1]
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.Actor, (*string)(&e.ActorKind), &e.ActorID, &e.Institution, (*string)(&e.Role), (*string)(&e.Action),
			&e.Outcome, &e.Purpose, &e.Source, &e.DataInstitution, &e.Patient.Issuer, &e.Patient.ID, &e.Study, &e.Detail); err != nil {
			return nil, queryErr(err)
		}
		e.Time = time.UnixMilli(at)
	}
	return out, queryErr(rows.Err())
}

// AuditSeqAt returns the Seq of the first event at or after t (the head's Seq + 1 if there is none). Seq grows with
// time, so it searches the primary key by halves instead of needing an index on the time.
func (db *DB) AuditSeqAt(ctx context.Context, t time.Time) (int64, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return 0, err
	}
	var head sql.NullInt64
	if err := db.queryRowContext(ctx, `SELECT max(seq) FROM audit_events`).Scan(&head); err != nil {
		return 0, queryErr(err)
	}
	lo, hi := int64(1), head.Int64+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		var at int64
		// A gap (an event removed by hand) reads the next event's time.
		err := db.queryRowContext(ctx, `SELECT at FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT 1`, mid).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			hi = mid
			continue
		}
		if err != nil {
			return 0, queryErr(err)
		}
		if at >= t.UnixMilli() {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// MonitorCursor returns the named monitor's cursor (the last event whose alerts are committed) and its saved state.
// A monitor seen for the first time starts at start.
func (db *DB) MonitorCursor(ctx context.Context, name string, start int64) (int64, []byte, error) {
	if _, err := db.write.ExecContext(ctx, `INSERT INTO monitor_cursor (name, seq, state, updated_at) VALUES (?, ?, '', ?) ON CONFLICT (name) DO NOTHING`,
		name, start, db.Now().UnixMilli()); err != nil {
		return 0, nil, queryErr(err)
	}
	var seq int64
	var state string
	if err := db.write.QueryRowContext(ctx, `SELECT seq, state FROM monitor_cursor WHERE name = ?`, name).Scan(&seq, &state); err != nil {
		return 0, nil, queryErr(err)
	}
	return seq, []byte(state), nil
}

// CommitMonitor moves the named cursor from from to to and raises (or adds to) the alerts, in one transaction. The
// move is a compare-and-set: if another node moved the cursor first, nothing is written and the error is a
// renkei.Conflict (that node raised these alerts). state, when not nil, replaces the saved state.
func (db *DB) CommitMonitor(ctx context.Context, name string, from, to int64, state []byte, alerts []*renkei.Alert) error {
	const op = "index.CommitMonitor"
	return db.writeTx(ctx, op, func(tx *sql.Tx) error {
		q, args := `UPDATE monitor_cursor SET seq = ?, updated_at = ? WHERE name = ? AND seq = ?`, []any{to, db.Now().UnixMilli(), name, from}
		if state != nil {
			q, args = `UPDATE monitor_cursor SET seq = ?, updated_at = ?, state = ? WHERE name = ? AND seq = ?`, []any{to, db.Now().UnixMilli(), string(state), name, from}
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorf(op, renkei.Conflict, "the monitor's cursor moved on another node")
		}
		for _, a := range alerts {
			if err := raiseAlert(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
}

// raiseAlert adds a's events to the open alert of the same rule and subject, or opens one; it sets a.ID (0 when a
// once-only pattern was raised before).
func raiseAlert(ctx context.Context, tx *sql.Tx, a *renkei.Alert) error {
	var pk int64
	var count int
	if a.Once {
		err := tx.QueryRowContext(ctx, `SELECT pk FROM alerts WHERE rule = ? AND subject = ? LIMIT 1`, a.Rule, a.Subject).Scan(&pk)
		if err == nil {
			a.ID = 0
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	err := tx.QueryRowContext(ctx, `SELECT pk, (SELECT count(*) FROM alert_events WHERE alert_pk = alerts.pk) FROM alerts
		WHERE rule = ? AND subject = ? AND status <> 'resolved'`, a.Rule, a.Subject).Scan(&pk, &count)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		count = 0
		err = tx.QueryRowContext(ctx, `INSERT INTO alerts (rule, subject, severity, institution_pk, explanation, explanation_en, actor, actor_kind,
			actor_id, data_institution, issuer, patient_id, source, event_count, first_at, last_at, status)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open') RETURNING pk`,
			a.Rule, a.Subject, a.Severity, a.Institution, a.Explanation, a.ExplanationEn, a.Actor, string(a.ActorKind), a.ActorID,
			a.DataInstitution, a.Patient.Issuer, a.Patient.ID, a.Source, a.Count, a.FirstAt.UnixMilli(), a.LastAt.UnixMilli()).Scan(&pk)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		// The same pattern goes on: the explanation says the new count; a patient named later is kept.
		if _, err := tx.ExecContext(ctx, `UPDATE alerts SET severity = ?, explanation = ?, explanation_en = ?, event_count = event_count + ?, last_at = ?,
			issuer = CASE WHEN patient_id = '' THEN ? ELSE issuer END, data_institution = CASE WHEN patient_id = '' THEN ? ELSE data_institution END,
			patient_id = CASE WHEN patient_id = '' THEN ? ELSE patient_id END, source = CASE WHEN source = '' THEN ? ELSE source END
			WHERE pk = ?`, a.Severity, a.Explanation, a.ExplanationEn, a.Count, a.LastAt.UnixMilli(), a.Patient.Issuer, a.DataInstitution,
			a.Patient.ID, a.Source, pk); err != nil {
			return err
		}
	}
	a.ID = pk
	for _, seq := range a.Events {
		if count >= renkei.MaxAlertEvents {
			break
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO alert_events (alert_pk, seq) VALUES (?, ?) ON CONFLICT (alert_pk, seq) DO NOTHING`, pk, seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			count++
		}
	}
	return nil
}

// Related reports whether an institution (or one of its users) had, at time at, a reason to see a patient of
// another institution: a share to it or to the user (referral, consult, emergency, break-glass…), in force then, or a
// referral between the two about the patient.
func (db *DB) Related(ctx context.Context, institution, user, dataInstitution int64, patient renkei.PatientKey, at time.Time) (bool, error) {
	ms := at.UnixMilli()
	var n int
	err := db.queryRowContext(ctx, `SELECT count(*) FROM patients p WHERE p.institution_pk = ? AND p.issuer = ? AND p.patient_id = ? AND (
		EXISTS (SELECT 1 FROM shares sh WHERE sh.patient_pk = p.pk AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?))
			AND sh.created_at <= ? AND sh.expires_at > ? AND (sh.revoked_at IS NULL OR sh.revoked_at > ?))
		OR EXISTS (SELECT 1 FROM referrals r WHERE r.patient_pk = p.pk AND (r.to_institution = ? OR r.from_institution = ?)))`,
		dataInstitution, patient.Issuer, patient.ID, institution, user, ms+60_000, ms-60_000, ms-60_000, institution, institution).Scan(&n)
	if err != nil {
		return false, queryErr(err)
	}
	return n > 0, nil
}

const alertCols = `a.pk, a.rule, a.subject, a.severity, a.institution_pk, a.explanation, a.explanation_en, a.actor, a.actor_kind, a.actor_id,
	a.data_institution, a.issuer, a.patient_id, a.source, a.event_count, a.first_at, a.last_at, a.status, a.acknowledged_by, a.acknowledged_at,
	a.resolved_by, a.resolved_at, a.note`

func scanAlert(row interface{ Scan(...any) error }) (renkei.Alert, error) {
	var a renkei.Alert
	var first, last int64
	err := row.Scan(&a.ID, &a.Rule, &a.Subject, &a.Severity, &a.Institution, &a.Explanation, &a.ExplanationEn, &a.Actor, (*string)(&a.ActorKind),
		&a.ActorID, &a.DataInstitution, &a.Patient.Issuer, &a.Patient.ID, &a.Source, &a.Count, &first, &last, (*string)(&a.Status),
		&a.AcknowledgedBy, msTimeScanner{&a.AcknowledgedAt}, &a.ResolvedBy, msTimeScanner{&a.ResolvedAt}, &a.Note)
	a.FirstAt, a.LastAt = time.UnixMilli(first), time.UnixMilli(last)
	return a, err
}

// Alerts lists the alerts that match f, the most recently active first, each with the Seq of its events.
func (db *DB) Alerts(ctx context.Context, f renkei.AlertFilter) ([]renkei.Alert, error) {
	q := `SELECT ` + alertCols + ` FROM alerts a WHERE 1 = 1`
	var args []any
	if f.ID != 0 {
		q += ` AND a.pk = ?`
		args = append(args, f.ID)
	}
	if f.Institution != 0 {
		q += ` AND a.institution_pk = ?`
		args = append(args, f.Institution)
	}
	if f.Status != "" {
		q += ` AND a.status = ?`
		args = append(args, string(f.Status))
	}
	if f.Unresolved {
		q += ` AND a.status <> 'resolved'`
	}
	if !f.Since.IsZero() {
		q += ` AND a.last_at >= ?`
		args = append(args, f.Since.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 200
	}
	q += fmt.Sprintf(` ORDER BY a.last_at DESC, a.pk DESC LIMIT %d`, limit)
	rows, err := db.queryContext(ctx, q, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	var out []renkei.Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			rows.Close()
			return nil, queryErr(err)
		}
		out = append(out, a)
	}
	if err := rows.Close(); err != nil {
		return nil, queryErr(err)
	}
	if err := rows.Err(); err != nil {
		return nil, queryErr(err)
	}
	for i := range out {
		if out[i].Events, err = db.alertSeqs(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (db *DB) alertSeqs(ctx context.Context, id int64) ([]int64, error) {
	rows, err := db.queryContext(ctx, `SELECT seq FROM alert_events WHERE alert_pk = ? ORDER BY seq`, id)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, s)
	}
	return out, queryErr(rows.Err())
}

// Alert returns one alert; an unknown id is a renkei.NotFound error.
func (db *DB) Alert(ctx context.Context, id int64) (renkei.Alert, error) {
	list, err := db.Alerts(ctx, renkei.AlertFilter{ID: id})
	if err != nil {
		return renkei.Alert{}, err
	}
	if len(list) == 0 {
		return renkei.Alert{}, renkei.Errorj("index.Alert", renkei.NotFound, "アラート No. %d は見つかりません。", "there is no alert %d", id)
	}
	return list[0], nil
}

// AlertEvents returns the audit events behind an alert, oldest first.
func (db *DB) AlertEvents(ctx context.Context, id int64) ([]renkei.AuditEvent, error) {
	rows, err := db.queryContext(ctx, `SELECT e.seq, e.at, e.actor, e.actor_kind, e.actor_id, e.institution_pk, e.role, e.action, e.outcome, e.purpose,
		e.source, e.data_institution, e.issuer, e.patient_id, e.study_uid, e.detail, e.prev_hash, e.hash
		FROM alert_events ae JOIN audit_events e ON e.seq = ae.seq WHERE ae.alert_pk = ? ORDER BY e.seq`, id)
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

// AcknowledgeAlert marks an open alert as being looked at by by. institution limits which alerts (0: any); an alert
// already acknowledged or resolved is a renkei.Conflict. The audit event commits with it.
func (db *DB) AcknowledgeAlert(ctx context.Context, id, institution int64, by string, audit *renkei.AuditEvent) error {
	return db.alertStep(ctx, "index.AcknowledgeAlert", id, institution, audit,
		`UPDATE alerts SET status = 'acknowledged', acknowledged_by = ?, acknowledged_at = ? WHERE pk = ? AND status = 'open'`,
		by, db.Now().UnixMilli(), id)
}

// ResolveAlert closes an open or acknowledged alert with a note saying what was found. A later event of the same
// pattern opens a new alert.
func (db *DB) ResolveAlert(ctx context.Context, id, institution int64, by, note string, audit *renkei.AuditEvent) error {
	now := db.Now().UnixMilli()
	return db.alertStep(ctx, "index.ResolveAlert", id, institution, audit,
		`UPDATE alerts SET status = 'resolved', resolved_by = ?, resolved_at = ?, note = ?,
			acknowledged_by = CASE WHEN acknowledged_by = '' THEN ? ELSE acknowledged_by END, acknowledged_at = coalesce(acknowledged_at, ?)
			WHERE pk = ? AND status <> 'resolved'`, by, now, note, by, now, id)
}

func (db *DB) alertStep(ctx context.Context, op string, id, institution int64, audit *renkei.AuditEvent, q string, args ...any) error {
	return db.writeTx(ctx, op, func(tx *sql.Tx) error {
		var status string
		var inst int64
		err := tx.QueryRowContext(ctx, `SELECT status, institution_pk FROM alerts WHERE pk = ?`, id).Scan(&status, &inst)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && institution != 0 && inst != institution) {
			return renkei.Errorj(op, renkei.NotFound, "アラート No. %d は見つかりません。", "there is no alert %d", id)
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			word := map[string]string{"acknowledged": "acknowledged", "resolved": "resolved"}[status]
			return renkei.Errorf(op, renkei.Conflict, "alert %d is already %s", id, strings.TrimSpace(word))
		}
		return nil
	}, audit)
}

// RaiseAlert opens an alert, or adds to the open one of the same rule and subject, outside the monitor's cursor: for
// watchers that judge state rather than the audit trail (a silent hospital gateway).
func (db *DB) RaiseAlert(ctx context.Context, a *renkei.Alert) error {
	return db.writeTx(ctx, "index.RaiseAlert", func(tx *sql.Tx) error { return raiseAlert(ctx, tx, a) })
}
