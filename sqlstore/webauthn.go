package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"renkei"
)

// AddWebAuthnCredential stores a user's new credential, with its audit event.
func (db *DB) AddWebAuthnCredential(ctx context.Context, c *renkei.WebAuthnCredential, audit *renkei.AuditEvent) error {
	c.CreatedAt = db.Now()
	return db.writeTx(ctx, "index.AddWebAuthnCredential", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webauthn_credentials (id, user_pk, name, record, created_at) VALUES (?, ?, ?, ?, ?)`,
			c.ID, c.User, c.Name, string(c.Record), c.CreatedAt.UnixMilli())
		return err
	}, audit)
}

// WebAuthnCredentials lists a user's credentials.
func (db *DB) WebAuthnCredentials(ctx context.Context, user int64) ([]renkei.WebAuthnCredential, error) {
	rows, err := db.queryContext(ctx, `SELECT id, user_pk, name, record, created_at, last_used FROM webauthn_credentials WHERE user_pk = ? ORDER BY created_at`, user)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.WebAuthnCredential
	for rows.Next() {
		var c renkei.WebAuthnCredential
		var created int64
		var rec string
		if err := rows.Scan(&c.ID, &c.User, &c.Name, &rec, &created, msTimeScanner{&c.LastUsed}); err != nil {
			return nil, queryErr(err)
		}
		c.Record, c.CreatedAt = []byte(rec), time.UnixMilli(created)
		out = append(out, c)
	}
	return out, queryErr(rows.Err())
}

// DeleteWebAuthnCredential forgets one of a user's credentials, with its audit event; another user's or an unknown
// id is NotFound.
func (db *DB) DeleteWebAuthnCredential(ctx context.Context, user int64, id []byte, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.DeleteWebAuthnCredential", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webauthn_credentials WHERE user_pk = ? AND id = ?`, user, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.DeleteWebAuthnCredential", renkei.NotFound, "該当するセキュリティキーはありません。", "there is no such security key")
		}
		return nil
	}, audit)
}

// UpdateWebAuthnCredential stores a credential's record after a login (its signature counter moves on).
func (db *DB) UpdateWebAuthnCredential(ctx context.Context, id, record []byte) error {
	_, err := db.write.ExecContext(ctx, `UPDATE webauthn_credentials SET record = ?, last_used = ? WHERE id = ?`, string(record), db.Now().UnixMilli(), id)
	return queryErr(err)
}

// SetCeremony keeps the state of a WebAuthn ceremony with its session (empty ends it).
func (db *DB) SetCeremony(ctx context.Context, idHash, ceremony string) error {
	_, err := db.write.ExecContext(ctx, `UPDATE sessions SET ceremony = ? WHERE id_hash = ?`, ceremony, idHash)
	return queryErr(err)
}

// Ceremony returns the state of a session's WebAuthn ceremony ("" if none).
func (db *DB) Ceremony(ctx context.Context, idHash string) (string, error) {
	var c string
	err := db.queryRowContext(ctx, `SELECT ceremony FROM sessions WHERE id_hash = ?`, idHash).Scan(&c)
	if err == sql.ErrNoRows {
		return "", renkei.Errorj("index.Ceremony", renkei.Unauthorized, "セッションが終了しました。もう一度ログインしてください。",
			"the login session has ended; please log in again")
	}
	return c, queryErr(err)
}
