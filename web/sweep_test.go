package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDocumentsSurviveTheSweep: the hourly sweep removes blobs no DICOM instance refers to (what a crash between a
// blob and its index row leaves); a discharge summary, a consent form and a printed referral letter are blobs that
// are not instances, and must still be there after it.
func TestDocumentsSurviveTheSweep(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	if st := clinic.do("POST", "/api/patients/documents?issuer=KITA&patientId=P1&kind=discharge-summary&title=退院時サマリー",
		strings.NewReader("退院時サマリー: 経過良好"), "Content-Type", "text/plain"); st != 201 {
		t.Fatalf("document: %d %s", st, clinic.body)
	}
	var doc struct{ ID int64 }
	if err := json.Unmarshal(clinic.body, &doc); err != nil {
		t.Fatal(err)
	}
	// Everything written so far is older than the sweep's cutoff.
	n, err := r.front.DICOMweb.Archive.SweepOrphans(context.Background(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the sweep removed %d blobs", n)
	if st := clinic.get(fmt.Sprintf("/api/documents/%d", doc.ID)); st != 200 || !strings.Contains(string(clinic.body), "経過良好") {
		t.Errorf("the discharge summary after the sweep: %d %q", st, clinic.body)
	}
	var studies []map[string]any
	clinic.getJSON("/dicomweb/studies/"+r.p1a.studyUID+"/metadata", &studies)
	if len(studies) == 0 {
		t.Error("the study's instances went with the sweep")
	}
}
