package sqlstore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"renkei"
	"renkei/sqlstore/pgtest"
)

// eachInternalDB runs f as a subtest on a fresh SQLite index and on a fresh PostgreSQL database (pgtest), for the
// tests inside the package (those outside use eachDB).
func eachInternalDB(t *testing.T, f func(t *testing.T, db *DB)) {
	eachInternalTarget(t, func(t *testing.T, target string) {
		db, err := Open(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		f(t, db)
	})
}

// eachInternalTarget runs f as a subtest with what Open takes for a fresh SQLite index and a fresh PostgreSQL
// database, for tests that open (and reopen) it themselves.
func eachInternalTarget(t *testing.T, f func(t *testing.T, target string)) {
	for _, b := range []struct {
		name   string
		target func(t testing.TB) string
	}{
		{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "index.db") }},
		{"postgres", pgtest.URL},
	} {
		t.Run(b.name, func(t *testing.T) { f(t, b.target(t)) })
	}
}

// putHospitals records hospitals with these IDs (issuer: the ID in capitals) and returns their keys in order.
func putHospitals(t *testing.T, db *DB, ids ...string) []int64 {
	t.Helper()
	var pks []int64
	for _, id := range ids {
		in := &renkei.Institution{ID: id, Name: "施設" + id, Kind: renkei.Hospital, Issuer: strings.ToUpper(id)}
		if err := db.PutInstitution(context.Background(), in, nil); err != nil {
			t.Fatal(err)
		}
		pks = append(pks, in.PK)
	}
	return pks
}

// studyUIDs lists the UIDs of the studies q finds: by the study list's walk over the grants (browseStudies, for a
// browse), or with byRule by the scope's subqueries over the shares themselves, the rule the walk must agree with.
func studyUIDs(t *testing.T, db *DB, q renkei.Query, byRule bool) []string {
	t.Helper()
	db.noBrowse = byRule
	defer func() { db.noBrowse = false }()
	recs, err := db.QueryStudies(context.Background(), &q)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, r := range recs {
		uids = append(uids, r.StudyInstanceUID)
	}
	return uids
}
