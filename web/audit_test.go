package web_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
)

type ev struct {
	Actor, Action, Outcome, Patient, Study string
}

func summarise(events []renkei.AuditEvent) []ev {
	var out []ev
	for _, e := range events {
		out = append(out, ev{e.Actor, string(e.Action), e.Outcome, e.Patient.ID, e.Study})
	}
	return out
}

// TestAuditEvents: each action leaves exactly the expected events, one per user × study × action (a viewer's
// many requests for the same study are one event), and a failed read by UID is recorded as denied.
func TestAuditEvents(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	doctor := r.as("tanaka@chuo-hospital")
	from := r.lastSeq()

	clinic.post("/api/shares", map[string]any{"patientId": "P1", "studies": []string{r.p1a.studyUID}, "toInstitution": "chuo-hospital", "purpose": "referral"})
	var list []any
	doctor.getJSON("/dicomweb/studies", &list)
	base := "/dicomweb/studies/" + r.p1a.studyUID
	for i := 0; i < 3; i++ { // a viewer: metadata, then frames of every instance, twice over
		doctor.get(base + "/metadata")
		for _, uid := range r.p1a.instanceUIDs {
			doctor.get(base+"/series/"+r.p1a.seriesUID+"/instances/"+uid+"/frames/1", "Accept", "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*")
		}
	}
	doctor.get("/dicomweb/studies/" + r.p2.studyUID + "/metadata") // not shared: 404, recorded as denied
	if doctor.status != 404 {
		t.Errorf("an unshared study: %d", doctor.status)
	}
	want := []ev{
		{"kato@kita-clinic", "share", "success", "P1", ""},
		{"tanaka@chuo-hospital", "query", "success", "P1", r.p1a.studyUID},
		{"tanaka@chuo-hospital", "read", "success", "P1", r.p1a.studyUID},
		{"tanaka@chuo-hospital", "denied", "failure", "", ""},
	}
	got := summarise(r.events(from))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("audit events (-want +got):\n%s", d)
	}
	events := r.events(from)
	if e := events[len(events)-1]; !strings.Contains(e.Detail, r.p2.studyUID) || e.Institution != r.hospital.PK || e.Source == "" {
		t.Errorf("the denied event does not say who asked for what from where: %+v", e)
	}
	if e := events[1]; e.DataInstitution != r.clinic.PK || e.Detail != "shared" || e.Role != renkei.Physician {
		t.Errorf("a read of shared data does not name its owner and role: %+v", e)
	}

	// The clinic's administrator reads, in the trail, who looked at the clinic's data; the hospital's physician may not.
	admin := r.as("admin@kita-clinic")
	var trail []map[string]any
	admin.getJSON("/api/audit?action=read", &trail)
	if len(trail) != 1 || trail[0]["actor"] != "tanaka@chuo-hospital" {
		t.Errorf("the owner's admin sees reads %v", trail)
	}
	if st := doctor.get("/api/audit"); st != 403 {
		t.Errorf("a physician read the audit trail: %d", st)
	}
}

// TestAuditTamper: a row changed, removed or inserted by hand in the database makes verification fail and name the
// event.
func TestAuditTamper(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sql    string
		seq    int64
		phrase string
	}{
		{"changed", `UPDATE audit_events SET actor = 'someone else' WHERE seq = 5`, 5, "changed"},
		{"removed", `DELETE FROM audit_events WHERE seq = 5`, 5, "missing"},
		{"inserted", `UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= 5; UPDATE audit_events SET seq = seq - 999999 WHERE seq >= 1000000;
			INSERT INTO audit_events SELECT 5, at, 'ghost', actor_kind, actor_id, institution_pk, role, action, outcome, purpose, source,
			data_institution, issuer, patient_id, study_uid, detail, prev_hash, hash FROM audit_events WHERE seq = 4`, 5, "changed"},
		{"tail removed", `DELETE FROM audit_events WHERE seq > 3`, 0, "removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegion(t)
			ctx := context.Background()
			keys := map[string]ed25519.PublicKey{r.key.ID: r.key.Private.Public().(ed25519.PublicKey)}
			if err := r.db.CheckpointAudit(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := r.db.VerifyAudit(ctx, keys)
			if err != nil || len(rep.Problems) > 0 || rep.Events < 6 {
				t.Fatalf("before tampering: %+v %v", rep, err)
			}
			if _, err := r.rawDB().Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			rep, err = r.db.VerifyAudit(ctx, keys)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) == 0 {
				t.Fatalf("verification found nothing after the row was %s", tc.name)
			}
			p := rep.Problems[0]
			if (tc.seq != 0 && p.Seq != tc.seq) || !strings.Contains(p.Problem, tc.phrase) {
				t.Errorf("first problem: event %d %q, want event %d and %q (all: %v)", p.Seq, p.Problem, tc.seq, tc.phrase, rep.Problems)
			}
		})
	}
	t.Run("a forged signature", func(t *testing.T) {
		r := newRegion(t)
		ctx := context.Background()
		r.db.CheckpointAudit(ctx)
		_, other, _ := ed25519.GenerateKey(nil)
		rep, err := r.db.VerifyAudit(ctx, map[string]ed25519.PublicKey{r.key.ID: other.Public().(ed25519.PublicKey)})
		if err != nil || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].Problem, "signature") {
			t.Errorf("a checkpoint checked with another key: %+v %v", rep, err)
		}
	})
}

// TestAuditFailClosed: when the audit trail cannot be written, reads are refused without data and writes are not
// stored; a read answered just before is recorded once the trail is back.
func TestAuditFailClosed(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("kato@kita-clinic")
	raw := r.rawDB()
	before := r.lastSeq()
	if _, err := raw.Exec(`CREATE TRIGGER audit_full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	// The events of reads wait in the audit journal for at most 250 ms before they go into the chain, so a read
	// right after the chain became unwritable is still answered: its event is safe in the journal. Once renkei
	// tries to add it to the chain and fails, every read is refused until that succeeds (reading the chain's
	// head makes it try now).
	var first []any
	doctor.getJSON("/dicomweb/studies", &first)
	if len(first) == 0 {
		t.Fatal("the doctor's study list is empty")
	}
	if _, err := r.db.AuditHead(context.Background()); err == nil {
		t.Fatal("the audit chain's head was read though its events could not be appended")
	}
	// (The list itself is answered again: its studies were recorded as read by this doctor a moment ago, and a read
	// already recorded in the dedup window writes nothing.)
	for _, path := range []string{"/dicomweb/studies/" + r.p1a.studyUID + "/metadata", "/dicomweb/studies/" + r.p1a.studyUID} {
		st := doctor.get(path)
		if st != 503 || strings.Contains(string(doctor.body), "Yamada") || !strings.Contains(string(doctor.body), "audit") {
			t.Errorf("GET %s with the audit trail unwritable: %d %s", path, st, doctor.body)
		}
	}
	c := r.withToken(r.clinicWrite)
	body, ctype := r.stowBody("P77", "Test^Patient", 77, 1)
	if st := c.do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st == 200 {
		t.Errorf("STOW-RS with the audit trail unwritable: %d", st)
	}
	if _, err := raw.Exec(`DROP TRIGGER audit_full`); err != nil {
		t.Fatal(err)
	}
	var list []any
	doctor.getJSON(fmt.Sprintf("/dicomweb/studies?PatientID=%s", "P77"), &list)
	if len(list) != 0 {
		t.Errorf("an instance whose audit event failed was stored anyway: %v", list)
	}
	// The refused metadata read was not recorded (nor taken for read): read again now, it is.
	if st := doctor.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 200 {
		t.Fatalf("metadata once the trail is back: %d", st)
	}
	var queries, reads int
	for _, e := range r.events(before) {
		switch {
		case e.Action == renkei.ActionQuery && e.Actor == "kato@kita-clinic":
			queries++
		case e.Action == renkei.ActionRead && e.Study == r.p1a.studyUID:
			reads++
		default:
			t.Errorf("unexpected event %s %s %s %s", e.Actor, e.Action, e.Study, e.Detail)
		}
	}
	if queries != len(first) || reads != 1 {
		t.Errorf("after the trail came back: %d query events for the %d studies of the list answered before, %d reads of the metadata; want %d and 1",
			queries, len(first), reads, len(first))
	}
}

// TestAuditEveryAction: logins (good and bad), logout, consent, break-glass, its review, an identity link and a
// token's revocation each leave their events, naming who did it, for which institution's data and patient.
func TestAuditEveryAction(t *testing.T) {
	r := newRegion(t)
	region := renkei.Institution{ID: "region", Name: "事務局", Kind: renkei.RegionOperator}
	if err := r.db.PutInstitution(t.Context(), &region, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("admin@region", region, renkei.RegionAdmin)
	hospitalWrite, _ := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "pacs", Write: true})
	body, ctype := r.stowBodyBorn("H1", "Yamada^Taro=山田^太郎", "19450312", 500)
	r.withToken(hospitalWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype)
	body, ctype = r.stowBodyBorn("P5", "Yamada^Taro=山田^太郎", "19450312", 501)
	r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype)
	from := r.lastSeq()

	bad := &client{r: r}
	bad.post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": "not it at all"})
	clinic := r.as("kato@kita-clinic")
	clinic.post("/api/consents", map[string]any{"patientId": "P5", "scope": []string{"region"}, "method": "electronic", "signature": "同意します"})
	doctor := r.as("tanaka@chuo-hospital")
	doctor.post("/api/consents", map[string]any{"patientId": "H1", "scope": []string{"region"}, "method": "electronic", "signature": "同意します"})
	doctor.post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "山田太郎", "reason": "救急搬送"})
	admin := r.as("admin@kita-clinic")
	var queue []map[string]any
	admin.getJSON("/api/break-glass/reviews", &queue)
	if len(queue) == 1 {
		admin.post(fmt.Sprintf("/api/break-glass/%d/review", int64(queue[0]["id"].(float64))), map[string]string{"note": "正当"})
	}
	r.as("admin@region").post("/api/patients/links", map[string]any{"a": map[string]string{"institution": "kita-clinic", "issuer": "KITA", "patientId": "P5"},
		"b": map[string]string{"institution": "chuo-hospital", "issuer": "CHUO", "patientId": "H1"}})
	clinic.post("/api/logout", map[string]bool{"everywhere": true})

	type got struct{ Actor, Action, Outcome, Patient, Detail string }
	var events []got
	for _, e := range r.events(from) {
		words := strings.Fields(e.Detail) // the first three words say what happened; the rest names times and keys
		events = append(events, got{e.Actor, string(e.Action), e.Outcome, e.Patient.ID, strings.Join(words[:min(3, len(words))], " ")})
	}
	want := []got{
		{"kato@kita-clinic", "login", "failure", "", "wrong password"},
		{"kato@kita-clinic", "login", "success", "", "password accepted"},
		{"kato@kita-clinic", "login", "success", "", "second factor totp"},
		{"kato@kita-clinic", "admin", "success", "P5", "recorded consent (electronic)"},
		{"tanaka@chuo-hospital", "login", "success", "", "password accepted"},
		{"tanaka@chuo-hospital", "login", "success", "", "second factor totp"},
		{"tanaka@chuo-hospital", "admin", "success", "H1", "recorded consent (electronic)"},
		{"tanaka@chuo-hospital", "break-glass", "success", "P5", "emergency access without"},
		{"admin@kita-clinic", "login", "success", "", "password accepted"},
		{"admin@kita-clinic", "login", "success", "", "second factor totp"},
		{"admin@region", "login", "success", "", "password accepted"},
		{"admin@region", "login", "success", "", "second factor totp"},
		{"admin@kita-clinic", "admin", "success", "P5", "reviewed break-glass 1:"},
		{"admin@region", "admin", "success", "P5", "linked local patients"},
		{"kato@kita-clinic", "logout", "success", "", "every session"},
	}
	// The order of the two admins' logins and the review depends on the test's own order above: compare as sets of
	// lines, in the order they happened for each actor.
	byActor := func(list []got) map[string][]got {
		m := map[string][]got{}
		for _, g := range list {
			m[g.Actor] = append(m[g.Actor], g)
		}
		return m
	}
	if d := cmp.Diff(byActor(want), byActor(events)); d != "" {
		t.Errorf("audit events by actor (-want +got):\n%s", d)
	}
}
