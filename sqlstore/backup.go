package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
)

// Snapshot writes a consistent copy of the SQLite index at path into the new file to, while other processes (a
// running renkei serve) keep reading and writing it. VACUUM INTO runs in one read transaction: in WAL mode it sees
// one snapshot of the database, as of its start, and never blocks the writer (nor is blocked by it). The copy is a
// complete database of its own (no -wal beside it), compacted, with the same schema. It fails if to exists.
func Snapshot(ctx context.Context, path, to string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("snapshot of the index: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("snapshot of the index: %w", err)
	}
	defer db.Close()
	// Not query_only: SQLite counts writing the new file as a write and refuses it on such a connection. VACUUM INTO
	// only reads the source database.
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, to); err != nil {
		return fmt.Errorf("snapshot of the index %s: %w", path, err)
	}
	return nil
}

// IndexCounts is what an index holds, in words people use: for a backup's manifest and a restore's report.
type IndexCounts struct {
	Institutions int64 `json:"institutions"`
	Users        int64 `json:"users"`
	Patients     int64 `json:"patients"`
	Studies      int64 `json:"studies"`
	Series       int64 `json:"series"`
	Instances    int64 `json:"instances"`
	Referrals    int64 `json:"referrals"`
	AuditEvents  int64 `json:"audit_events"`
}

// Counts counts the rows of the main tables (trashed instances included: they are still in the index).
func (db *DB) Counts(ctx context.Context) (IndexCounts, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return IndexCounts{}, err
	}
	var c IndexCounts
	err := db.read.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM institutions), (SELECT count(*) FROM users), (SELECT count(*) FROM patients),
		(SELECT count(*) FROM studies), (SELECT count(*) FROM series), (SELECT count(*) FROM instances),
		(SELECT count(*) FROM referrals), (SELECT count(*) FROM audit_events)`).Scan(
		&c.Institutions, &c.Users, &c.Patients, &c.Studies, &c.Series, &c.Instances, &c.Referrals, &c.AuditEvents)
	if err != nil {
		return c, fmt.Errorf("count the index: %w", err)
	}
	return c, nil
}
