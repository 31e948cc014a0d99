package web_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"renkei"
)

// TestConsent: without the patient's consent nothing is shared; a consent limited to some institutions shares
// only with them; withdrawing it ends at once the shares no remaining consent covers.
func TestConsent(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	doctor := r.as("tanaka@chuo-hospital")
	share := func(patient string) int {
		return clinic.post("/api/shares", map[string]any{"patientId": patient, "toInstitution": "chuo-hospital", "purpose": "referral"})
	}
	if st := share("P2"); st != 403 || !strings.Contains(string(clinic.body), "consent") {
		t.Errorf("sharing a patient without consent: %d %s", st, clinic.body)
	}
	// P2 agrees electronically, to the hospital only.
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"sakura-care"}, "method": "electronic",
		"signature": "佐藤次郎は…に同意します"}); st != 404 {
		t.Errorf("a consent naming an unknown institution: %d", st)
	}
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"chuo-hospital"}, "method": "paper"}); st != 400 {
		t.Errorf("a paper consent without the scanned form: %d", st)
	}
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"chuo-hospital"}, "method": "electronic",
		"signature": "佐藤次郎は中央病院への診療情報の提供に同意します"}); st != 201 {
		t.Fatalf("consent: %d %s", st, clinic.body)
	}
	var consent struct{ ID int64 }
	json.Unmarshal(clinic.body, &consent)
	if st := share("P2"); st != 201 {
		t.Fatalf("share after consent: %d %s", st, clinic.body)
	}
	if got := visible(t, doctor, r.p2); !got[0] {
		t.Error("the hospital does not see the consented, shared patient")
	}
	if st := clinic.get(fmt.Sprintf("/api/consents/%d/document", consent.ID)); st != 200 || !strings.Contains(string(clinic.body), "同意します") {
		t.Errorf("the signed statement: %d %s", st, clinic.body)
	}
	if st := doctor.get(fmt.Sprintf("/api/consents/%d/document", consent.ID)); st != 404 {
		t.Errorf("another institution read the consent form: %d", st)
	}
	if st := clinic.post(fmt.Sprintf("/api/consents/%d/withdraw", consent.ID), map[string]any{}); st != 200 {
		t.Fatalf("withdraw: %d %s", st, clinic.body)
	}
	if got := visible(t, doctor, r.p2); got[0] {
		t.Error("the hospital still sees the patient after the consent was withdrawn")
	}
	if st := share("P2"); st != 403 {
		t.Errorf("sharing after withdrawal: %d", st)
	}

	// P2 consents to the whole region, and separately to the hospital; shares go to the hospital and to a care
	// home. Withdrawing the region-wide consent ends the care home's share; the hospital's, still consented, stays.
	care := renkei.Institution{ID: "sakura-care", Name: "さくら苑", Kind: renkei.CareHome}
	if err := r.db.PutInstitution(t.Context(), &care, nil); err != nil {
		t.Fatal(err)
	}
	var wide, narrow struct{ ID int64 }
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"region"}, "method": "electronic", "signature": "地域全体に同意します"}); st != 201 {
		t.Fatalf("region consent: %d %s", st, clinic.body)
	}
	json.Unmarshal(clinic.body, &wide)
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"chuo-hospital"}, "method": "electronic", "signature": "中央病院に同意します"}); st != 201 {
		t.Fatalf("hospital consent: %d %s", st, clinic.body)
	}
	json.Unmarshal(clinic.body, &narrow)
	if st := share("P2"); st != 201 {
		t.Fatalf("share to the hospital: %d %s", st, clinic.body)
	}
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P2", "toInstitution": "sakura-care", "purpose": "referral"}); st != 201 {
		t.Fatalf("share to the care home: %d %s", st, clinic.body)
	}
	if st := clinic.post(fmt.Sprintf("/api/consents/%d/withdraw", wide.ID), map[string]any{}); st != 200 {
		t.Fatalf("withdraw the region consent: %d %s", st, clinic.body)
	}
	active, err := r.db.Shares(t.Context(), renkei.ShareFilter{FromInstitution: r.clinic.PK, ActiveAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var to []int64
	for _, sh := range active {
		to = append(to, sh.ToInstitution)
	}
	if len(to) != 1 || to[0] != r.hospital.PK {
		t.Errorf("after withdrawing the region-wide consent, shares in force go to %v, want the hospital (%d) only", to, r.hospital.PK)
	}
	if got := visible(t, doctor, r.p2); !got[0] {
		t.Error("the hospital, still consented, no longer sees the patient")
	}
}

// TestBreakGlass: an emergency physician opens a patient's data without a share or consent after giving a reason;
// it lasts the break-glass period, every read is marked as break-glass in the trail, and the owner's administrator
// finds it in the review queue.
func TestBreakGlass(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("tanaka@chuo-hospital")
	nurse := r.addUser("sato@chuo-hospital", r.hospital, renkei.Nurse)
	_ = nurse
	req := map[string]string{"birthDate": "19450312", "name": "やまだ たろう", "reason": "救急搬送、意識障害"}
	if st := r.as("sato@chuo-hospital").post("/api/break-glass", req); st != 403 {
		t.Errorf("a nurse used break-glass: %d", st)
	}
	if st := doctor.post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "山田太郎"}); st != 400 {
		t.Errorf("break-glass without a reason: %d", st)
	}
	// The clinic's P1 has no birth date in the fixtures; store one that has it.
	body, ctype := r.stowBodyBorn("P9", "Yamada^Taro=山田^太郎=ヤマダ^タロウ", "19450312", 90)
	c := r.withToken(r.clinicWrite)
	if st := c.do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d %s", st, c.body)
	}
	if st := doctor.post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "佐藤次郎", "reason": "救急搬送"}); st != 404 {
		t.Errorf("break-glass for nobody: %d", st)
	}
	if st := doctor.post("/api/break-glass", req); st != 201 {
		t.Fatalf("break-glass: %d %s", st, doctor.body)
	}
	var grants []map[string]any
	json.Unmarshal(doctor.body, &grants)
	if len(grants) != 1 || grants[0]["purpose"] != "break-glass" || grants[0]["patientId"] != "P9" {
		t.Fatalf("grants %v", grants)
	}
	from := r.lastSeq()
	var list []map[string]json.RawMessage
	doctor.getJSON("/dicomweb/studies?PatientBirthDate=19450312", &list)
	if len(list) != 1 {
		t.Fatalf("the physician sees %d studies after break-glass", len(list))
	}
	for _, e := range r.events(from) {
		if e.Action == renkei.ActionQuery && e.Purpose != "break-glass" {
			t.Errorf("a read by break-glass is not marked as such: %+v", e)
		}
	}
	// Only him: his colleague sees nothing.
	var other []any
	r.as("suzuki@chuo-hospital").getJSON("/dicomweb/studies?PatientBirthDate=19450312", &other)
	if len(other) != 0 {
		t.Errorf("a colleague sees the break-glass patient: %v", other)
	}
	// The clinic's admin reviews it.
	admin := r.as("admin@kita-clinic")
	var queue []map[string]any
	admin.getJSON("/api/break-glass/reviews", &queue)
	if len(queue) != 1 || queue[0]["reason"] != "救急搬送、意識障害" || queue[0]["sharedBy"] != "tanaka@chuo-hospital" {
		t.Fatalf("review queue %v", queue)
	}
	id := int64(queue[0]["id"].(float64))
	if st := admin.post(fmt.Sprintf("/api/break-glass/%d/review", id), map[string]string{"note": "救急外来からの正当な閲覧を確認"}); st != 204 {
		t.Errorf("review: %d %s", st, admin.body)
	}
	admin.getJSON("/api/break-glass/reviews", &queue)
	if len(queue) != 0 {
		t.Errorf("the reviewed access is still in the queue: %v", queue)
	}
	// Four hours later it is over.
	r.clock.Advance(4*time.Hour + time.Minute)
	doctor = r.as("tanaka@chuo-hospital")
	doctor.getJSON("/dicomweb/studies?PatientBirthDate=19450312", &list)
	if len(list) != 0 {
		t.Errorf("break-glass access outlived its period: %d studies", len(list))
	}
}

// TestPatientIdentity: the region's administrator links a clinic's and a hospital's IDs of one person (proposed
// after folding kana and width); a query by the linked patient returns both institutions' studies only to those
// allowed to see each; unlinking undoes it.
func TestPatientIdentity(t *testing.T) {
	r := newRegion(t)
	identityRegion(t, r, []regionPatient{
		{"C100", "Yamada^Taro=山田^太郎=ヤマダ^タロウ", "19450312", 100},
		{"H200", "YAMADA^TARO=山田^太郎=ﾔﾏﾀﾞ^ﾀﾛｳ", "19450312", 200}, // half-width kana from an older system
		{"H300", "Yamada^Taro=山田^太郎", "19800101", 300},          // same name, another person
	})
	admin := r.as("admin@region")
	var proposals []struct{ A, B map[string]any }
	admin.getJSON("/api/patients/link-proposals", &proposals)
	if len(proposals) != 1 || proposals[0].A["patientId"] != "C100" || proposals[0].B["patientId"] != "H200" {
		t.Fatalf("proposals %v, want C100 with H200 only", proposals)
	}
	if st := r.as("tanaka@chuo-hospital").get("/api/patients/link-proposals"); st != 403 {
		t.Errorf("a physician read the region's link proposals: %d", st)
	}
	link := map[string]any{"a": map[string]string{"institution": "kita-clinic", "issuer": "KITA", "patientId": "C100"},
		"b": map[string]string{"institution": "chuo-hospital", "issuer": "CHUO", "patientId": "H200"}}
	if st := admin.post("/api/patients/links", link); st != 403 || !strings.Contains(string(admin.body), "consent") {
		t.Errorf("linking without consent: %d %s", st, admin.body)
	}
	for _, c := range []struct{ user, id string }{{"kato@kita-clinic", "C100"}, {"tanaka@chuo-hospital", "H200"}} {
		if st := r.as(c.user).post("/api/consents", map[string]any{"patientId": c.id, "scope": []string{"region"}, "method": "electronic",
			"signature": "同意します"}); st != 201 {
			t.Fatalf("consent %s: %d %s", c.id, st, r.as(c.user).body)
		}
	}
	if st := admin.post("/api/patients/links", link); st != 200 {
		t.Fatalf("link: %d %s", st, admin.body)
	}
	var linked struct{ Regional int64 }
	json.Unmarshal(admin.body, &linked)
	// QIDO-RS (and C-FIND, through the same access layer) by the regional patient, IHE PIX style.
	qidoRegional := func(c *client) []string { return qidoPatientIDs(c, linked.Regional) }
	studiesOf := func(c *client, id string) []string {
		var list []struct {
			Institution string
			PatientID   string
		}
		c.getJSON("/api/patients/studies?patientId="+id, &list)
		var out []string
		for _, s := range list {
			out = append(out, s.Institution+"/"+s.PatientID)
		}
		slices.Sort(out)
		return out
	}
	doctor := r.as("tanaka@chuo-hospital")
	if got := studiesOf(doctor, "H200"); !slices.Equal(got, []string{"chuo-hospital/H200"}) {
		t.Errorf("before a share the hospital sees %v of the linked patient", got)
	}
	if got := qidoRegional(doctor); !slices.Equal(got, []string{"H200"}) {
		t.Errorf("before a share, QIDO-RS by the regional patient gives the hospital %v", got)
	}
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/shares", map[string]any{"patientId": "C100", "toInstitution": "chuo-hospital", "purpose": "referral"}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	if got := studiesOf(doctor, "H200"); !slices.Equal(got, []string{"chuo-hospital/H200", "kita-clinic/C100"}) {
		t.Errorf("after the clinic shared, the hospital sees %v", got)
	}
	if got := qidoRegional(doctor); !slices.Equal(got, []string{"C100", "H200"}) {
		t.Errorf("after the clinic shared, QIDO-RS by the regional patient gives the hospital %v", got)
	}
	if got := qidoRegional(clinic); !slices.Equal(got, []string{"C100"}) {
		t.Errorf("QIDO-RS by the regional patient gives the clinic %v (the hospital shared nothing)", got)
	}
	if got := studiesOf(clinic, "C100"); !slices.Equal(got, []string{"kita-clinic/C100"}) {
		t.Errorf("the clinic sees %v of the linked patient (the hospital shared nothing)", got)
	}
	if st := admin.post("/api/patients/unlink", map[string]string{"institution": "chuo-hospital", "issuer": "CHUO", "patientId": "H200"}); st != 204 {
		t.Fatalf("unlink: %d %s", st, admin.body)
	}
	if got := studiesOf(doctor, "H200"); !slices.Equal(got, []string{"chuo-hospital/H200"}) {
		t.Errorf("after unlinking the hospital sees %v", got)
	}
	var actions []string
	for _, e := range r.events(0) {
		if e.Actor == "admin@region" && e.Action == renkei.ActionAdmin {
			actions = append(actions, e.Detail)
		}
	}
	if len(actions) != 2 || !strings.HasPrefix(actions[0], "linked") || !strings.HasPrefix(actions[1], "unlinked") {
		t.Errorf("link and unlink are not in the audit trail: %q", actions)
	}
}

// TestConsentWithdrawalEndsIdentityLink: the clinic's patient, linked with the hospital's as one regional patient,
// withdraws the consent the link needed; from then on nothing of the clinic's flows to the hospital's side through
// the link (the patient's own account at the hospital, QIDO-RS by the regional patient), and the region's
// administrator still reads the link's history in the audit trail.
func TestConsentWithdrawalEndsIdentityLink(t *testing.T) {
	r := newRegion(t)
	identityRegion(t, r, []regionPatient{
		{"C100", "Yamada^Taro=山田^太郎", "19450312", 100},
		{"H200", "Yamada^Taro=山田^太郎", "19450312", 200},
	})
	clinic, doctor, admin := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital"), r.as("admin@region")
	var consent struct{ ID int64 }
	for _, c := range []struct {
		user *client
		id   string
	}{{clinic, "C100"}, {doctor, "H200"}} {
		if st := c.user.post("/api/consents", map[string]any{"patientId": c.id, "scope": []string{"region"}, "method": "electronic",
			"signature": "同意します"}); st != 201 {
			t.Fatalf("consent %s: %d %s", c.id, st, c.user.body)
		}
	}
	if err := json.Unmarshal(clinic.body, &consent); err != nil || consent.ID == 0 {
		t.Fatalf("consent: %s", clinic.body)
	}
	if st := admin.post("/api/patients/links", map[string]any{"a": map[string]string{"institution": "kita-clinic", "issuer": "KITA", "patientId": "C100"},
		"b": map[string]string{"institution": "chuo-hospital", "issuer": "CHUO", "patientId": "H200"}}); st != 200 {
		t.Fatalf("link: %d %s", st, admin.body)
	}
	var linked struct{ Regional int64 }
	json.Unmarshal(admin.body, &linked)
	h200, err := r.db.LocalPatient(t.Context(), r.hospital.PK, renkei.PatientKey{Issuer: "CHUO", ID: "H200"})
	if err != nil {
		t.Fatal(err)
	}
	r.addPatientUser("yamada.taro", r.hospital, h200.PK) // his own account, from the hospital
	if st := clinic.post("/api/shares", map[string]any{"patientId": "C100", "toInstitution": "chuo-hospital", "purpose": "referral"}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	// What each caller sees of the person: the patient's own studies (JSON API and QIDO-RS), and the hospital
	// doctor's QIDO-RS by the regional patient.
	own := func() []string {
		p := r.as("yamada.taro")
		var mine []struct{ Institution, PatientID string }
		p.getJSON("/api/my/studies", &mine)
		var out []string
		for _, s := range mine {
			out = append(out, s.Institution+"/"+s.PatientID)
		}
		var qido []map[string]struct{ Value []any }
		p.getJSON("/dicomweb/studies", &qido)
		for _, s := range qido {
			if v := s["00100020"].Value; len(v) > 0 {
				out = append(out, "qido/"+fmt.Sprint(v[0]))
			}
		}
		slices.Sort(out)
		return out
	}
	regional := func() []string { return qidoPatientIDs(doctor, linked.Regional) }
	if got, want := own(), []string{"chuo-hospital/H200", "kita-clinic/C100", "qido/C100", "qido/H200"}; !slices.Equal(got, want) {
		t.Fatalf("before the withdrawal the patient sees %v, want %v", got, want)
	}
	if got := regional(); !slices.Equal(got, []string{"C100", "H200"}) {
		t.Fatalf("before the withdrawal QIDO-RS by the regional patient gives the hospital %v", got)
	}

	if st := clinic.post(fmt.Sprintf("/api/consents/%d/withdraw", consent.ID), map[string]any{}); st != 200 {
		t.Fatalf("withdraw: %d %s", st, clinic.body)
	}
	if got, want := own(), []string{"chuo-hospital/H200", "qido/H200"}; !slices.Equal(got, want) {
		t.Errorf("after the withdrawal the patient's account at the hospital sees %v, want %v", got, want)
	}
	if got := regional(); !slices.Equal(got, []string{"H200"}) {
		t.Errorf("after the withdrawal QIDO-RS by the regional patient gives the hospital %v", got)
	}
	var studies []struct{ Institution, PatientID string }
	doctor.getJSON("/api/patients/studies?patientId=H200", &studies)
	if len(studies) != 1 || studies[0].PatientID != "H200" {
		t.Errorf("after the withdrawal the hospital's list of the linked patient: %+v", studies)
	}

	// The link's history: who made it, and that the withdrawal ended it.
	var trail []struct{ Actor, Action, Detail string }
	admin.getJSON("/api/audit?action=admin", &trail)
	var history []string
	for _, e := range slices.Backward(trail) {
		if strings.Contains(e.Detail, fmt.Sprintf("regional patient %d", linked.Regional)) {
			history = append(history, e.Actor+": "+e.Detail)
		}
	}
	if len(history) != 2 || !strings.HasPrefix(history[0], "admin@region: linked local patients") ||
		!strings.HasPrefix(history[1], "kato@kita-clinic: recorded the withdrawal of consent") ||
		!strings.Contains(history[1], "identity link ended") || !strings.Contains(history[1], "linked by admin@region") {
		t.Errorf("the link's history as the region's administrator reads it: %q", history)
	}
}

// TestPatientAccount: a clinic invites its patient with a code on paper; the patient creates an account, logs in
// with a password and an authenticator app, sees their own studies and who looked at them, and nothing else.
func TestPatientAccount(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/invitations", map[string]string{"patientId": "P1"}); st != 201 {
		t.Fatalf("invite: %d %s", st, clinic.body)
	}
	var inv struct{ Code string }
	json.Unmarshal(clinic.body, &inv)
	anon := &client{r: r}
	if st := anon.post("/api/invitations/accept", map[string]string{"code": "wrong-code", "login": "yamada.taro", "name": "山田太郎",
		"password": "sakura no hana 1945"}); st != 401 {
		t.Errorf("a wrong invitation code: %d", st)
	}
	if st := anon.post("/api/invitations/accept", map[string]string{"code": inv.Code, "login": "yamada.taro", "name": "山田太郎",
		"password": "sakura no hana 1945"}); st != 201 {
		t.Fatalf("accept: %d %s", st, anon.body)
	}
	if st := anon.post("/api/invitations/accept", map[string]string{"code": inv.Code, "login": "someone.else", "name": "x",
		"password": "sakura no hana 1945"}); st != 401 {
		t.Errorf("an invitation used twice: %d", st)
	}
	// First login: the password, then the authenticator app.
	p := &client{r: r}
	p.post("/api/login", map[string]string{"login": "yamada.taro", "password": "sakura no hana 1945"})
	next, csrf := p.loginState()
	p.csrf = csrf
	if next != "enrol-second-factor" {
		t.Fatalf("a patient's first login: next %q", next)
	}
	p.post("/api/login/totp/start", nil)
	var enrol struct{ Secret string }
	json.Unmarshal(p.body, &enrol)
	code, _ := totp.GenerateCode(enrol.Secret, r.clock.Now())
	if st := p.post("/api/login/totp/confirm", map[string]string{"secret": enrol.Secret, "code": code}); st != 200 {
		t.Fatalf("enrol: %d %s", st, p.body)
	}
	var conf struct{ Login struct{ CSRFToken string } }
	json.Unmarshal(p.body, &conf)
	p.csrf = conf.Login.CSRFToken

	r.as("tanaka@chuo-hospital") // nothing shared: the hospital looks at nothing of his
	doctor := r.as("kato@kita-clinic")
	doctor.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata")

	var mine []struct{ StudyInstanceUID string }
	p.getJSON("/api/my/studies", &mine)
	var uids []string
	for _, s := range mine {
		uids = append(uids, s.StudyInstanceUID)
	}
	slices.Sort(uids)
	want := []string{r.p1a.studyUID, r.p1b.studyUID}
	slices.Sort(want)
	if !slices.Equal(uids, want) {
		t.Errorf("the patient sees %v, want his two studies", uids)
	}
	// DICOMweb answers the patient with his own data only.
	var all []any
	p.getJSON("/dicomweb/studies", &all)
	if len(all) != 2 {
		t.Errorf("the patient lists %d studies by QIDO-RS, want 2", len(all))
	}
	if st := p.get("/dicomweb/studies/" + r.p2.studyUID + "/metadata"); st != 404 {
		t.Errorf("the patient read another patient's study: %d", st)
	}
	// Something the system did with his data (as `renkei admin` or an import run by the operator records it).
	sys := renkei.EventFor(renkei.System, renkei.ActionStore, renkei.OutcomeSuccess)
	sys.Time, sys.DataInstitution, sys.Patient, sys.Detail = r.clock.Now(), r.clinic.PK, renkei.PatientKey{Issuer: r.clinic.Issuer, ID: "P1"}, "imported by the operator"
	if err := r.db.Audit(t.Context(), &sys); err != nil {
		t.Fatal(err)
	}
	var log []map[string]any
	p.getJSON("/api/my/access-log", &log)
	found := false
	for _, e := range log {
		if e["institution"] == "北町クリニック" && e["role"] == "physician" && e["action"] == "read" {
			found = true
		}
		if strings.Contains(fmt.Sprint(e), "kato") {
			t.Errorf("the access log names a member of staff: %v", e)
		}
	}
	if !found {
		t.Errorf("the access log does not show the clinic physician's read: %v", log)
	}
	if st := p.post("/dicomweb/studies", nil); st != 403 && st != 415 && st != 400 {
		t.Errorf("a patient may store: %d", st)
	}
	if st := p.get("/api/audit"); st != 403 {
		t.Errorf("a patient read the audit trail: %d", st)
	}

	// In the browser his list names the institution of each study and offers no link to the staff's patient page
	// (which would refuse him with an error) and no "own institution" badge.
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, artifacts(t))
	step("patient-01-my-studies", r.loginSteps(testUser{login: "yamada.taro", password: "sakura no hana 1945", totpKey: enrol.Secret}),
		chromedp.WaitVisible("#studies tbody tr"))
	list, _ := liveText(ctx, "#studies tbody")
	if !strings.Contains(list, "北町クリニック") || strings.Contains(list, "自施設") {
		t.Errorf("the patient's list reads %q", list)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#studies a[href^="#/patient/"]').length`)); n != 0 {
		t.Errorf("the patient's list links %d times to the staff's patient page", n)
	}
	// His access log names who looked, on every row: an institution, or renkei itself for what the system did.
	system := 0
	for _, e := range log {
		if e["actorKind"] == "system" && e["institution"] == "" {
			system++
		}
	}
	step("patient-02-my-log", chromedp.Navigate(r.srv.URL+"/#/my/log"), chromedp.WaitVisible("#access-log tbody tr"))
	blank, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#access-log tbody tr')].filter((tr) => tr.cells[1].textContent.trim() === '').length`))
	text, _ := liveText(ctx, "#access-log tbody")
	if blank != 0 || !strings.Contains(text, "北町クリニック") || (system > 0) != strings.Contains(text, "renkei（システムの処理）") {
		t.Errorf("the patient's access log (%d events by the system) has %d rows naming nobody:\n%s", system, blank, text)
	}
}

// TestStudyListSort: the study list sorts by date either way and by patient, and refuses an unknown order.
func TestStudyListSort(t *testing.T) {
	r := newRegion(t)
	c := r.as("kato@kita-clinic")
	order := func(sort string) []string {
		var list []struct{ PatientID, StudyInstanceUID string }
		c.getJSON("/api/studies?sort="+sort, &list)
		var out []string
		for _, s := range list {
			out = append(out, s.PatientID+"/"+s.StudyInstanceUID)
		}
		return out
	}
	byDate, byDateAsc, byPatient := order("date"), order("date-asc"), order("patient-id")
	if len(byDate) != 3 || !slices.Equal(byDate, reversed(byDateAsc)) {
		t.Errorf("newest first %v is not the reverse of oldest first %v", byDate, byDateAsc)
	}
	if !slices.IsSortedFunc(byPatient, func(a, b string) int { return strings.Compare(a[:2], b[:2]) }) {
		t.Errorf("by patient: %v", byPatient)
	}
	if st := c.get("/api/studies?sort=secret"); st != 400 {
		t.Errorf("an unknown sort: %d", st)
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// regionPatient is a patient stored for the identity tests: a clinic's when its ID starts with C, else the hospital's.
type regionPatient struct {
	id, name, birth string
	seed            int64
}

// identityRegion adds the region's operator with a region administrator (admin@region) and stores a study of each
// patient by its institution.
func identityRegion(t *testing.T, r *region, people []regionPatient) {
	t.Helper()
	region := renkei.Institution{ID: "region", Name: "事務局", Kind: renkei.RegionOperator}
	if err := r.db.PutInstitution(t.Context(), &region, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("admin@region", region, renkei.RegionAdmin)
	hospitalWrite, _ := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "pacs", Write: true})
	for _, p := range people {
		token := hospitalWrite
		if p.id[0] == 'C' {
			token = r.clinicWrite
		}
		body, ctype := r.stowBodyBorn(p.id, p.name, p.birth, p.seed)
		if st := r.withToken(token).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
			t.Fatalf("store %s: %d", p.id, st)
		}
	}
}

// TestPatientUnmerge: a region administrator links two people wrongly, which merges their regional patients; the
// merge is undone, each person back under their own regional number, and both steps are in the audit trail.
func TestPatientUnmerge(t *testing.T) {
	r := newRegion(t)
	people := []regionPatient{
		{"C100", "Yamada^Taro=山田^太郎", "19450312", 100},
		{"H200", "Yamada^Taro=山田^太郎", "19450312", 200},
		{"C101", "Suzuki^Hanako=鈴木^花子", "19520101", 101},
		{"H201", "Suzuki^Hanako=鈴木^花子", "19520101", 201},
	}
	identityRegion(t, r, people)
	for _, tc := range people {
		user := map[bool]string{true: "kato@kita-clinic", false: "tanaka@chuo-hospital"}[tc.id[0] == 'C']
		if st := r.as(user).post("/api/consents", map[string]any{"patientId": tc.id, "scope": []string{"region"}, "method": "electronic",
			"signature": "同意します"}); st != 201 {
			t.Fatalf("consent %s: %d", tc.id, st)
		}
	}
	admin := r.as("admin@region")
	link := func(a, b string) int64 {
		t.Helper()
		ref := func(id string) map[string]string {
			if id[0] == 'C' {
				return map[string]string{"institution": "kita-clinic", "issuer": "KITA", "patientId": id}
			}
			return map[string]string{"institution": "chuo-hospital", "issuer": "CHUO", "patientId": id}
		}
		if st := admin.post("/api/patients/links", map[string]any{"a": ref(a), "b": ref(b)}); st != 200 {
			t.Fatalf("link %s %s: %d %s", a, b, st, admin.body)
		}
		var out struct{ Regional int64 }
		json.Unmarshal(admin.body, &out)
		return out.Regional
	}
	members := func(regional int64) []string {
		t.Helper()
		list, err := r.db.RegionalPatient(t.Context(), regional)
		if renkei.ErrorKind(err) == renkei.NotFound {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, lp := range list {
			ids = append(ids, lp.Key.ID)
		}
		slices.Sort(ids)
		return ids
	}
	yamada, suzuki := link("C100", "H200"), link("C101", "H201")
	if merged := link("C100", "H201"); merged != yamada { // the wrong link: Suzuki's regional patient merges into Yamada's
		t.Fatalf("the merge answered regional %d, want %d", merged, yamada)
	}
	if got := members(yamada); !slices.Equal(got, []string{"C100", "C101", "H200", "H201"}) {
		t.Fatalf("after the wrong link, regional %d holds %v", yamada, got)
	}
	if got := members(suzuki); got != nil {
		t.Fatalf("after the merge, regional %d still holds %v", suzuki, got)
	}
	if st := r.as("tanaka@chuo-hospital").post("/api/patients/unmerge", map[string]int64{"regional": yamada, "from": suzuki}); st != 403 {
		t.Errorf("a doctor unmerged: %d", st)
	}
	if st := admin.post("/api/patients/unmerge", map[string]int64{"regional": yamada, "from": suzuki}); st != 200 {
		t.Fatalf("unmerge: %d %s", st, admin.body)
	}
	if got := members(yamada); !slices.Equal(got, []string{"C100", "H200"}) {
		t.Errorf("after the unmerge, regional %d holds %v", yamada, got)
	}
	if got := members(suzuki); !slices.Equal(got, []string{"C101", "H201"}) {
		t.Errorf("after the unmerge, regional %d holds %v", suzuki, got)
	}
	if st := admin.post("/api/patients/unmerge", map[string]int64{"regional": yamada, "from": suzuki}); st != 404 {
		t.Errorf("unmerging again: %d, want 404", st)
	}
	var details []string
	for _, e := range r.events(0) {
		if e.Actor == "admin@region" && e.Action == renkei.ActionAdmin {
			details = append(details, e.Detail)
		}
	}
	if len(details) != 4 || !strings.Contains(details[2], fmt.Sprintf("was regional %d", suzuki)) || !strings.HasPrefix(details[3], "unmerged") {
		t.Errorf("the merge and the unmerge in the audit trail: %q", details)
	}
}

// qidoPatientIDs searches studies by a regional patient with QIDO-RS as c (IHE PIX style: the regional issuer) and
// returns the local PatientIDs of the studies found, sorted.
func qidoPatientIDs(c *client, regional int64) []string {
	var list []map[string]struct{ Value []any }
	c.getJSON(fmt.Sprintf("/dicomweb/studies?PatientID=%d&IssuerOfPatientID=%s", regional, renkei.RegionalIssuer), &list)
	var out []string
	for _, s := range list {
		if v := s["00100020"].Value; len(v) > 0 {
			out = append(out, fmt.Sprint(v[0]))
		}
	}
	slices.Sort(out)
	return out
}

// TestPatientSeesOnlyHimself sweeps every GET route as a patient's own account, parameters naming another patient of
// the same institution (his share, his study): none may answer with anything of that patient (his ID, name or study),
// which a share of him, the institution's lists and the study searches would otherwise carry.
func TestPatientSeesOnlyHimself(t *testing.T) {
	r := newRegion(t)
	if err := r.db.CreateShare(t.Context(), &renkei.Share{FromInstitution: r.clinic.PK, Patient: renkei.PatientKey{Issuer: r.clinic.Issuer, ID: "P2"},
		ToInstitution: r.hospital.PK, Purpose: renkei.PurposeReferral, ExpiresAt: r.clock.Now().Add(time.Hour), WithoutConsent: true}, nil); err != nil {
		t.Fatal(err)
	}
	lp, err := r.db.LocalPatient(t.Context(), r.clinic.PK, renkei.PatientKey{Issuer: r.clinic.Issuer, ID: "P1"})
	if err != nil {
		t.Fatal(err)
	}
	r.addPatientUser("yamada.taro", r.clinic, lp.PK)
	p := r.as("yamada.taro")
	swept := 0
	for _, pattern := range r.front.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		if method != "GET" || path == "/api/events" { // the event stream never ends
			continue
		}
		// Parameters name the other patient's things: share 1 is his, and his study's UID.
		path = strings.ReplaceAll(path, "{$}", "")
		path = pathParam.ReplaceAllStringFunc(path, func(p string) string {
			if p == "{id}" {
				return "1"
			}
			return r.p2.studyUID
		})
		swept++
		if st := p.get(path); st == 200 {
			body := string(p.body)
			for _, other := range []string{`"P2"`, "佐藤", "Sato", r.p2.studyUID} {
				if strings.Contains(body, other) {
					t.Errorf("GET %s shows the patient's account another patient's data (%s): %.300s", path, other, body)
				}
			}
		}
	}
	if swept < 20 {
		t.Fatalf("only %d routes swept", swept)
	}
}
