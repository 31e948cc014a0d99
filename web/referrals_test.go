package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei"
	"renkei/fhir"
	"renkei/internal/dicomtest"
)

type referralOut struct {
	ID            int64  `json:"id"`
	Kind          string `json:"kind"`
	Status        string `json:"status"`
	Direction     string `json:"direction"`
	Version       int    `json:"version"`
	Appointment   string `json:"appointment"`
	DeclineReason string `json:"declineReason"`
	PatientName   string `json:"patientName"`
	Letter        struct {
		Purpose, Diagnosis, Allergies string
	} `json:"letter"`
	Reply *struct {
		Course, FollowUp string
	} `json:"reply"`
	Events []struct {
		Status, By, Institution string
	} `json:"events"`
}

func decodeReferral(t *testing.T, c *client) referralOut {
	t.Helper()
	var out referralOut
	if err := json.Unmarshal(c.body, &out); err != nil {
		t.Fatalf("referral answer %s: %v", c.body, err)
	}
	return out
}

// TestReferralFlow follows a referral from a clinic to a hospital and back, through the JSON API: the clinic's
// doctor records two allergies, writes a referral with a CT attached and sends it; the hospital sees it only once
// sent, opens it, accepts it with a date, replies, and refers the patient back; the clinic sees every step, and a
// third institution sees nothing at any step.
func TestReferralFlow(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	third := renkei.Institution{ID: "minami-clinic", Name: "南クリニック", Kind: renkei.Clinic, Issuer: "MINAMI"}
	if err := r.db.PutInstitution(ctx, &third, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("ito@minami-clinic", third, renkei.Physician)
	clinic, hospital, other := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital"), r.as("ito@minami-clinic")

	// The clinic's live-update stream, to see that the hospital's steps reach it.
	heard := listen(t, r, r.clinicWrite)

	rec := map[string]any{
		"allergies": []map[string]any{
			{"category": "drug", "substance": "ペニシリン系抗菌薬", "reaction": "蕁麻疹", "severity": "moderate",
				"codes": []map[string]string{{"system": fhir.SystemJFAGYMedication, "code": "1", "display": "ペニシリン"}}},
			{"category": "food", "substance": "卵", "reaction": "アナフィラキシー", "severity": "severe"},
		},
		"medications": []map[string]any{{"drug": "アムロジピン錠5mg", "dose": "1錠", "route": "内服", "frequency": "1日1回朝食後"}},
	}
	recordURL := "/api/patients/record?institution=kita-clinic&issuer=KITA&patientId=P1"
	if st := clinic.post(recordURL, rec); st != 201 {
		t.Fatalf("record: %d %s", st, clinic.body)
	}
	// A bad fact is refused with words (in Japanese, the doctor's language), and nothing of the request is stored.
	if st := clinic.post(recordURL, map[string]any{"allergies": []map[string]any{{"substance": "ラテックス"}, {"reaction": "発疹"}}}); st != 400 ||
		!strings.Contains(string(clinic.body), "アレルギー 2 件目") {
		t.Errorf("an allergy without a substance: %d %s", st, clinic.body)
	}

	letter := map[string]string{"purpose": "精査加療のお願い", "diagnosis": "右肺結節", "chiefComplaint": "咳嗽",
		"allergies": "ペニシリン系抗菌薬(蕁麻疹)、卵(アナフィラキシー)", "course": "CTで右上葉に結節を認めました。"}
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"toDepartment": "呼吸器内科", "studies": []string{r.p1a.studyUID}, "letter": letter}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	ref := decodeReferral(t, clinic)
	if ref.Status != "draft" || ref.Direction != "out" || !strings.Contains(ref.PatientName, "山田") {
		t.Fatalf("new referral: %+v", ref)
	}
	path := fmt.Sprintf("/api/referrals/%d", ref.ID)

	// Nobody else sees a draft; the hospital cannot see the patient's CT or record yet.
	nobody := func(step string, who ...*client) {
		t.Helper()
		for _, c := range who {
			if st := c.get(path); st != 404 {
				t.Errorf("%s: another institution reads the referral: %d", step, st)
			}
			var board []referralOut
			c.getJSON("/api/referrals", &board)
			if len(board) != 0 {
				t.Errorf("%s: another institution's board lists %d referrals", step, len(board))
			}
			if st := c.get(recordURL); st != 404 {
				t.Errorf("%s: another institution reads the record: %d", step, st)
			}
			if st := c.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 404 {
				t.Errorf("%s: another institution reads the CT: %d", step, st)
			}
		}
	}
	nobody("draft", hospital, other)

	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if ref = decodeReferral(t, clinic); ref.Status != "sent" || ref.Version != 1 {
		t.Fatalf("sent: %+v", ref)
	}
	nobody("sent", other)
	// The hospital's board shows it; its CT and the record are readable, the patient's other study is not.
	var board []referralOut
	hospital.getJSON("/api/referrals?direction=in", &board)
	if len(board) != 1 || board[0].ID != ref.ID || board[0].Direction != "in" || board[0].Letter.Diagnosis != "右肺結節" {
		t.Fatalf("hospital board: %+v", board)
	}
	if st := hospital.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 200 {
		t.Errorf("the hospital cannot read the attached CT: %d", st)
	}
	if st := hospital.get("/dicomweb/studies/" + r.p1b.studyUID + "/metadata"); st != 404 {
		t.Errorf("the hospital reads a study that was not attached: %d", st)
	}
	var record struct {
		Allergies []struct {
			Substance, Severity, InstitutionName, Author string
		}
		Medications []struct{ Drug string }
	}
	hospital.getJSON(recordURL, &record)
	if len(record.Allergies) != 2 || len(record.Medications) != 1 || record.Allergies[0].InstitutionName != "北町クリニック" ||
		record.Allergies[0].Author != "kato@kita-clinic" {
		t.Errorf("the hospital's view of the record: %+v", record)
	}

	// The letter prints as an A4 PDF with its fonts embedded, readable by the receiver and nobody else.
	if st := hospital.get(path + "/letter.pdf"); st != 200 || !strings.HasPrefix(string(hospital.body), "%PDF-") {
		t.Fatalf("letter.pdf: %d", st)
	}
	pdf := hospital.body
	text := pdfTool(t, pdf, "pdftotext", "-layout")
	for _, want := range []string{"山田", "太郎", "右肺結節", "ペニシリン系抗菌薬", "卵", "診療情報提供書", "中央病院", "北町クリニック"} {
		if !strings.Contains(text, want) {
			t.Errorf("the printed letter lacks %q:\n%s", want, text)
		}
	}
	if info := pdfTool(t, pdf, "pdfinfo"); !strings.Contains(info, "595.28 x 841.89 pts (A4)") {
		t.Errorf("the letter is not A4:\n%s", info)
	}
	fonts := pdfTool(t, pdf, "pdffonts")
	lines := strings.Split(strings.TrimSpace(fonts), "\n")
	for _, l := range lines[min(2, len(lines)):] {
		if f := strings.Fields(l); len(f) < 6 || f[len(f)-5] != "yes" {
			t.Errorf("a font is not embedded: %q", l)
		}
	}
	if len(lines) < 3 || !strings.Contains(strings.ToLower(fonts), "ipaex") {
		t.Errorf("the letter's Japanese fonts:\n%s", fonts)
	}
	if st := other.get(path + "/letter.pdf"); st != 404 {
		t.Errorf("another institution prints the letter: %d", st)
	}

	// A sent letter never changes: the draft cannot be edited, a correction is a second version.
	b, _ := json.Marshal(map[string]any{"toInstitution": "chuo-hospital", "letter": map[string]string{"purpose": "changed"}})
	if st := clinic.do("PUT", path, strings.NewReader(string(b)), "Content-Type", "application/json"); st != 409 {
		t.Errorf("editing a sent referral as a draft: %d", st)
	}
	if _, err := r.rawDB().Exec(`UPDATE referral_letters SET body = '{}' WHERE version = 1`); err == nil {
		t.Errorf("a sent letter was changed in the database")
	}
	corrected := map[string]string{"purpose": "精査加療のお願い", "diagnosis": "右肺上葉結節", "allergies": letter["allergies"]}
	if st := clinic.post(path+"/versions", corrected); st != 201 {
		t.Fatalf("correct: %d %s", st, clinic.body)
	}
	var versions []struct {
		Version int
		Letter  struct{ Diagnosis string }
	}
	hospital.getJSON(path+"/versions", &versions)
	if len(versions) != 2 || versions[0].Letter.Diagnosis != "右肺結節" || versions[1].Letter.Diagnosis != "右肺上葉結節" {
		t.Errorf("versions: %+v", versions)
	}

	// The clinic may not take the hospital's steps, nor may the hospital skip one.
	if st := clinic.post(path+"/accept", map[string]string{"appointment": "2026-12-01"}); st != 403 {
		t.Errorf("the sender accepting its own referral: %d", st)
	}
	if st := hospital.post(path+"/accept", map[string]string{"appointment": "2026-12-01"}); st != 409 {
		t.Errorf("accepting before it was opened: %d %s", st, hospital.body)
	}
	if st := hospital.post(path+"/receive", nil); st != 200 {
		t.Fatalf("receive: %d %s", st, hospital.body)
	}
	// Two people at the hospital accept at once: one wins, the other is told it already happened.
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i, c := range []*client{hospital, r.as("suzuki@chuo-hospital")} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(map[string]string{"appointment": "2026-12-0" + fmt.Sprint(i+1)})
			req, _ := http.NewRequest("POST", r.srv.URL+path+"/accept", strings.NewReader(string(b)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-CSRF-Token", c.csrf)
			req.AddCookie(&http.Cookie{Name: "renkei_session", Value: c.cookie})
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				statuses[i] = resp.StatusCode
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if !(statuses[0] == 200 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 200) {
		t.Errorf("two accepts at once answered %v, want one 200 and one 409", statuses)
	}
	if st := hospital.post(path+"/complete", map[string]any{"reply": map[string]string{"course": "右上葉部分切除術を施行しました。", "followUp": "外来で経過観察"}}); st != 200 {
		t.Fatalf("complete: %d %s", st, hospital.body)
	}
	nobody("completed", other)

	// The clinic sees every step, with who and when.
	clinic.getJSON(path, &ref)
	var steps []string
	for _, e := range ref.Events {
		steps = append(steps, e.Status)
	}
	if got := strings.Join(steps, " "); got != "draft sent sent received accepted completed" || ref.Reply == nil || ref.Reply.FollowUp != "外来で経過観察" {
		t.Errorf("the clinic sees steps %q, reply %+v", got, ref.Reply)
	}
	// The reply letter (返書) also comes back as DICOM in the referred study (Encapsulated PDF, modality DOC), for the
	// clinic's gateway to deliver to its PACS with the images.
	var series []map[string]json.RawMessage
	clinic.getJSON("/dicomweb/studies/"+r.p1a.studyUID+"/series", &series)
	replyDoc := ""
	for _, se := range series {
		if stringValue(se, "00080060") == "DOC" {
			replyDoc = stringValue(se, "0020000E")
		}
	}
	if replyDoc == "" {
		t.Errorf("no DOC series with the reply letter in the referred study: %s", clinic.body)
	} else {
		var inst []map[string]json.RawMessage
		clinic.getJSON("/dicomweb/studies/"+r.p1a.studyUID+"/series/"+replyDoc+"/instances", &inst)
		if len(inst) != 1 || stringValue(inst[0], "00080016") != "1.2.840.10008.5.1.4.1.1.104.1" {
			t.Errorf("the reply letter object: %s", clinic.body)
		}
	}

	// The hospital refers the patient back (逆紹介); the clinic receives it.
	if st := hospital.post(path+"/reverse", map[string]any{"letter": map[string]string{"purpose": "逆紹介", "course": "術後経過良好", "followUp": "3か月後にCT"}}); st != 201 {
		t.Fatalf("reverse: %d %s", st, hospital.body)
	}
	back := decodeReferral(t, hospital)
	if st := hospital.post(fmt.Sprintf("/api/referrals/%d/send", back.ID), nil); st != 200 {
		t.Fatalf("send back: %d %s", st, hospital.body)
	}
	clinic.getJSON("/api/referrals?direction=in", &board)
	if len(board) != 1 || board[0].ID != back.ID || board[0].Kind != "reverse" || board[0].Status != "sent" {
		t.Errorf("the clinic's incoming board: %+v", board)
	}
	nobody("reverse", other)

	// The clinic's open page heard of the hospital's steps.
	want := fmt.Sprint(ref.ID)
	deadline := time.After(5 * time.Second)
	for n := 0; n < 3; {
		select {
		case ev := <-heard:
			if ev == "referral:"+want {
				n++
			}
		case <-deadline:
			t.Fatalf("the clinic's live updates did not carry the hospital's steps")
		}
	}

	// The audit trail has every step.
	var referralEvents int
	for _, e := range r.events(0) {
		if e.Action == renkei.ActionReferral {
			referralEvents++
		}
	}
	if referralEvents < 8 {
		t.Errorf("%d referral events in the audit trail, want one per step (≥ 8)", referralEvents)
	}
}

// pdfTool runs a poppler tool (pdftotext, pdfinfo, pdffonts) on a PDF and returns what it printed.
func pdfTool(t *testing.T, pdf []byte, tool string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is missing: scripts/setup installs poppler-utils", tool)
	}
	f := filepath.Join(t.TempDir(), "letter.pdf")
	if err := os.WriteFile(f, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, f)
	if tool == "pdftotext" {
		args = append(args, "-")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
	return string(out)
}

// listen opens a live-update stream with token and returns its events as "type:data".
func listen(t testing.TB, r *region, token string) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/events: %v", err)
	}
	got := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				event = e
			} else if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case got <- event + ":" + d:
				default:
				}
			}
		}
	}()
	return got
}

// TestReferralSimilarExam: the hospital receiving a chest CT sees, among the patient's studies it may see, that it
// did a chest CT of the same person (linked identity) a month ago, so it does not repeat it; an older chest CT and a
// recent head CT are not flagged.
func TestReferralSimilarExam(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	day := func(d int) string { return r.clock.Now().AddDate(0, 0, -d).Format("20060102") }
	stowAs := func(token string, o dicomtest.CTOptions) study {
		t.Helper()
		body, ctype := r.stowBodyOf(o, 1)
		c := r.withToken(token)
		if st := c.do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
			t.Fatalf("stow: %d %s", st, c.body)
		}
		return study{studyUID: dicomtest.UID("ct/" + fmt.Sprint(o.Seed) + "/study")}
	}
	chest := stowAs(r.clinicWrite, dicomtest.CTOptions{PatientID: "P1", PatientName: "Yamada^Taro=山田^太郎", Seed: 501, StudyDate: day(2), BodyPart: "CHEST"})
	own, err := r.ids.CreateToken(ctx, renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	recent := stowAs(own, dicomtest.CTOptions{PatientID: "H1", PatientName: "Yamada^Taro=山田^太郎", Seed: 502, StudyDate: day(30), BodyPart: "CHEST"})
	old := stowAs(own, dicomtest.CTOptions{PatientID: "H1", PatientName: "Yamada^Taro=山田^太郎", Seed: 503, StudyDate: day(200), BodyPart: "CHEST"})
	head := stowAs(own, dicomtest.CTOptions{PatientID: "H1", PatientName: "Yamada^Taro=山田^太郎", Seed: 504, StudyDate: day(10), BodyPart: "HEAD"})
	p1, err := r.db.LocalPatient(ctx, r.clinic.PK, renkei.PatientKey{Issuer: "KITA", ID: "P1"})
	if err != nil {
		t.Fatal(err)
	}
	h1, err := r.db.LocalPatient(ctx, r.hospital.PK, renkei.PatientKey{Issuer: "CHUO", ID: "H1"})
	if err != nil {
		t.Fatal(err)
	}
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	if st := hospital.post("/api/consents", map[string]any{"patientId": "H1", "scope": []string{"region"}, "method": "electronic", "signature": "同意します"}); st != 201 {
		t.Fatalf("consent: %d %s", st, hospital.body)
	}
	if _, err := r.db.Link(ctx, p1.PK, h1.PK, "region admin", nil); err != nil {
		t.Fatal(err)
	}
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{chest.studyUID}, "letter": map[string]string{"purpose": "精査"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	ref := decodeReferral(t, clinic)
	if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	var related []struct {
		StudyInstanceUID string
		Attached         bool
		Similar          bool
		BodyParts        []string
	}
	hospital.getJSON(fmt.Sprintf("/api/referrals/%d/related", ref.ID), &related)
	got := map[string]string{}
	for _, s := range related {
		got[s.StudyInstanceUID] = fmt.Sprintf("attached=%v similar=%v", s.Attached, s.Similar)
	}
	for uid, want := range map[string]string{chest.studyUID: "attached=true similar=false", recent.studyUID: "attached=false similar=true",
		old.studyUID: "attached=false similar=false", head.studyUID: "attached=false similar=false"} {
		if got[uid] != want {
			t.Errorf("study %s: %q, want %q (all: %v)", uid, got[uid], want, got)
		}
	}
	// The clinic's other studies of P1 were not attached: the hospital does not see them here either.
	if _, ok := got[r.p1a.studyUID]; ok {
		t.Errorf("the hospital sees an unattached study of the clinic")
	}
}

// TestCorrectEndedReferral: the clinic's doctor cancels a referral, then tries to send a corrected letter; it is
// refused as a conflict (problem+json) that says why and what to do, and nothing of it is kept: no version, no step
// in the history, no audit event of a correction. A referral the hospital answered still takes one.
func TestCorrectEndedReferral(t *testing.T) {
	r := newRegion(t)
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	send := func() string {
		t.Helper()
		if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
			"studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "精査", "diagnosis": "右肺結節"}}); st != 201 {
			t.Fatalf("create: %d %s", st, clinic.body)
		}
		path := fmt.Sprintf("/api/referrals/%d", decodeReferral(t, clinic).ID)
		if st := clinic.post(path+"/send", nil); st != 200 {
			t.Fatalf("send: %d %s", st, clinic.body)
		}
		return path
	}
	corrected := map[string]string{"purpose": "精査", "diagnosis": "右肺上葉結節"}

	path := send()
	if st := clinic.post(path+"/cancel", map[string]string{"reason": "患者の希望により取り消し"}); st != 200 {
		t.Fatalf("cancel: %d %s", st, clinic.body)
	}
	var before, after referralOut
	clinic.getJSON(path, &before)
	from := r.lastSeq()
	if st := clinic.post(path+"/versions", corrected); st != 409 {
		t.Fatalf("a correction of the cancelled referral: %d %s, want 409", st, clinic.body)
	}
	var problem struct {
		Status int
		Detail string
	}
	if err := json.Unmarshal(clinic.body, &problem); err != nil || !strings.HasPrefix(clinic.header.Get("Content-Type"), "application/problem+json") ||
		problem.Status != 409 || !strings.Contains(problem.Detail, "取り消された") || !strings.Contains(problem.Detail, "新しい紹介状を作成") {
		t.Errorf("the refusal: %s %s", clinic.header.Get("Content-Type"), clinic.body)
	}
	var versions []struct{ Version int }
	hospital.getJSON(path+"/versions", &versions)
	clinic.getJSON(path, &after)
	if len(versions) != 1 || after.Version != before.Version || after.Letter.Diagnosis != "右肺結節" || len(after.Events) != len(before.Events) {
		t.Errorf("the refused correction left something: %d versions, version %d→%d, diagnosis %q, %d→%d steps",
			len(versions), before.Version, after.Version, after.Letter.Diagnosis, len(before.Events), len(after.Events))
	}
	for _, e := range r.events(from) {
		if strings.Contains(e.Detail, "letter corrected") {
			t.Errorf("the refused correction is in the audit trail as made: %+v", e)
		}
	}

	// Answered: the letter is in the hospital's record of the patient, and an error in it is still corrected.
	path = send()
	for _, step := range []struct {
		action string
		body   any
	}{{"receive", nil}, {"complete", map[string]any{"reply": map[string]string{"followUp": "経過観察"}}}} {
		if st := hospital.post(path+"/"+step.action, step.body); st != 200 {
			t.Fatalf("%s: %d %s", step.action, st, hospital.body)
		}
	}
	if st := clinic.post(path+"/versions", corrected); st != 201 {
		t.Errorf("a correction of the answered referral: %d %s", st, clinic.body)
	}
}

// TestReadingRequest: a clinic asks the hospital's radiologist to read a CT (読影依頼, urgent); the request heads the
// radiologist's worklist; the signed report returns to the clinic in the referral and as a PDF document in the
// patient's record.
func TestReadingRequest(t *testing.T) {
	r := newRegion(t)
	clinic, radiologist := r.as("kato@kita-clinic"), r.as("suzuki@chuo-hospital")
	for i, prio := range []string{"routine", "urgent"} {
		if st := clinic.post("/api/referrals", map[string]any{"kind": "reading", "priority": prio, "issuer": "KITA", "patientId": "P1",
			"toInstitution": "chuo-hospital", "studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": fmt.Sprint("読影のお願い ", i)}}); st != 201 {
			t.Fatalf("create: %d %s", st, clinic.body)
		}
		ref := decodeReferral(t, clinic)
		if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
			t.Fatalf("send: %d %s", st, clinic.body)
		}
	}
	var worklist []referralOut
	radiologist.getJSON("/api/referrals?direction=in&kind=reading&status=sent,received", &worklist)
	if len(worklist) != 2 || worklist[0].Letter.Purpose != "読影のお願い 1" {
		t.Fatalf("the worklist does not put the urgent request first: %+v", worklist)
	}
	path := fmt.Sprintf("/api/referrals/%d", worklist[0].ID)
	if st := radiologist.post(path+"/receive", nil); st != 200 {
		t.Fatalf("receive: %d", st)
	}
	if st := radiologist.post(path+"/complete", map[string]any{"reply": map[string]string{"findings": "右上葉に12mmの充実性結節。", "impression": "原発性肺癌の疑い"}}); st != 200 {
		t.Fatalf("report: %d %s", st, radiologist.body)
	}
	var rec struct {
		Documents []struct {
			ID              int64
			Kind, Title     string
			ContentType     string
			InstitutionName string
		}
	}
	clinic.getJSON("/api/patients/record?issuer=KITA&patientId=P1", &rec)
	if len(rec.Documents) != 1 || rec.Documents[0].Kind != "reading-report" || rec.Documents[0].InstitutionName != "中央病院" {
		t.Fatalf("the clinic's record after the report: %+v", rec.Documents)
	}
	if st := clinic.get(fmt.Sprintf("/api/documents/%d", rec.Documents[0].ID)); st != 200 {
		t.Fatalf("document: %d", st)
	}
	if text := pdfTool(t, clinic.body, "pdftotext", "-layout"); !strings.Contains(text, "原発性肺癌の疑い") || !strings.Contains(text, "12mm") {
		t.Errorf("the report PDF reads:\n%s", text)
	}
	// The report is also filed in the study as DICOM (Encapsulated PDF, modality DOC), which the clinic reads
	// over DICOMweb like its images, so that its PACS receives it.
	var series []map[string]json.RawMessage
	clinic.getJSON("/dicomweb/studies/"+r.p1a.studyUID+"/series", &series)
	var doc string
	for _, se := range series {
		if stringValue(se, "00080060") == "DOC" {
			doc = stringValue(se, "0020000E")
		}
	}
	if doc == "" {
		t.Fatalf("no DOC series in the study: %s", clinic.body)
	}
	var inst []map[string]json.RawMessage
	clinic.getJSON("/dicomweb/studies/"+r.p1a.studyUID+"/series/"+doc+"/instances", &inst)
	if len(inst) != 1 || stringValue(inst[0], "00080016") != "1.2.840.10008.5.1.4.1.1.104.1" {
		t.Fatalf("the report object: %s", clinic.body)
	}
	if st := clinic.get("/dicomweb/studies/"+r.p1a.studyUID+"/series/"+doc+"/instances/"+stringValue(inst[0], "00080018"),
		"Accept", `multipart/related; type="application/dicom"`); st != 200 || !strings.Contains(string(clinic.body), "%PDF-") {
		t.Errorf("retrieving the report object: %d", st)
	}
}

// TestRecordSources: two institutions' facts about one patient are both shown with their sources, never merged; a
// care home the patient is shared with reads the medications and allergies but cannot write them; an author
// withdraws their own entry, not another institution's.
func TestRecordSources(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	home := renkei.Institution{ID: "sakura-home", Name: "さくら苑", Kind: renkei.CareHome, Issuer: "SAKURA"}
	if err := r.db.PutInstitution(ctx, &home, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("mori@sakura-home", home, renkei.Nurse)
	clinic, hospital, nurse := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital"), r.as("mori@sakura-home")
	url := "/api/patients/record?institution=kita-clinic&issuer=KITA&patientId=P1"
	if st := clinic.post(url, map[string]any{"allergies": []map[string]string{{"category": "drug", "substance": "ペニシリン", "severity": "mild"}},
		"medications": []map[string]string{{"drug": "アムロジピン錠5mg", "dose": "1錠"}}}); st != 201 {
		t.Fatalf("clinic: %d %s", st, clinic.body)
	}
	for _, to := range []string{"chuo-hospital", "sakura-home"} {
		if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "toInstitution": to, "purpose": "referral"}); st != 201 {
			t.Fatalf("share: %d %s", st, clinic.body)
		}
	}
	// The hospital saw a severe reaction to the same drug: both entries stand, each with its source.
	if st := hospital.post(url, map[string]any{"allergies": []map[string]string{{"category": "drug", "substance": "ペニシリン", "reaction": "アナフィラキシー", "severity": "severe"}}}); st != 201 {
		t.Fatalf("hospital: %d %s", st, hospital.body)
	}
	var rec struct {
		Allergies []struct {
			ID                        int64
			Severity, InstitutionName string
		}
		Medications []struct{ Drug string }
	}
	clinic.getJSON(url, &rec)
	got := map[string]string{}
	for _, a := range rec.Allergies {
		got[a.InstitutionName] = a.Severity
	}
	if len(rec.Allergies) != 2 || got["北町クリニック"] != "mild" || got["中央病院"] != "severe" {
		t.Errorf("the clinic sees %+v, want both institutions' entries", rec.Allergies)
	}
	nurse.getJSON(url, &rec)
	if len(rec.Allergies) != 2 || len(rec.Medications) != 1 || rec.Medications[0].Drug != "アムロジピン錠5mg" {
		t.Errorf("the care home reads %+v", rec)
	}
	if st := nurse.post(url, map[string]any{"medications": []map[string]string{{"drug": "追加薬"}}}); st != 403 {
		t.Errorf("a care home wrote the record: %d", st)
	}
	// Withdrawing: the clinic cannot withdraw the hospital's entry; the hospital can.
	var hospitalEntry int64
	for _, a := range rec.Allergies {
		if a.InstitutionName == "中央病院" {
			hospitalEntry = a.ID
		}
	}
	if st := clinic.post(fmt.Sprintf("/api/facts/%d/withdraw", hospitalEntry), nil); st != 404 {
		t.Errorf("the clinic withdrew the hospital's entry: %d", st)
	}
	if st := hospital.post(fmt.Sprintf("/api/facts/%d/withdraw", hospitalEntry), nil); st != 204 {
		t.Errorf("the hospital could not withdraw its entry: %d %s", st, hospital.body)
	}
	clinic.getJSON(url, &rec)
	if len(rec.Allergies) != 1 {
		t.Errorf("after the withdrawal the clinic sees %+v", rec.Allergies)
	}
}

// TestPrintedLetter: a clinic whose EMR already printed the letter uploads it (PDF) instead of typing; a file that
// is not what it claims is refused; the hospital opens the same bytes.
func TestPrintedLetter(t *testing.T) {
	r := newRegion(t)
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital"}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	path := fmt.Sprintf("/api/referrals/%d", decodeReferral(t, clinic).ID)
	if st := clinic.post(path+"/send", nil); st != 400 || !strings.Contains(string(clinic.body), "紹介目的") {
		t.Errorf("sending an empty letter: %d %s", st, clinic.body)
	}
	if st := clinic.do("PUT", path+"/attachment", strings.NewReader("MZ not a pdf"), "Content-Type", "application/pdf"); st != 400 {
		t.Errorf("a fake PDF: %d %s", st, clinic.body)
	}
	pdf := "%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
	if st := clinic.do("PUT", path+"/attachment", strings.NewReader(pdf), "Content-Type", "application/pdf"); st != 200 {
		t.Fatalf("attach: %d %s", st, clinic.body)
	}
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if st := clinic.do("PUT", path+"/attachment", strings.NewReader(pdf), "Content-Type", "application/pdf"); st != 409 {
		t.Errorf("replacing the letter of a sent referral: %d", st)
	}
	if st := hospital.get(path + "/attachment"); st != 200 || string(hospital.body) != pdf {
		t.Errorf("the hospital opens the printed letter: %d %q", st, hospital.body)
	}
}

// TestRefusedAttachment: an upload of a printed letter that is refused (another institution's draft, a referral
// already sent) leaves no file kept behind; stored files named in blob_refs are never swept, so each refused upload
// (up to 50 MB) would otherwise stay for good.
func TestRefusedAttachment(t *testing.T) {
	r := newRegion(t)
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"letter": map[string]string{"purpose": "精査"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	path := fmt.Sprintf("/api/referrals/%d", decodeReferral(t, clinic).ID)
	kept := func() int {
		var n int
		if err := r.rawDB().QueryRow(`SELECT count(*) FROM blob_refs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n0 := kept()
	pdf := "%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
	for i, c := range []struct {
		who  *client
		want int
		pdf  string
	}{
		{hospital, 404, pdf + "a"}, // the clinic's draft: not the hospital's to see
		{clinic, 200, pdf + "b"},
	} {
		if st := c.who.do("PUT", path+"/attachment", strings.NewReader(c.pdf), "Content-Type", "application/pdf"); st != c.want {
			t.Errorf("upload %d: %d, want %d", i, st, c.want)
		}
	}
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if st := clinic.do("PUT", path+"/attachment", strings.NewReader(pdf+"c"), "Content-Type", "application/pdf"); st != 409 {
		t.Errorf("an upload to the sent referral: %d", st)
	}
	if n := kept(); n != n0+1 {
		t.Errorf("%d files kept after one accepted upload and two refused, want %d", n, n0+1)
	}
}

// TestReferralDocuments: a discharge summary of the patient travels with the referral; another patient's document
// cannot be attached.
func TestReferralDocuments(t *testing.T) {
	r := newRegion(t)
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	var ids []int64
	for _, pid := range []string{"P1", "P2"} {
		if st := clinic.do("POST", "/api/patients/documents?issuer=KITA&patientId="+pid+"&kind=discharge-summary&title=退院時サマリー",
			strings.NewReader("退院時サマリー "+pid), "Content-Type", "text/plain"); st != 201 {
			t.Fatalf("document: %d %s", st, clinic.body)
		}
		var d struct{ ID int64 }
		json.Unmarshal(clinic.body, &d)
		ids = append(ids, d.ID)
	}
	req := map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital", "documents": []int64{ids[1]},
		"letter": map[string]string{"purpose": "精査"}}
	if st := clinic.post("/api/referrals", req); st != 400 {
		t.Errorf("attaching another patient's document: %d %s", st, clinic.body)
	}
	req["documents"] = []int64{ids[0]}
	if st := clinic.post("/api/referrals", req); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	ref := decodeReferral(t, clinic)
	if st := hospital.get(fmt.Sprintf("/api/documents/%d", ids[0])); st != 404 {
		t.Errorf("the hospital reads the summary before the referral is sent: %d", st)
	}
	if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if st := hospital.get(fmt.Sprintf("/api/documents/%d", ids[0])); st != 200 || string(hospital.body) != "退院時サマリー P1" {
		t.Errorf("the hospital reads the summary: %d %q", st, hospital.body)
	}
	if st := hospital.get(fmt.Sprintf("/api/documents/%d", ids[1])); st != 404 {
		t.Errorf("the hospital reads another patient's document: %d", st)
	}
}

// TestReverseToThird: after treatment the hospital refers the patient on to a 回復期 hospital with its discharge
// summary; the summary travels with the letter, though the rehabilitation hospital sees nothing else of the patient.
func TestReverseToThird(t *testing.T) {
	r := newRegion(t)
	hospital, rehabDoc, path := acceptedWithRehab(t, r, []string{r.p1a.studyUID})
	if st := hospital.do("POST", "/api/patients/documents?institution=kita-clinic&issuer=KITA&patientId=P1&kind=discharge-summary&title=退院時サマリー",
		strings.NewReader("術後経過良好。リハビリ継続。"), "Content-Type", "text/plain"); st != 201 {
		t.Fatalf("summary: %d %s", st, hospital.body)
	}
	var doc struct{ ID int64 }
	json.Unmarshal(hospital.body, &doc)
	if st := hospital.post(path+"/reverse", map[string]any{"toInstitution": "minami-rehab", "documents": []int64{doc.ID},
		"letter": map[string]string{"purpose": "回復期リハビリテーションのお願い", "followUp": "歩行訓練"}}); st != 201 {
		t.Fatalf("reverse: %d %s", st, hospital.body)
	}
	back := decodeReferral(t, hospital)
	docPath := fmt.Sprintf("/api/documents/%d", doc.ID)
	if st := rehabDoc.get(docPath); st != 404 {
		t.Errorf("the rehabilitation hospital reads the summary before the letter is sent: %d", st)
	}
	if st := hospital.post(fmt.Sprintf("/api/referrals/%d/send", back.ID), nil); st != 200 {
		t.Fatalf("send: %d %s", st, hospital.body)
	}
	if st := rehabDoc.get(docPath); st != 200 || !strings.Contains(string(rehabDoc.body), "リハビリ継続") {
		t.Errorf("the rehabilitation hospital cannot read the attached summary: %d %s", st, rehabDoc.body)
	}
	if st := rehabDoc.get("/api/patients/record?institution=kita-clinic&issuer=KITA&patientId=P1"); st != 404 {
		t.Errorf("the rehabilitation hospital reads the whole record: %d", st)
	}
	if st := rehabDoc.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 404 {
		t.Errorf("the rehabilitation hospital reads the clinic's CT: %d", st)
	}
	var board []referralOut
	rehabDoc.getJSON("/api/referrals?direction=in", &board)
	if len(board) != 1 || board[0].Kind != "reverse" {
		t.Errorf("the rehabilitation hospital's board: %+v", board)
	}
}

// TestReportTwice: the radiologist's second click on "sign the report" (the request is already completed) is a
// conflict and stores no second report PDF: each stored report is kept for good.
func TestReportTwice(t *testing.T) {
	r := newRegion(t)
	clinic, radiologist := r.as("kato@kita-clinic"), r.as("suzuki@chuo-hospital")
	if st := clinic.post("/api/referrals", map[string]any{"kind": "reading", "issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "読影のお願い"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	path := fmt.Sprintf("/api/referrals/%d", decodeReferral(t, clinic).ID)
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	radiologist.post(path+"/receive", nil)
	kept := func() int {
		var n int
		if err := r.rawDB().QueryRow(`SELECT count(*) FROM blob_refs WHERE what = 'report'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	report := map[string]any{"reply": map[string]string{"findings": "異常なし", "impression": "正常範囲"}}
	if st := radiologist.post(path+"/complete", report); st != 200 {
		t.Fatalf("report: %d %s", st, radiologist.body)
	}
	n := kept()
	if st := radiologist.post(path+"/complete", report); st != 409 {
		t.Errorf("the second click: %d, want 409", st)
	}
	if st := clinic.post(path+"/complete", report); st != 403 {
		t.Errorf("the requester signing its own request: %d, want 403", st)
	}
	if got := kept(); got != n {
		t.Errorf("report files kept: %d after the refused steps, %d before", got, n)
	}
}

// TestReverseAudit: the steps of a reverse referral (逆紹介) about the clinic's patient, and the rehabilitation
// hospital's reading of it, are in the audit trail as events about the clinic's patient (the institution that
// holds them), so that the clinic's audit view and the patient's access log find them; the hospital that wrote
// the letter holds no patient with that issuer.
func TestReverseAudit(t *testing.T) {
	r := newRegion(t)
	hospital, rehabDoc, path := acceptedWithRehab(t, r, nil)
	if st := hospital.post(path+"/reverse", map[string]any{"toInstitution": "minami-rehab", "letter": map[string]string{"purpose": "回復期リハビリテーションのお願い"}}); st != 201 {
		t.Fatalf("reverse: %d %s", st, hospital.body)
	}
	back := fmt.Sprintf("/api/referrals/%d", decodeReferral(t, hospital).ID)
	if st := hospital.post(back+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, hospital.body)
	}
	if st := rehabDoc.get(back); st != 200 {
		t.Fatalf("the rehabilitation hospital opens the letter: %d", st)
	}
	if st := rehabDoc.post(back+"/receive", nil); st != 200 {
		t.Fatalf("receive: %d", st)
	}
	id := strings.TrimPrefix(back, "/api/referrals/")
	var found int
	for _, e := range r.events(0) {
		if !strings.Contains(e.Detail, "referral "+id) {
			continue
		}
		found++
		if e.DataInstitution != r.clinic.PK || e.Patient != (renkei.PatientKey{Issuer: "KITA", ID: "P1"}) {
			t.Errorf("%s by institution %d (%s): data of institution %d, patient %+v; want the clinic's (%d)", e.Action, e.Institution, e.Detail,
				e.DataInstitution, e.Patient, r.clinic.PK)
		}
	}
	if found < 3 {
		t.Errorf("%d events about the reverse referral", found)
	}
}

// acceptedWithRehab adds a 回復期 rehabilitation hospital (minami-rehab, its physician ono@minami-rehab) to the region,
// and has the clinic refer P1 to the hospital, with studies if any, the hospital receive and accept it. It returns
// the hospital's and the rehabilitation hospital's doctors and the referral's API path.
func acceptedWithRehab(t *testing.T, r *region, studies []string) (hospital, rehabDoc *client, path string) {
	t.Helper()
	rehab := renkei.Institution{ID: "minami-rehab", Name: "南リハビリテーション病院", Kind: renkei.Hospital, Issuer: "MINAMI", CareFunctions: []string{"回復期"}}
	if err := r.db.PutInstitution(context.Background(), &rehab, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("ono@minami-rehab", rehab, renkei.Physician)
	clinic := r.as("kato@kita-clinic")
	hospital, rehabDoc = r.as("tanaka@chuo-hospital"), r.as("ono@minami-rehab")
	body := map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital", "letter": map[string]string{"purpose": "手術のお願い"}}
	if studies != nil {
		body["studies"] = studies
	}
	if st := clinic.post("/api/referrals", body); st != 201 {
		t.Fatalf("refer: %d %s", st, clinic.body)
	}
	path = fmt.Sprintf("/api/referrals/%d", decodeReferral(t, clinic).ID)
	clinic.post(path+"/send", nil)
	hospital.post(path+"/receive", nil)
	if st := hospital.post(path+"/accept", map[string]string{"appointment": "2026-12-01"}); st != 200 {
		t.Fatalf("accept: %d %s", st, hospital.body)
	}
	return hospital, rehabDoc, path
}
