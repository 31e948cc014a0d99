package dimse_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dimse"
)

// TestFindExtendedNegotiation proposes C-FIND SOP Class Extended Negotiation (PS3.4 C.5.1.1) to a Server whose Find
// handler performs combined date-time matching only, and checks the A-ASSOCIATE-AC's answer as the requestor reads
// it, and the options the handler is told were agreed.
func TestFindExtendedNegotiation(t *testing.T) {
	var mu sync.Mutex
	var seen dimse.FindOptions
	find := dimse.FindFunc(func(ctx context.Context, a *dimse.Association, req *dimse.FindRequest, emit func(*dicom.DataSet) error) dimse.Status {
		mu.Lock()
		seen = a.FindOptions(req.SOPClassUID)
		mu.Unlock()
		return dimse.Success()
	})
	withOptions := serve(t, &dimse.Server{Handlers: dimse.Handlers{Find: find, FindOptions: dimse.FindOptions{DateTimeMatching: true}}})
	without := serve(t, &dimse.Server{Handlers: dimse.Handlers{Find: find}})
	all := dimse.FindOptions{RelationalQueries: true, DateTimeMatching: true, FuzzySemanticMatching: true, TimezoneQueryAdjustment: true}
	tests := []struct {
		name     string
		addr     string
		model    string
		proposed []byte
		answer   []byte // the service-class-application-information of the A-ASSOCIATE-AC; nil: no sub-item
		want     dimse.FindOptions
	}{
		{"all four proposed", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, all.Info(), []byte{0, 1, 0, 0}, dimse.FindOptions{DateTimeMatching: true}},
		{"patient root, two bytes", withOptions, dimse.PatientRootQueryRetrieveInformationModelFind, []byte{0, 1}, []byte{0, 1}, dimse.FindOptions{DateTimeMatching: true}},
		{"seven bytes", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, []byte{1, 1, 1, 1, 1, 1, 1}, []byte{0, 1, 0, 0, 0, 0, 0}, dimse.FindOptions{DateTimeMatching: true}},
		{"more bytes than C-FIND defines", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{0, 1, 0, 0, 0, 0, 0}, dimse.FindOptions{DateTimeMatching: true}},
		{"relational queries alone", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, []byte{1}, []byte{0}, dimse.FindOptions{}},
		{"date-time matching not proposed", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, []byte{1, 0, 1}, []byte{0, 0, 0}, dimse.FindOptions{}},
		{"a value other than 1", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, []byte{0, 2}, []byte{0, 0}, dimse.FindOptions{}},
		{"nothing proposed", withOptions, dimse.StudyRootQueryRetrieveInformationModelFind, nil, nil, dimse.FindOptions{}},
		{"a server that performs none", without, dimse.StudyRootQueryRetrieveInformationModelFind, all.Info(), nil, dimse.FindOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := dial(t, tc.addr,
				dimse.PresentationContext{AbstractSyntax: tc.model, TransferSyntaxes: explicitLE(), ExtendedNegotiation: tc.proposed},
				dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE(), ExtendedNegotiation: []byte{1}})
			defer a.Release(context.Background())
			for _, pc := range a.Contexts() {
				want := tc.answer
				if pc.AbstractSyntax == dimse.Verification {
					want = nil // not a C-FIND SOP class: nothing to answer
				}
				if d := cmp.Diff(want, pc.ExtendedNegotiation); d != "" {
					t.Errorf("%s: answer (-want +got):\n%s", pc.AbstractSyntax, d)
				}
			}
			if got := a.FindOptions(tc.model); got != tc.want {
				t.Errorf("requestor reads %+v, want %+v", got, tc.want)
			}
			for _, err := range a.Find(context.Background(), tc.model, studyQuery()) {
				if err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			got := seen
			mu.Unlock()
			if got != tc.want {
				t.Errorf("the Find handler reads %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseFindOptions(t *testing.T) {
	tests := []struct {
		info []byte
		want dimse.FindOptions
	}{
		{nil, dimse.FindOptions{}},
		{[]byte{1}, dimse.FindOptions{RelationalQueries: true}},
		{[]byte{0, 1}, dimse.FindOptions{DateTimeMatching: true}},
		{[]byte{0, 0, 1, 1}, dimse.FindOptions{FuzzySemanticMatching: true, TimezoneQueryAdjustment: true}},
		{[]byte{2, 0xff, 0, 0, 1, 1, 1}, dimse.FindOptions{}},
	}
	for _, tc := range tests {
		got := dimse.ParseFindOptions(tc.info)
		if got != tc.want {
			t.Errorf("% x: %+v, want %+v", tc.info, got, tc.want)
		}
		if tc.want != (dimse.FindOptions{}) {
			if back := dimse.ParseFindOptions(got.Info()); back != got {
				t.Errorf("% x: Info gives back %+v", tc.info, back)
			}
		}
	}
}
