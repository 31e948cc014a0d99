package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"renkei"
)

// CreateConsult records a consult (its creator is its first member); it sets c.ID.
func (db *DB) CreateConsult(ctx context.Context, c *renkei.Consult, audit *renkei.AuditEvent) error {
	c.CreatedAt = db.Now()
	return db.writeTx(ctx, "index.CreateConsult", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO consults (study_uid, study_owner, patient_issuer, patient_id, title, created_by, created_by_name,
			institution_pk, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`, c.StudyUID, c.StudyOwner, c.Patient.Issuer, c.Patient.ID, c.Title,
			c.CreatedBy, c.CreatedByName, c.Institution, c.CreatedAt.UnixMilli()).Scan(&c.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO consult_members (consult_pk, user_pk, login, invited_by, invited_at) VALUES (?, ?, ?, ?, ?)`,
			c.ID, c.CreatedBy, c.CreatedByName, c.CreatedByName, c.CreatedAt.UnixMilli())
		return err
	}, audit)
}

// InviteToConsult adds a member, and the share that lets them see the study (nil when they see it already), in one
// transaction. Inviting a member again makes no second share while theirs is in force.
func (db *DB) InviteToConsult(ctx context.Context, id int64, m renkei.ConsultMember, share *renkei.Share, audit *renkei.AuditEvent) error {
	now := db.Now()
	return db.writeTx(ctx, "index.InviteToConsult", func(tx *sql.Tx) error {
		// Someone invited again (a double click, or a day later) keeps the share they have while it is in force;
		// one that ended is replaced, and the membership names the new one.
		var member bool
		var sharePK int64
		err := tx.QueryRowContext(ctx, `SELECT share_pk FROM consult_members WHERE consult_pk = ? AND user_pk = ?`, id, m.User).Scan(&sharePK)
		if err == nil {
			member = true
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if share != nil && member && sharePK != 0 {
			var live bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM shares WHERE pk = ? AND revoked_at IS NULL AND expires_at > ?)`,
				sharePK, now.UnixMilli()).Scan(&live); err != nil {
				return err
			}
			if live {
				share = nil
			}
		}
		if share != nil {
			share.CreatedAt = now
			if err := db.createShare(ctx, tx, share); err != nil {
				return err
			}
			sharePK = share.ID
		}
		if member {
			_, err = tx.ExecContext(ctx, `UPDATE consult_members SET share_pk = ? WHERE consult_pk = ? AND user_pk = ?`, sharePK, id, m.User)
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO consult_members (consult_pk, user_pk, login, invited_by, invited_at, share_pk) VALUES (?, ?, ?, ?, ?, ?)`,
			id, m.User, m.Login, m.InvitedBy, now.UnixMilli(), sharePK)
		return err
	}, audit)
}

// Consult returns a consult with its members.
func (db *DB) Consult(ctx context.Context, id int64) (renkei.Consult, error) {
	var c renkei.Consult
	var at int64
	err := db.queryRowContext(ctx, `SELECT pk, study_uid, study_owner, patient_issuer, patient_id, title, created_by, created_by_name, institution_pk, created_at
		FROM consults WHERE pk = ?`, id).Scan(&c.ID, &c.StudyUID, &c.StudyOwner, &c.Patient.Issuer, &c.Patient.ID, &c.Title, &c.CreatedBy, &c.CreatedByName,
		&c.Institution, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return c, renkei.Errorj("index.Consult", renkei.NotFound, "相談 No. %d は見つかりません。", "there is no consult %d", id)
	}
	if err != nil {
		return c, queryErr(err)
	}
	c.CreatedAt = time.UnixMilli(at)
	rows, err := db.queryContext(ctx, `SELECT user_pk, login, invited_by, invited_at FROM consult_members WHERE consult_pk = ? ORDER BY invited_at`, id)
	if err != nil {
		return c, queryErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var m renkei.ConsultMember
		var inv int64
		if err := rows.Scan(&m.User, &m.Login, &m.InvitedBy, &inv); err != nil {
			return c, queryErr(err)
		}
		m.InvitedAt = time.UnixMilli(inv)
		c.Members = append(c.Members, m)
	}
	return c, queryErr(rows.Err())
}

// ConsultsOf lists the consults a user is a member of, newest first.
func (db *DB) ConsultsOf(ctx context.Context, user int64) ([]renkei.Consult, error) {
	rows, err := db.queryContext(ctx, `SELECT c.pk FROM consults c JOIN consult_members m ON m.consult_pk = c.pk WHERE m.user_pk = ?
		ORDER BY c.created_at DESC LIMIT 100`, user)
	if err != nil {
		return nil, queryErr(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, queryErr(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []renkei.Consult
	for _, id := range ids {
		c, err := db.Consult(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// AddConsultEvent keeps one event of a consult.
func (db *DB) AddConsultEvent(ctx context.Context, id int64, e renkei.ConsultEvent) error {
	return db.writeTx(ctx, "index.AddConsultEvent", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO consult_events (consult_pk, at, login, kind, body) VALUES (?, ?, ?, ?, ?)`,
			id, e.At.UnixMilli(), e.Login, e.Kind, e.Body)
		return err
	})
}

// ConsultEvents returns a consult's kept events, oldest first.
func (db *DB) ConsultEvents(ctx context.Context, id int64) ([]renkei.ConsultEvent, error) {
	rows, err := db.queryContext(ctx, `SELECT at, login, kind, body FROM consult_events WHERE consult_pk = ? ORDER BY pk`, id)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.ConsultEvent
	for rows.Next() {
		var e renkei.ConsultEvent
		var at int64
		if err := rows.Scan(&at, &e.Login, &e.Kind, &e.Body); err != nil {
			return nil, queryErr(err)
		}
		e.At = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, queryErr(rows.Err())
}
