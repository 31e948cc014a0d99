package sqlstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

func TestQueryInstancesNoAttrs(t *testing.T) { eachDB(t, testQueryInstancesNoAttrs) }

// A retrieve asks for instances without their DICOM JSON headers: it gets the same records with Attrs left empty.
func testQueryInstancesNoAttrs(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	for i, sop := range []string{"1.1.1.1", "1.1.1.2"} {
		in := inst("P1", "1.1", "1.1.1", sop, "CT", fmt.Sprintf("k%d", i))
		in.Attrs = []byte(`{"00080018":{"vr":"UI","Value":["` + sop + `"]}}`)
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	query := func(noAttrs bool) []renkei.InstanceRecord {
		recs, err := db.QueryInstances(ctx, &renkei.Query{Level: renkei.InstanceLevel, NoAttrs: noAttrs})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	full, slim := query(false), query(true)
	if len(full) != 2 {
		t.Fatalf("%d instances, want 2", len(full))
	}
	for i := range full {
		if len(full[i].Attrs) == 0 || len(full[i].Series.Attrs) == 0 || len(full[i].Series.Study.Attrs) == 0 {
			t.Errorf("instance %d: a header is missing without NoAttrs", i)
		}
		full[i].Attrs, full[i].Series.Attrs, full[i].Series.Study.Attrs = nil, nil, nil
	}
	if diff := cmp.Diff(full, slim); diff != "" {
		t.Errorf("NoAttrs records (-want +got):\n%s", diff)
	}
}
