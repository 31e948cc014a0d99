package dicomsvc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// TestFindCombinedDateTime queries, as a workstation that negotiates combined date-time matching (PS3.4 C.5.1.1)
// and as one that does not, the standard's example of PS3.4 C.2.2.2.5.1: Study Date 20060705-20060707 with Study
// Time 1000-1800 is from July 5 at 10:00 to July 7 at 18:00 with it, and 10:00 to 18:00 on each day without.
// dcmtk's findscu cannot propose the extended negotiation, so renkei's own SCU asks.
func TestFindCombinedDateTime(t *testing.T) {
	e := newEnv(t)
	moments := []struct{ name, date, time string }{
		{"before", "20060705", "093000"},
		{"first day", "20060705", "120000"},
		{"middle night", "20060706", "200000"},
		{"last day", "20060707", "170000"},
		{"after", "20060707", "190000"},
	}
	uids := map[string]string{}
	for i, m := range moments {
		path := filepath.Join(t.TempDir(), "ct.dcm")
		uid := fmt.Sprintf("1.2.392.200036.9116.99.%d", i+1)
		if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: uid, StudyDate: m.date, StudyTime: m.time,
			Rows: 4, Cols: 4, Seed: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		e.store(dicomtest.Sample{Name: m.name, Path: path})
		uids[uid] = m.name
	}
	tests := []struct {
		name     string
		model    string
		proposed []byte
		want     []string
	}{
		{"combined, study root", dimse.StudyRootQueryRetrieveInformationModelFind, dimse.FindOptions{DateTimeMatching: true}.Info(),
			[]string{"first day", "last day", "middle night"}},
		{"combined, patient root", dimse.PatientRootQueryRetrieveInformationModelFind, []byte{0, 1},
			[]string{"first day", "last day", "middle night"}},
		{"not negotiated", dimse.StudyRootQueryRetrieveInformationModelFind, nil, []string{"first day", "last day"}},
		{"other options only", dimse.StudyRootQueryRetrieveInformationModelFind, []byte{1, 0, 1, 1}, []string{"first day", "last day"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := dimse.Dial(context.Background(), e.addr, "FINDSCU", "RENKEI", []dimse.PresentationContext{
				{AbstractSyntax: tc.model, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}, ExtendedNegotiation: tc.proposed}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Release(context.Background())
			id := &dicom.DataSet{}
			id.SetString(0x00080052, "CS", "STUDY")
			id.SetString(dicom.StudyDate, "DA", "20060705-20060707")
			id.SetString(dicom.StudyTime, "TM", "1000-1800")
			id.SetString(dicom.StudyInstanceUID, "UI", "")
			var got []string
			for ds, err := range a.Find(context.Background(), tc.model, id) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, uids[ds.String(dicom.StudyInstanceUID)])
			}
			sort.Strings(got)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
