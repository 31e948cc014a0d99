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
