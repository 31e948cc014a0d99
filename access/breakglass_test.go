package access_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"renkei"
	"renkei/access"
	"renkei/archive"
	"renkei/sqlstore"
)

// TestBreakGlassNameMatching: an emergency physician types the patient's name as it comes (hiragana, katakana,
// half-width kana, romaji, spaces, a common kanji for a variant one) and finds the records of every institution that
// wrote it in another script, but never a patient with another birth date.
func TestBreakGlassNameMatching(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var insts []int64
	for i, id := range []string{"er-hospital", "clinic-a", "clinic-b", "clinic-c"} {
		in := &renkei.Institution{ID: id, Name: id, Kind: renkei.Clinic, Issuer: fmt.Sprint("I", i)}
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
		insts = append(insts, in.PK)
	}
	// How three clinics recorded the same woman, and a namesake born another day.
	records := []struct {
		inst  int64
		id    string
		name  string
		birth string
	}{
		{insts[1], "A1", "Takahashi^Hanako=髙橋^花子=タカハシ^ハナコ", "19520807"},
		{insts[2], "B7", "TAKAHASHI^HANAKO=高橋^花子=ﾀｶﾊｼ^ﾊﾅｺ", "19520807"},
		{insts[3], "C3", "=高橋^花子=たかはし^はなこ", "19520807"},
		{insts[3], "C9", "Takahashi^Hanako=高橋^花子", "19800101"},
	}
	for i, r := range records {
		one := 1
		in := &renkei.Instance{Institution: r.inst, Patient: renkei.PatientKey{Issuer: "X", ID: r.id}, PatientName: r.name,
			PatientNameKeys: archive.NameKeys(r.name), PatientBirthDate: r.birth, StudyInstanceUID: fmt.Sprint("2.25.1", i),
			SeriesInstanceUID: fmt.Sprint("2.25.2", i), SOPInstanceUID: fmt.Sprint("2.25.3", i), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			InstanceNumber: &one, TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: fmt.Sprintf("%064x", i), Size: 1, ReceivedAt: time.Now()}
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	doctor := &renkei.Principal{Kind: renkei.UserPrincipal, ID: 1, Name: "er@er-hospital", Institution: insts[0], Role: renkei.Physician}
	for _, typed := range []string{"高橋花子", "髙橋 花子", "たかはし はなこ", "タカハシハナコ", "ﾀｶﾊｼ ﾊﾅｺ", "takahashi hanako", "TAKAHASHI^HANAKO", "ｔａｋａｈａｓｈｉ　ｈａｎａｋｏ"} {
		grants, err := access.BreakGlass(ctx, db, doctor, access.BreakGlassRequest{BirthDate: "19520807", Name: typed, Reason: "救急搬送、意識障害"},
			time.Hour, time.Now())
		if err != nil {
			t.Errorf("%q: %v", typed, err)
			continue
		}
		var got []string
		for _, g := range grants {
			got = append(got, g.Patient.ID)
		}
		slices.Sort(got)
		// Each name script appears in some of the records only (C3 has no romaji): what matters is that no other
		// person is found, and that kana in any form finds the records written in kana.
		for _, id := range got {
			if id == "C9" {
				t.Errorf("%q found the namesake born another day", typed)
			}
		}
		if len(got) == 0 {
			t.Errorf("%q found nobody", typed)
		}
	}
	// Kana typed in any form finds all three records (each holds kana), and kanji finds all three too.
	for _, typed := range []string{"たかはし はなこ", "ﾀｶﾊｼﾊﾅｺ", "高橋花子", "髙橋花子"} {
		grants, err := access.BreakGlass(ctx, db, doctor, access.BreakGlassRequest{BirthDate: "19520807", Name: typed, Reason: "救急搬送"},
			time.Hour, time.Now())
		if err != nil || len(grants) != 3 {
			t.Errorf("%q: %d grants (%v), want the three records of 1952-08-07", typed, len(grants), err)
		}
	}
	// One name alone is not enough, on purpose: break-glass opens every match without consent, and a family name with
	// a birth date can be a stranger's too. Nothing is opened, and the answer is NotFound, which the app words as
	// "enter the family and the given name, or the patient ID".
	for _, typed := range []string{"高橋", "たかはし", "Takahashi", "花子"} {
		grants, err := access.BreakGlass(ctx, db, doctor, access.BreakGlassRequest{BirthDate: "19520807", Name: typed, Reason: "救急搬送"},
			time.Hour, time.Now())
		if renkei.ErrorKind(err) != renkei.NotFound || len(grants) != 0 {
			t.Errorf("%q alone: %d grants (%v), want none and NotFound", typed, len(grants), err)
		}
	}
}
