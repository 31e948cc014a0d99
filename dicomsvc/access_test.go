package dicomsvc_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"renkei"
	"renkei/dicom"
	"renkei/dimse"
	"renkei/sqlstore"
)

// TestDIMSEAccess: DIMSE traffic acts for the calling AE's institution. A hospital's workstation finds and
// retrieves none of a clinic's studies until the clinic shares them; the clinic cannot C-MOVE its images to the
// hospital's PACS (that would hand over data never shared); and each association's reads are in the audit trail.
func TestDIMSEAccess(t *testing.T) {
	e, files := queryEnv(t) // stored by the clinic's STORESCU
	ctx := context.Background()
	hospital := &renkei.Institution{ID: "hospital", Name: "病院", Kind: renkei.Hospital, Issuer: "HOSP"}
	if err := e.db.PutInstitution(ctx, hospital, nil); err != nil {
		t.Fatal(err)
	}
	e.register(renkei.AE{Title: "HOSPSCU", Host: "127.0.0.1", Institution: hospital.ID, InstitutionPK: hospital.PK})
	e.register(renkei.AE{Title: "HOSPPACS", Host: "127.0.0.1", Port: freePort(t), Institution: hospital.ID, InstitutionPK: hospital.PK})
	study := files[0]

	find := func(calling string) int {
		t.Helper()
		dir := t.TempDir()
		run(t, "findscu", "-S", "-aet", calling, "-aec", "RENKEI", "-X", "-od", dir, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
			"-k", "PatientName", e.host, e.port)
		got, _ := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
		return len(got)
	}
	get := func(calling string) dimse.RetrieveResult {
		t.Helper()
		a, err := dimse.Dial(ctx, e.addr, calling, "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
			{AbstractSyntax: study.SOPClassUID, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}, SCPRole: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(ctx)
		id := &dicom.DataSet{}
		id.SetString(0x00080052, "CS", "STUDY")
		id.SetString(dicom.StudyInstanceUID, "UI", study.StudyInstanceUID)
		res, _ := a.Get(ctx, dimse.StudyRootQueryRetrieveInformationModelGet, id, &getStore{got: map[string]parsed{}})
		return res
	}

	if n := find("FINDSCU"); n == 0 {
		t.Fatal("the clinic's own workstation finds nothing")
	}
	if n := find("HOSPSCU"); n != 0 {
		t.Errorf("the hospital's workstation finds %d of the clinic's studies before any share", n)
	}
	if res := get("HOSPSCU"); res.SubOperations.Completed != 0 {
		t.Errorf("the hospital's C-GET of the clinic's study sent %d instances", res.SubOperations.Completed)
	}

	// The clinic may not move its images to the hospital's PACS.
	a, err := dimse.Dial(ctx, e.addr, "MOVESCU", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	id := &dicom.DataSet{}
	id.SetString(0x00080052, "CS", "STUDY")
	id.SetString(dicom.StudyInstanceUID, "UI", study.StudyInstanceUID)
	res, _ := a.Move(ctx, dimse.StudyRootQueryRetrieveInformationModelMove, "HOSPPACS", id)
	a.Release(ctx)
	if res.Status.Code != dimse.StatusMoveDestinationUnknown {
		t.Errorf("C-MOVE to another institution's AE: %v, want 0xA801", res.Status)
	}

	// Shared with the hospital: its workstation finds and retrieves the patient's studies.
	e2 := renkei.EventFor(renkei.System, renkei.ActionShare, renkei.OutcomeSuccess)
	sh := &renkei.Share{FromInstitution: e.clinic, Patient: renkei.PatientKey{Issuer: study.IssuerOfPatientID, ID: study.PatientID},
		ToInstitution: hospital.PK, Purpose: renkei.PurposeReferral, ExpiresAt: time.Now().Add(time.Hour)}
	if sh.Patient.Issuer == "" {
		sh.Patient.Issuer = "CLINIC_X"
	}
	if err := e.db.AddConsent(ctx, &renkei.Consent{Institution: e.clinic, Patient: sh.Patient, Scope: renkei.ConsentScopeRegion, GivenAt: time.Now(),
		Method: "paper", RecordedBy: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.db.CreateShare(ctx, sh, &e2); err != nil {
		t.Fatal(err)
	}
	if n := find("HOSPSCU"); n == 0 {
		t.Error("after the share the hospital's workstation finds nothing")
	}
	if res := get("HOSPSCU"); res.SubOperations.Completed == 0 {
		t.Errorf("after the share the hospital's C-GET sent nothing: %+v", res)
	}
	events, err := e.db.AuditEvents(ctx, sqlstoreFilter(hospital.PK))
	if err != nil {
		t.Fatal(err)
	}
	reads := 0
	for _, ev := range events {
		if ev.Actor == "HOSPSCU" && ev.ActorKind == renkei.AEPrincipal && ev.Action == renkei.ActionRead && ev.Study == study.StudyInstanceUID {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("the hospital's C-GET left %d read events for the study, want 1", reads)
	}
}

func sqlstoreFilter(institution int64) sqlstore.AuditFilter {
	return sqlstore.AuditFilter{Institution: institution, Limit: 10000}
}
