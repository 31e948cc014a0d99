package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"renkei"
)

// SaveGatewayReport keeps a gateway's latest heartbeat (one row per gateway token).
func (db *DB) SaveGatewayReport(ctx context.Context, g renkei.GatewayReport) error {
	return db.writeTx(ctx, "index.SaveGatewayReport", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO gateways (token_pk, institution_pk, name, version, ae, address, instances, studies, bytes,
			oldest_at, last_sent_at, failures, last_error, disk_free, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (token_pk) DO UPDATE SET institution_pk = excluded.institution_pk, name = excluded.name, version = excluded.version,
			ae = excluded.ae, address = excluded.address, instances = excluded.instances, studies = excluded.studies, bytes = excluded.bytes,
			oldest_at = excluded.oldest_at, last_sent_at = COALESCE(excluded.last_sent_at, gateways.last_sent_at), failures = excluded.failures,
			last_error = excluded.last_error, disk_free = excluded.disk_free, seen_at = excluded.seen_at`,
			g.Token, g.Institution, g.Name, g.Version, g.AE, g.Address, g.Instances, g.Studies, g.Bytes, msPtr(g.Oldest), msPtr(g.LastSent),
			g.Failures, g.LastError, g.DiskFree, g.SeenAt.UnixMilli())
		return err
	})
}

// GatewayReports returns the gateways of an institution (0: of every institution), most recently heard first.
func (db *DB) GatewayReports(ctx context.Context, institution int64) ([]renkei.GatewayReport, error) {
	rows, err := db.queryContext(ctx, `SELECT g.token_pk, t.name, g.institution_pk, g.name, g.version, g.ae, g.address, g.instances, g.studies,
		g.bytes, g.oldest_at, g.last_sent_at, g.failures, g.last_error, g.disk_free, g.seen_at, t.revoked_at IS NOT NULL
		FROM gateways g JOIN api_tokens t ON t.pk = g.token_pk WHERE ? = 0 OR g.institution_pk = ? ORDER BY g.seen_at DESC`, institution, institution)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.GatewayReport
	for rows.Next() {
		var g renkei.GatewayReport
		var oldest, sent sql.NullInt64
		var seen int64
		if err := rows.Scan(&g.Token, &g.TokenName, &g.Institution, &g.Name, &g.Version, &g.AE, &g.Address, &g.Instances, &g.Studies,
			&g.Bytes, &oldest, &sent, &g.Failures, &g.LastError, &g.DiskFree, &seen, &g.Revoked); err != nil {
			return nil, queryErr(err)
		}
		g.Oldest, g.LastSent, g.SeenAt = msTime(oldest), msTime(sent), time.UnixMilli(seen)
		out = append(out, g)
	}
	return out, queryErr(rows.Err())
}

func msTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64)
	return &t
}

// CreateFetchRequest records a request to a gateway; it sets f.ID.
func (db *DB) CreateFetchRequest(ctx context.Context, f *renkei.FetchRequest, audit *renkei.AuditEvent) error {
	f.CreatedAt, f.UpdatedAt, f.Status = db.Now(), db.Now(), "pending"
	return db.writeTx(ctx, "index.CreateFetchRequest", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO fetch_requests (institution_pk, patient_issuer, patient_id, since, reason, requested_by,
			requested_by_institution, created_at, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING pk`,
			f.Institution, f.Patient.Issuer, f.Patient.ID, f.Since, f.Reason, f.RequestedBy, f.RequestedByInstitution,
			f.CreatedAt.UnixMilli(), f.UpdatedAt.UnixMilli()).Scan(&f.ID)
	}, audit)
}

// FetchRequests lists requests, newest first.
func (db *DB) FetchRequests(ctx context.Context, f renkei.FetchRequestFilter) ([]renkei.FetchRequest, error) {
	q := `SELECT pk, institution_pk, patient_issuer, patient_id, since, reason, requested_by, requested_by_institution, created_at, status,
		detail, studies, instances, updated_at FROM fetch_requests WHERE 1 = 1`
	var args []any
	if f.Institution != 0 {
		q += ` AND institution_pk = ?`
		args = append(args, f.Institution)
	}
	if f.Involving != 0 {
		q += ` AND (institution_pk = ? OR requested_by_institution = ?)`
		args = append(args, f.Involving, f.Involving)
	}
	if f.Open {
		q += ` AND status IN ('pending', 'working')`
	}
	if f.ID != 0 {
		q += ` AND pk = ?`
		args = append(args, f.ID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += ` ORDER BY created_at DESC, pk DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.queryContext(ctx, q, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.FetchRequest
	for rows.Next() {
		var r renkei.FetchRequest
		var created, updated int64
		if err := rows.Scan(&r.ID, &r.Institution, &r.Patient.Issuer, &r.Patient.ID, &r.Since, &r.Reason, &r.RequestedBy, &r.RequestedByInstitution,
			&created, &r.Status, &r.Detail, &r.Studies, &r.Instances, &updated); err != nil {
			return nil, queryErr(err)
		}
		r.CreatedAt, r.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
		out = append(out, r)
	}
	return out, queryErr(rows.Err())
}

// UpdateFetchRequest records what the institution's gateway reports. A request that is done or failed stays so.
func (db *DB) UpdateFetchRequest(ctx context.Context, r renkei.FetchRequest, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.UpdateFetchRequest", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE fetch_requests SET status = ?, detail = ?, studies = ?, instances = ?, updated_at = ?
			WHERE pk = ? AND institution_pk = ? AND status IN ('pending', 'working')`, r.Status, r.Detail, r.Studies, r.Instances,
			db.Now().UnixMilli(), r.ID, r.Institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.UpdateFetchRequest", renkei.Conflict, "取り寄せ依頼 No. %d は、この施設では受付中ではありません。",
				"fetch request %d is not open at this institution", r.ID)
		}
		return nil
	}, audit)
}
