package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"renkei"
)

// PutAE adds an AE or replaces the one with the same title.
func (db *DB) PutAE(ctx context.Context, ae renkei.AE, audit *renkei.AuditEvent) error {
	if err := validAE(ae); err != nil {
		return err
	}
	inst, err := db.Institution(ctx, ae.Institution)
	if err != nil {
		return err
	}
	now := db.Now().UnixMilli()
	return db.writeTx(ctx, "index.PutAE", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO aes (title, host, port, institution_pk, issuer, charset, tls, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (title) DO UPDATE SET host = excluded.host, port = excluded.port, institution_pk = excluded.institution_pk,
			issuer = excluded.issuer, charset = excluded.charset, tls = excluded.tls, updated_at = excluded.updated_at`,
			ae.Title, ae.Host, ae.Port, inst.PK, ae.Issuer, ae.Charset, ae.TLS, now, now)
		return err
	}, audit)
}

// validAE checks an AE title as PS3.5 6.2 defines it: 1–16 characters of the default repertoire, no backslash or
// control characters, not only spaces.
func validAE(ae renkei.AE) error {
	t := ae.Title
	if strings.TrimSpace(t) == "" || len(t) > 16 || strings.TrimSpace(t) != t {
		return renkei.Errorf("index.PutAE", renkei.Invalid, "AE title %q must be 1 to 16 characters without leading or trailing spaces", t)
	}
	for _, c := range t {
		if c < 0x20 || c > 0x7E || c == '\\' {
			return renkei.Errorf("index.PutAE", renkei.Invalid, "AE title %q may hold only printable ASCII characters other than a backslash", t)
		}
	}
	if ae.Port < 0 || ae.Port > 65535 {
		return renkei.Errorf("index.PutAE", renkei.Invalid, "port %d is not a TCP port", ae.Port)
	}
	return nil
}

// LookupAE returns the AE with the given title; an unknown title is a renkei.NotFound error.
func (db *DB) LookupAE(ctx context.Context, title string) (renkei.AE, error) {
	var ae renkei.AE
	err := db.queryRowContext(ctx, `SELECT a.title, a.host, a.port, i.id, i.pk, CASE WHEN a.issuer <> '' THEN a.issuer ELSE i.issuer END, a.charset, a.tls
		FROM aes a JOIN institutions i ON i.pk = a.institution_pk WHERE a.title = ?`, strings.TrimSpace(title)).
		Scan(&ae.Title, &ae.Host, &ae.Port, &ae.Institution, &ae.InstitutionPK, &ae.Issuer, &ae.Charset, &ae.TLS)
	if errors.Is(err, sql.ErrNoRows) {
		return ae, renkei.Errorf("index.LookupAE", renkei.NotFound, "AE title %q is not registered", title)
	}
	if err != nil {
		return ae, queryErr(err)
	}
	return ae, nil
}

// ListAEs returns every registered AE, by title.
func (db *DB) ListAEs(ctx context.Context) ([]renkei.AE, error) {
	rows, err := db.queryContext(ctx, `SELECT a.title, a.host, a.port, i.id, i.pk, a.issuer, a.charset, a.tls FROM aes a JOIN institutions i ON i.pk = a.institution_pk ORDER BY a.title`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.AE
	for rows.Next() {
		var ae renkei.AE
		if err := rows.Scan(&ae.Title, &ae.Host, &ae.Port, &ae.Institution, &ae.InstitutionPK, &ae.Issuer, &ae.Charset, &ae.TLS); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, ae)
	}
	return out, queryErr(rows.Err())
}

// DeleteAE removes an AE; an unknown title is a renkei.NotFound error.
func (db *DB) DeleteAE(ctx context.Context, title string, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.DeleteAE", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM aes WHERE title = ?`, title)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorf("index.DeleteAE", renkei.NotFound, "AE title %q is not registered", title)
		}
		return nil
	}, audit)
}
