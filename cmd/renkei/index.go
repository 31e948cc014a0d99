package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"renkei/sqlstore"
)

// indexUsage explains --db, for serve and admin.
const indexUsage = "the index: empty for the SQLite file index.db in --data, or postgres://USER@HOST:PORT/DB?sslmode=verify-full for PostgreSQL " +
	"(password from PGPASSWORD or ~/.pgpass, never on the command line); several renkei serve nodes may share one PostgreSQL"

// openIndex opens the index that --db names: PostgreSQL for a postgres:// URL, else the SQLite file in the data folder.
func openIndex(ctx context.Context, db, data string) (*sqlstore.DB, error) {
	if db == "" {
		return sqlstore.Open(ctx, filepath.Join(data, "index.db"))
	}
	if !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
		return nil, fmt.Errorf("--db %q: want a postgres:// URL, or nothing for the SQLite index in --data", redactURL(db))
	}
	return sqlstore.Open(ctx, db)
}

// redactURL hides a password in a URL given on the command line, for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unreadable URL)"
	}
	return u.Redacted()
}
