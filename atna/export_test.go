package atna_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/atna"
	"renkei/sqlstore"
)

// The parsed audit message, as a SIEM reads it (PS3.15 A.5.1).
type auditMessage struct {
	XMLName xml.Name `xml:"AuditMessage"`
	Event   struct {
		ActionCode  string  `xml:"EventActionCode,attr"`
		DateTime    string  `xml:"EventDateTime,attr"`
		Outcome     string  `xml:"EventOutcomeIndicator,attr"`
		EventID     coded   `xml:"EventID"`
		Types       []coded `xml:"EventTypeCode"`
		Description string  `xml:"EventOutcomeDescription"`
		Purpose     []coded `xml:"PurposeOfUse"`
	} `xml:"EventIdentification"`
	Participants []struct {
		UserID          string  `xml:"UserID,attr"`
		UserName        string  `xml:"UserName,attr"`
		Requestor       string  `xml:"UserIsRequestor,attr"`
		AccessPoint     string  `xml:"NetworkAccessPointID,attr"`
		AccessPointType string  `xml:"NetworkAccessPointTypeCode,attr"`
		Roles           []coded `xml:"RoleIDCode"`
	} `xml:"ActiveParticipant"`
	Source struct {
		ID    string  `xml:"AuditSourceID,attr"`
		Site  string  `xml:"AuditEnterpriseSiteID,attr"`
		Types []coded `xml:"AuditSourceTypeCode"`
	} `xml:"AuditSourceIdentification"`
	Objects []struct {
		ID       string `xml:"ParticipantObjectID,attr"`
		TypeCode string `xml:"ParticipantObjectTypeCode,attr"`
		Role     string `xml:"ParticipantObjectTypeCodeRole,attr"`
		IDType   coded  `xml:"ParticipantObjectIDTypeCode"`
		Details  []struct {
			Type  string `xml:"type,attr"`
			Value string `xml:"value,attr"`
		} `xml:"ParticipantObjectDetail"`
	} `xml:"ParticipantObjectIdentification"`
}

type coded struct {
	Code    string `xml:"csd-code,attr"`
	System  string `xml:"codeSystemName,attr"`
	Meaning string `xml:"originalText,attr"`
}

// checkSchema checks what PS3.15 A.5.1 requires of a message: the top-level elements in order (EventIdentification,
// ActiveParticipant+, AuditSourceIdentification, ParticipantObjectIdentification*), the required attributes of
// each, coded values complete, and the enumerated values within their lists.
func checkSchema(t *testing.T, body string, m *auditMessage) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(body))
	var top []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				top = append(top, tk.Name.Local)
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	order := strings.Join(top, " ")
	ok := strings.HasPrefix(order, "EventIdentification ActiveParticipant") && strings.Count(order, "AuditSourceIdentification") == 1
	if ok {
		rest := strings.TrimPrefix(order, "EventIdentification ")
		for strings.HasPrefix(rest, "ActiveParticipant ") {
			rest = strings.TrimPrefix(rest, "ActiveParticipant ")
		}
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "AuditSourceIdentification"), " ")
		for rest != "" {
			if !strings.HasPrefix(rest, "ParticipantObjectIdentification") {
				ok = false
				break
			}
			rest = strings.TrimPrefix(strings.TrimPrefix(rest, "ParticipantObjectIdentification"), " ")
		}
	}
	if !ok {
		t.Errorf("elements out of the schema's order: %s", order)
	}
	in := func(v string, list ...string) bool { return slices.Contains(list, v) }
	complete := func(what string, c coded) {
		if c.Code == "" || c.System == "" || c.Meaning == "" {
			t.Errorf("%s is not a complete coded value (csd-code, codeSystemName, originalText): %+v", what, c)
		}
	}
	if !in(m.Event.ActionCode, "C", "R", "U", "D", "E") {
		t.Errorf("EventActionCode %q", m.Event.ActionCode)
	}
	if !in(m.Event.Outcome, "0", "4", "8", "12") {
		t.Errorf("EventOutcomeIndicator %q", m.Event.Outcome)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Event.DateTime); err != nil {
		t.Errorf("EventDateTime %q: %v", m.Event.DateTime, err)
	}
	complete("EventID", m.Event.EventID)
	for _, c := range m.Event.Types {
		complete("EventTypeCode", c)
	}
	requestors := 0
	for _, p := range m.Participants {
		if p.UserID == "" || !in(p.Requestor, "true", "false") {
			t.Errorf("ActiveParticipant without UserID or UserIsRequestor: %+v", p)
		}
		if p.Requestor == "true" {
			requestors++
		}
		if p.AccessPoint != "" && !in(p.AccessPointType, "1", "2", "3", "4", "5") {
			t.Errorf("NetworkAccessPointTypeCode %q", p.AccessPointType)
		}
		for _, r := range p.Roles {
			complete("RoleIDCode", r)
		}
	}
	if requestors != 1 {
		t.Errorf("%d requestors, want 1", requestors)
	}
	if m.Source.ID == "" {
		t.Error("AuditSourceIdentification without AuditSourceID")
	}
	for _, c := range m.Source.Types {
		complete("AuditSourceTypeCode", c)
	}
	for _, o := range m.Objects {
		if o.ID == "" || !in(o.TypeCode, "1", "2", "3", "4") {
			t.Errorf("ParticipantObjectIdentification without ID or with type %q", o.TypeCode)
		}
		complete("ParticipantObjectIDTypeCode", o.IDType)
	}
}

type region struct {
	db     *sqlstore.DB
	clinic renkei.Institution
	when   time.Time
}

func newRegion(t *testing.T) *region {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &region{db: db, when: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)}
	for _, in := range []*renkei.Institution{
		{ID: "kita-clinic", Name: "北町クリニック", Kind: renkei.Clinic, Issuer: "KITA"},
		{ID: "region", Name: "地域連携ネットワーク事務局", Kind: renkei.RegionOperator},
	} {
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	if r.clinic, err = db.Institution(ctx, "kita-clinic"); err != nil {
		t.Fatal(err)
	}
	return r
}

// clinicalDay appends n events of a clinic's working day: logins, searches, reads by users and a PACS, a stored CT,
// a failed login, a denied read, a break-glass with its reason in Japanese, and an admin action.
func (r *region) clinicalDay(t *testing.T, n int) {
	t.Helper()
	pt := renkei.PatientKey{Issuer: "KITA", ID: "P-1001"}
	var evs []*renkei.AuditEvent
	for i := 0; len(evs) < n; i++ {
		r.when = r.when.Add(time.Minute)
		user := func(action renkei.AuditAction, outcome string) *renkei.AuditEvent {
			return &renkei.AuditEvent{Time: r.when, Actor: "sato@kita-clinic", ActorKind: renkei.UserPrincipal, ActorID: 7,
				Institution: r.clinic.PK, Role: renkei.Physician, Action: action, Outcome: outcome, Source: "192.0.2.10"}
		}
		withData := func(e *renkei.AuditEvent) *renkei.AuditEvent {
			e.DataInstitution, e.Patient, e.Study = r.clinic.PK, pt, fmt.Sprintf("1.2.392.200036.9116.%d", i)
			return e
		}
		switch i % 8 {
		case 0:
			evs = append(evs, user(renkei.ActionLogin, renkei.OutcomeSuccess))
		case 1:
			e := withData(user(renkei.ActionQuery, renkei.OutcomeSuccess))
			e.Detail = "PatientName=山田*"
			evs = append(evs, e)
		case 2:
			evs = append(evs, withData(user(renkei.ActionRead, renkei.OutcomeSuccess)))
		case 3:
			e := withData(user(renkei.ActionStore, renkei.OutcomeSuccess))
			e.Actor, e.ActorKind, e.ActorID, e.Role, e.Source = "CT1", renkei.AEPrincipal, 0, "", "CT1@192.0.2.20:40112"
			evs = append(evs, e)
		case 4:
			e := user(renkei.ActionLogin, renkei.OutcomeFailure)
			e.Detail = "wrong password"
			evs = append(evs, e)
		case 5:
			e := withData(user(renkei.ActionBreakGlass, renkei.OutcomeSuccess))
			e.Purpose, e.Detail = "break-glass", "救急搬送、意識なし\n既往歴の確認"
			evs = append(evs, e)
		case 6:
			evs = append(evs, withData(user(renkei.ActionDenied, renkei.OutcomeFailure)))
		case 7:
			e := user(renkei.ActionAdmin, renkei.OutcomeSuccess)
			e.Detail = "disabled user old@kita-clinic"
			evs = append(evs, e)
		}
	}
	if err := r.db.Audit(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
}

func (r *region) head(t *testing.T) int64 {
	t.Helper()
	h, err := r.db.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitFor polls until cond holds; the deadline is generous (a loaded CI machine), not an assertion on speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allArrived(rs *rsyslog, upTo int64) func() bool {
	return func() bool {
		got := received(rs.Lines())
		for s := int64(1); s <= upTo; s++ {
			if len(got[s]) == 0 {
				return false
			}
		}
		return true
	}
}

// The audit trail reaches a real rsyslog over TLS as DICOM audit messages: all of it, including what was written
// while rsyslog was stopped, and after a clean restart of the exporter nothing is sent twice.
func TestExportToRsyslog(t *testing.T) {
	rs := startRsyslog(t)
	reg := newRegion(t)
	ctx := context.Background()
	exporter := func() *atna.Exporter {
		return &atna.Exporter{Store: reg.db, Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), TLS: &tls.Config{RootCAs: rs.CAPool},
			Header: atna.Header{Hostname: "renkei-test", ProcID: "1"}, Source: atna.Source{ID: "renkei-test", Site: "region", Host: "renkei.example.jp", AE: "RENKEI"},
			Poll: 20 * time.Millisecond, Settle: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	}
	run := func(x *atna.Exporter) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- x.Run(rctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("exporter: %v", err)
			}
		}
	}

	reg.clinicalDay(t, 40)
	x := exporter()
	stop := run(x)
	waitFor(t, "the first 40 events reach rsyslog", allArrived(rs, 40))

	// The collector goes away; the trail keeps growing.
	stoppedAt := time.Now()
	rs.Stop()
	reg.clinicalDay(t, 25)
	waitFor(t, "the exporter notices that rsyslog is gone", func() bool {
		st := x.Status()
		return !st.Connected && st.LastErrorAt.After(stoppedAt)
	})
	reg.clinicalDay(t, 25)
	more := time.Now()
	waitFor(t, "the exporter tries rsyslog again and fails", func() bool { return x.Status().LastErrorAt.After(more) })
	rs.Start()
	head := reg.head(t)
	waitFor(t, fmt.Sprintf("all %d events reach rsyslog after its restart", head), allArrived(rs, head))

	// A clean stop records the end as delivered: the next exporter sends only what is new.
	waitFor(t, "the exporter reconnects", func() bool { return x.Status().Connected })
	stop()
	cursor, err := reg.db.ExportCursor(ctx, "syslog")
	if err != nil {
		t.Fatal(err)
	}
	if cursor != head {
		t.Fatalf("after a clean stop the cursor is %d, want the head %d", cursor, head)
	}
	before := len(rs.Lines())
	stop = run(exporter())
	reg.clinicalDay(t, 8)
	head2 := reg.head(t)
	waitFor(t, "the events after the restart arrive", allArrived(rs, head2))
	stop()
	for seq := range received(rs.Lines()[before:]) {
		if seq <= head {
			t.Errorf("event %d was sent again after a clean restart", seq)
		}
	}

	// Every message is a valid DICOM audit message with the fields a SIEM uses.
	got := received(rs.Lines())
	t.Logf("%d messages for %d events (at least once: some may be sent again after rsyslog's restart); event 6:\n%s",
		len(rs.Lines()), head2, got[6][0])
	events, err := reg.db.AuditEventsAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(events)) != head2 {
		t.Fatalf("%d events in the trail, want %d", len(events), head2)
	}
	for _, e := range events {
		bodies := got[e.Seq]
		if len(bodies) == 0 {
			t.Errorf("event %d never arrived", e.Seq)
			continue
		}
		for _, body := range bodies[1:] {
			if body != bodies[0] {
				t.Errorf("event %d arrived twice with different content", e.Seq)
			}
		}
		var m auditMessage
		if err := xml.Unmarshal([]byte(bodies[0]), &m); err != nil {
			t.Errorf("event %d: not XML: %v\n%s", e.Seq, err, bodies[0])
			continue
		}
		checkSchema(t, bodies[0], &m)
		checkFields(t, e, &m)
	}
}

// checkFields compares a message with the event it was made from, the way an analyst would.
func checkFields(t *testing.T, e renkei.AuditEvent, m *auditMessage) {
	t.Helper()
	want := map[renkei.AuditAction]struct{ id, action, outcome, typ string }{
		renkei.ActionLogin:      {"110114", "E", "0", "110122"},
		renkei.ActionQuery:      {"110112", "E", "0", ""},
		renkei.ActionRead:       {"110103", "R", "0", ""},
		renkei.ActionStore:      {"110104", "C", "0", ""},
		renkei.ActionBreakGlass: {"110113", "E", "0", "110127"},
		renkei.ActionDenied:     {"110113", "E", "4", "110132"},
		renkei.ActionAdmin:      {"110113", "E", "0", "110137"},
	}[e.Action]
	if e.Outcome == renkei.OutcomeFailure {
		want.outcome = "4"
	}
	if m.Event.EventID.Code != want.id || m.Event.EventID.System != "DCM" || m.Event.ActionCode != want.action || m.Event.Outcome != want.outcome {
		t.Errorf("event %d (%s %s): EventID %s action %s outcome %s, want %s %s %s", e.Seq, e.Action, e.Outcome,
			m.Event.EventID.Code, m.Event.ActionCode, m.Event.Outcome, want.id, want.action, want.outcome)
	}
	var types []string
	for _, c := range m.Event.Types {
		types = append(types, c.Code)
	}
	if want.typ != "" && !slices.Contains(types, want.typ) || !slices.Contains(types, string(e.Action)) {
		t.Errorf("event %d (%s): EventTypeCodes %v, want %q and the action's name", e.Seq, e.Action, types, want.typ)
	}
	if at, err := time.Parse(time.RFC3339Nano, m.Event.DateTime); err != nil || !at.Equal(e.Time) {
		t.Errorf("event %d: EventDateTime %q, want %s", e.Seq, m.Event.DateTime, e.Time.UTC())
	}
	if m.Event.Description != e.Detail {
		t.Errorf("event %d: EventOutcomeDescription %q, want %q", e.Seq, m.Event.Description, e.Detail)
	}
	req := m.Participants[0]
	wantHost := "192.0.2.10"
	if e.ActorKind == renkei.AEPrincipal {
		wantHost = "192.0.2.20"
	}
	if req.Requestor != "true" || req.UserID != e.Actor || req.AccessPoint != wantHost || req.AccessPointType != "2" ||
		!strings.Contains(req.UserName, "kita-clinic") {
		t.Errorf("event %d: requestor %+v, want %s from %s of kita-clinic", e.Seq, req, e.Actor, wantHost)
	}
	if m.Source.ID != "renkei-test" || m.Source.Site != "region" {
		t.Errorf("event %d: audit source %+v", e.Seq, m.Source)
	}
	var patient, study string
	for _, o := range m.Objects {
		switch {
		case o.TypeCode == "1" && o.Role == "1" && o.IDType.Code == "2":
			patient = o.ID
			if len(o.Details) != 1 || o.Details[0].Value != base64.StdEncoding.EncodeToString([]byte("kita-clinic")) {
				t.Errorf("event %d: the patient's data institution is missing: %+v", e.Seq, o.Details)
			}
		case o.TypeCode == "2" && o.Role == "3" && o.IDType.Code == "110180":
			study = o.ID
		}
	}
	wantPatient := ""
	if e.Patient.ID != "" {
		wantPatient = "P-1001^^^KITA"
	}
	if patient != wantPatient || study != e.Study {
		t.Errorf("event %d: patient %q study %q, want %q %q", e.Seq, patient, study, wantPatient, e.Study)
	}
	if e.Action == renkei.ActionBreakGlass && (len(m.Event.Purpose) != 1 || m.Event.Purpose[0].Code != "break-glass") {
		t.Errorf("event %d: PurposeOfUse %+v", e.Seq, m.Event.Purpose)
	}
}
