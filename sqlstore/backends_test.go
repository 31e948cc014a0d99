package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"renkei/sqlstore"
	"renkei/sqlstore/pgtest"
)

// The tests of this package run on both databases: the embedded SQLite file and a private PostgreSQL cluster
// (pgtest), each test on a fresh database.

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is one database the tests run on; target makes a fresh, empty index and returns what Open takes.
type backend struct {
	name   string
	target func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "index.db") }},
	{"postgres", pgtest.URL},
}

// eachDB runs f as a subtest on each backend, with a fresh index.
func eachDB(t *testing.T, f func(t *testing.T, db *sqlstore.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, openTarget(t, b.target(t))) })
	}
}

// eachBackend runs f as a subtest on each backend, with a fresh index's target, for tests that open it themselves
// (reopening, or several handles as several nodes).
func eachBackend(t *testing.T, f func(t *testing.T, target string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.target(t)) })
	}
}

func openTarget(t testing.TB, target string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
