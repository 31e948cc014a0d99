package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"renkei"
)

// The regional directory: profiles, current capacity, capacity history.

func bumpDirectory(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE directory_version SET version = version + 1 WHERE id = 1`)
	return err
}

// DirectoryVersion changes whenever a profile or a capacity report is written.
func (db *DB) DirectoryVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.queryRowContext(ctx, `SELECT version FROM directory_version WHERE id = 1`).Scan(&v)
	return v, queryErr(err)
}

// PutProfile replaces an institution's profile.
func (db *DB) PutProfile(ctx context.Context, p *renkei.Profile, audit *renkei.AuditEvent) error {
	p.UpdatedAt = db.Now()
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return db.writeTx(ctx, "index.PutProfile", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO profiles (institution_pk, body, updated_at, updated_by) VALUES (?, ?, ?, ?)
			ON CONFLICT (institution_pk) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			p.Institution, string(body), p.UpdatedAt.UnixMilli(), p.UpdatedBy); err != nil {
			return err
		}
		return bumpDirectory(ctx, tx)
	}, audit)
}

// PutCapacity records capacity items of an institution: each replaces the current item of its key and is added to
// the history, in one transaction.
func (db *DB) PutCapacity(ctx context.Context, institution int64, items []renkei.CapacityItem, audit *renkei.AuditEvent) error {
	now := db.Now()
	return db.writeTx(ctx, "index.PutCapacity", func(tx *sql.Tx) error {
		for i := range items {
			it := &items[i]
			if it.UpdatedAt.IsZero() {
				it.UpdatedAt = now
			}
			body, err := json.Marshal(it)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO capacity (institution_pk, key, body, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (institution_pk, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
				institution, it.Key, string(body), it.UpdatedAt.UnixMilli(), it.UpdatedBy); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO capacity_history (institution_pk, key, body, at, by_name) VALUES (?, ?, ?, ?, ?)`,
				institution, it.Key, string(body), it.UpdatedAt.UnixMilli(), it.UpdatedBy); err != nil {
				return err
			}
		}
		return bumpDirectory(ctx, tx)
	}, audit)
}

// Directory returns every institution with its profile (empty if none) and current capacity.
func (db *DB) Directory(ctx context.Context) ([]renkei.DirectoryEntry, error) {
	insts, err := db.Institutions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]renkei.DirectoryEntry, len(insts))
	byPK := map[int64]int{}
	for i, in := range insts {
		out[i] = renkei.DirectoryEntry{Institution: in, Profile: renkei.Profile{Institution: in.PK}}
		byPK[in.PK] = i
	}
	rows, err := db.queryContext(ctx, `SELECT institution_pk, body FROM profiles`)
	if err != nil {
		return nil, queryErr(err)
	}
	for rows.Next() {
		var pk int64
		var body string
		if err := rows.Scan(&pk, &body); err != nil {
			rows.Close()
			return nil, queryErr(err)
		}
		if i, ok := byPK[pk]; ok {
			if err := json.Unmarshal([]byte(body), &out[i].Profile); err != nil {
				rows.Close()
				return nil, queryErr(err)
			}
			out[i].Profile.Institution = pk
		}
	}
	rows.Close()
	rows, err = db.queryContext(ctx, `SELECT institution_pk, body FROM capacity ORDER BY institution_pk, key`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pk int64
		var body string
		if err := rows.Scan(&pk, &body); err != nil {
			return nil, queryErr(err)
		}
		var it renkei.CapacityItem
		if err := json.Unmarshal([]byte(body), &it); err != nil {
			return nil, queryErr(err)
		}
		if i, ok := byPK[pk]; ok {
			out[i].Capacity = append(out[i].Capacity, it)
		}
	}
	return out, queryErr(rows.Err())
}

// CapacityHistory returns an institution's capacity reports since a time, oldest first.
func (db *DB) CapacityHistory(ctx context.Context, institution int64, since time.Time) ([]renkei.CapacityItem, error) {
	rows, err := db.queryContext(ctx, `SELECT body FROM capacity_history WHERE institution_pk = ? AND at >= ? ORDER BY at, pk`,
		institution, since.UnixMilli())
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.CapacityItem
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, queryErr(err)
		}
		var it renkei.CapacityItem
		if err := json.Unmarshal([]byte(body), &it); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, it)
	}
	return out, queryErr(rows.Err())
}
