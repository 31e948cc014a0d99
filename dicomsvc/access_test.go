package dicomsvc_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"renkei"
	"renkei/dicom"
	"renkei/dicomsvc"
	"renkei/dimse"
)

// TestDIMSEAccess: DIMSE traffic acts for the calling AE's institution. A hospital's workstation finds and
// retrieves none of a clinic's studies until the clinic shares them, and none again after the share is revoked or
// expires; the clinic cannot C-MOVE its images to the
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
		id := studyKeys(study.StudyInstanceUID)
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
	id := studyKeys(study.StudyInstanceUID)
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

	// Revoked: the hospital's workstation finds and retrieves nothing again.
	rv := renkei.EventFor(renkei.System, renkei.ActionRevoke, renkei.OutcomeSuccess)
	if err := e.db.RevokeShare(ctx, sh.ID, e.clinic, &rv); err != nil {
		t.Fatal(err)
	}
	if n := find("HOSPSCU"); n != 0 {
		t.Errorf("after the revocation the hospital's workstation finds %d studies", n)
	}
	if res := get("HOSPSCU"); res.SubOperations.Completed != 0 {
		t.Errorf("after the revocation the hospital's C-GET sent %d instances", res.SubOperations.Completed)
	}
	// Shared again for a moment: once it has expired, nothing again.
	short := &renkei.Share{FromInstitution: e.clinic, Patient: sh.Patient, ToInstitution: hospital.PK, Purpose: renkei.PurposeReferral,
		ExpiresAt: time.Now().Add(1500 * time.Millisecond)}
	if err := e.db.CreateShare(ctx, short, &e2); err != nil {
		t.Fatal(err)
	}
	if n := find("HOSPSCU"); n == 0 {
		t.Error("during the short share the hospital's workstation finds nothing")
	}
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	if n := find("HOSPSCU"); n != 0 {
		t.Errorf("after the share expired the hospital's workstation finds %d studies", n)
	}
	if res := get("HOSPSCU"); res.SubOperations.Completed != 0 {
		t.Errorf("after the share expired the hospital's C-GET sent %d instances", res.SubOperations.Completed)
	}
}

func sqlstoreFilter(institution int64) renkei.AuditFilter {
	return renkei.AuditFilter{Institution: institution, Limit: 10000}
}

// TestDIMSESweep: every DIMSE service the archive offers, asked for by an AE title nobody registered, gets
// A-ASSOCIATE-RJ before any data moves (the DIMSE side of the HTTP route sweep).
func TestDIMSESweep(t *testing.T) {
	e := newEnv(t)
	services := map[string]string{
		"Verification":            dimse.Verification,
		"CT Image Storage":        "1.2.840.10008.5.1.4.1.1.2",
		"a private storage class": "1.3.6.1.4.1.99999.1",
		"Study Root C-FIND":       dimse.StudyRootQueryRetrieveInformationModelFind,
		"Study Root C-MOVE":       dimse.StudyRootQueryRetrieveInformationModelMove,
		"Study Root C-GET":        dimse.StudyRootQueryRetrieveInformationModelGet,
		"Patient Root C-FIND":     dimse.PatientRootQueryRetrieveInformationModelFind,
		"Patient Root C-MOVE":     dimse.PatientRootQueryRetrieveInformationModelMove,
		"Patient Root C-GET":      dimse.PatientRootQueryRetrieveInformationModelGet,
		"Storage Commitment Push": dimse.StorageCommitmentPushModel,
	}
	for name, uid := range services {
		for _, calling := range []string{"INTRUDER", "STORESCU "} {
			a, err := dimse.Dial(context.Background(), e.addr, calling, "RENKEI", []dimse.PresentationContext{
				{AbstractSyntax: uid, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
			var rj *dimse.RejectError
			switch {
			case calling == "INTRUDER" && !errors.As(err, &rj):
				t.Errorf("%s from an unregistered AE: %v, want A-ASSOCIATE-RJ", name, err)
			case calling != "INTRUDER" && err != nil:
				t.Errorf("%s from a registered AE: %v", name, err)
			}
			if a != nil {
				a.Release(context.Background())
			}
		}
	}
}

// TestMoveAcceptAnyOtherInstitution: with AcceptAny (the demo setting) an unregistered caller acts for
// AnyInstitution, so it may C-MOVE to that institution's AEs but not to another institution's PACS, which would be
// handed data never shared with it.
func TestMoveAcceptAnyOtherInstitution(t *testing.T) {
	files := samples(t)
	e := newEnv(t, func(s *dicomsvc.Service) { s.AcceptAny = true })
	study := files[0]
	e.store(study)
	ctx := context.Background()
	hospital := &renkei.Institution{ID: "hospital", Name: "病院", Kind: renkei.Hospital, Issuer: "HOSP"}
	if err := e.db.PutInstitution(ctx, hospital, nil); err != nil {
		t.Fatal(err)
	}
	e.register(renkei.AE{Title: "HOSPPACS", Host: "127.0.0.1", Port: freePort(t), Institution: hospital.ID, InstitutionPK: hospital.PK})
	// The clinic's own PACS, listening.
	got := &getStore{got: map[string]parsed{}}
	e.storePeer(t, renkei.AE{Title: "CLINICPACS"}, got)

	move := func(dest string) dimse.RetrieveResult {
		t.Helper()
		a, err := dimse.Dial(ctx, e.addr, "STRANGER", "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(ctx)
		id := studyKeys(study.StudyInstanceUID)
		res, _ := a.Move(ctx, dimse.StudyRootQueryRetrieveInformationModelMove, dest, id)
		return res
	}
	if res := move("HOSPPACS"); res.Status.Code != dimse.StatusMoveDestinationUnknown {
		t.Errorf("an unregistered caller's C-MOVE to another institution's AE: %v, %+v, want 0xA801", res.Status, res.SubOperations)
	}
	if res := move("CLINICPACS"); !res.Status.IsSuccess() || res.SubOperations.Completed != 1 {
		t.Errorf("an unregistered caller's C-MOVE to its institution's AE: %v, %+v", res.Status, res.SubOperations)
	}
}
