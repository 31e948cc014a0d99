package sqlstore_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

func TestAERegistry(t *testing.T) { eachDB(t, testAERegistry) }

func testAERegistry(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp := &renkei.Institution{ID: "chuo-hospital", Name: "中央病院", Kind: renkei.Hospital, Issuer: "HOSP_A"}
	if err := db.PutInstitution(ctx, hosp, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.PutAE(ctx, renkei.AE{Title: "NOWHERE", Institution: "no-such-place"}, nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("an AE of an unknown institution: %v, want NotFound", err)
	}
	ct := renkei.AE{Title: "CT1", Host: "10.0.0.5", Port: 104, Institution: "chuo-hospital", InstitutionPK: hosp.PK, Issuer: "HOSP_A", Charset: "CP932"}
	if err := db.PutAE(ctx, ct, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.LookupAE(ctx, "CT1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ct, got); d != "" {
		t.Errorf("LookupAE (-want +got):\n%s", d)
	}
	ct.Port = 11112
	if err := db.PutAE(ctx, ct, nil); err != nil {
		t.Fatal(err)
	}
	pacs := renkei.AE{Title: "PACS", Institution: "chuo-hospital", InstitutionPK: hosp.PK}
	if err := db.PutAE(ctx, pacs, nil); err != nil {
		t.Fatal(err)
	}
	// An AE without an issuer of its own gives its institution's.
	if got, _ := db.LookupAE(ctx, "PACS"); got.Issuer != "HOSP_A" {
		t.Errorf("PACS issuer %q, want the institution's HOSP_A", got.Issuer)
	}
	list, _ := db.ListAEs(ctx)
	if d := cmp.Diff([]renkei.AE{ct, pacs}, list); d != "" {
		t.Errorf("ListAEs after update (-want +got):\n%s", d)
	}
	for _, bad := range []renkei.AE{{Title: ""}, {Title: "SEVENTEEN_CHARS_X"}, {Title: "A\\B"}, {Title: " LEAD"}, {Title: "OK", Port: 70000, Institution: "chuo-hospital"}} {
		if err := db.PutAE(ctx, bad, nil); renkei.ErrorKind(err) != renkei.Invalid {
			t.Errorf("PutAE(%+v): %v, want Invalid", bad, err)
		}
	}
	if err := db.DeleteAE(ctx, "PACS", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LookupAE(ctx, "PACS"); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("after delete: %v, want NotFound", err)
	}
	if err := db.DeleteAE(ctx, "PACS", nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("second delete: %v, want NotFound", err)
	}
}
