package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"renkei"
	"renkei/consult"
	"renkei/web"
)

// TestConsult: a clinic doctor starts a consult on a 60-slice CT and invites a hospital doctor (the invitation
// shares the study with them). A scrolls to slice 57, B shows slice 57; A changes window/level and draws an arrow, B
// sees both; B asks for control, A hands it on, B scrolls and A follows; a late joiner starts where the room is; a
// third institution's user can neither read nor join the room.
func TestConsult(t *testing.T) {
	r := newRegion(t)
	ct := r.stow(r.clinicWrite, "P1", "Yamada^Taro=山田^太郎", 600, 60)
	r.addUser("kimura@kita-clinic", r.clinic, renkei.Nurse)
	third := renkei.Institution{ID: "higashi-hospital", Name: "東病院", Kind: renkei.Hospital, Issuer: "HIGASHI"}
	if err := r.db.PutInstitution(context.Background(), &third, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("abe@higashi-hospital", third, renkei.Physician)
	out := artifacts(t)
	actx, cancelA := browser(t)
	defer cancelA()
	bctx, cancelB := browser(t)
	defer cancelB()
	step := func(ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		runStep(ctx, t, out, name, actions...)
	}
	overlayHas := func(ctx context.Context, s string) chromedp.Action[chromedp.Void] {
		return poll(fmt.Sprintf(`(document.querySelector('#overlay') || {}).textContent && document.querySelector('#overlay').textContent.includes(%q)`, s))
	}
	step(actx, "c01-start", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/viewer/"+ct.studyUID),
		chromedp.WaitVisible("#start-consult"), chromedp.Click("#start-consult"), chromedp.WaitVisible(`#consult [data-ready="true"]`),
		// A login typed without its institution is answered in words that say what to type.
		chromedp.SendKeys("#con-invite", "tanaka"), chromedp.Click(`#con-invite-form button`),
		poll(`document.querySelector('#message').textContent.includes('施設の部分まで')`), poll(`(document.querySelector('#con-invite').value = '', true)`),
		chromedp.SendKeys("#con-invite", "tanaka@chuo-hospital"), chromedp.Click(`#con-invite-form button`), poll(`document.querySelector('#message').textContent.includes('tanaka')`))
	// The clinic's colleagues are offered to choose from; the doctor herself and other institutions' staff are not.
	offered, _ := chromedp.Run(actx, chromedp.Evaluate[string](`[...document.querySelectorAll('#con-colleagues option')].map((o) => o.value).join(' ')`))
	if !strings.Contains(offered, "kimura@kita-clinic") || strings.Contains(offered, "kato@") || strings.Contains(offered, "chuo-hospital") ||
		strings.Contains(offered, "higashi") {
		t.Errorf("colleagues offered for the invitation: %q", offered)
	}
	hash, _ := chromedp.Run(actx, chromedp.Evaluate[string]("location.hash"))
	id := strings.TrimPrefix(hash, "#/consult/")

	// A third institution: not a member, the room does not exist for it.
	if st := r.as("abe@higashi-hospital").get("/api/consults/" + id); st != 404 {
		t.Errorf("a third institution reads the consult: %d", st)
	}

	step(bctx, "c02-join", r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute("#/consult/"+id),
		chromedp.WaitVisible(`#consult [data-ready="true"]`))
	// A scrolls to slice 57 (it opens at 31).
	var keys []chromedp.Action[chromedp.Void]
	keys = append(keys, chromedp.Focus("#viewport"))
	for range 26 {
		keys = append(keys, chromedp.KeyEvent(kb.ArrowDown))
	}
	step(actx, "c03-scroll", append(keys, overlayHas(actx, "57 / 60"))...)
	step(bctx, "c04-follows", overlayHas(bctx, "57 / 60"))
	step(actx, "c05-window-arrow", chromedp.Click(`button[data-preset="lung"]`), chromedp.Click(`button[data-tool="arrow"]`))
	dragImage(actx, t, [2]float64{3, 3}, [2]float64{12, 12})
	step(bctx, "c06-sees", overlayHas(bctx, "WL -600 / WW 1500"), poll(`document.querySelector('#viewport').dataset.shared === '1'`))

	// B asks for control; A hands it on; B scrolls back one; A follows.
	step(bctx, "c07-request", chromedp.Click("#con-request"))
	step(actx, "c08-grant", chromedp.WaitVisible("button.con-grant"), chromedp.Click("button.con-grant"), chromedp.WaitVisible("#con-request"))
	step(bctx, "c09-drive", chromedp.WaitVisible("#con-you-drive"), chromedp.Focus("#viewport"), chromedp.KeyEvent(kb.ArrowUp), overlayHas(bctx, "56 / 60"))
	step(actx, "c10-a-follows", overlayHas(actx, "56 / 60"))

	// A late joiner (a nurse of the clinic) starts where the room is: slice 56, the lung window, the arrow.
	if st := r.as("kato@kita-clinic").post("/api/consults/"+id+"/invite", map[string]string{"login": "kimura@kita-clinic"}); st != 200 {
		t.Fatalf("invite: %d", st)
	}
	cancelA()
	cctx, cancelC := browser(t)
	defer cancelC()
	step(cctx, "c11-late", r.loginSteps(r.users["kimura@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/consult/"+id),
		chromedp.WaitVisible(`#consult [data-ready="true"]`), overlayHas(cctx, "56 / 60"), overlayHas(cctx, "WL -600 / WW 1500"),
		poll(`document.querySelector('#consult .consult-view').dataset.annotations === '1'`)) // the arrow, drawn on slice 57

	// The consult's key events are kept with it.
	var c struct {
		Events []struct{ Kind, Login string }
	}
	r.as("kato@kita-clinic").getJSON("/api/consults/"+id, &c)
	kinds := map[string]int{}
	for _, e := range c.Events {
		kinds[e.Kind]++
	}
	if kinds["join"] < 3 || kinds["annotate"] != 1 || kinds["control"] != 1 {
		b, _ := json.Marshal(c.Events)
		t.Errorf("kept events: %v %s", kinds, b)
	}
	// And in the audit trail: who joined, the arrow, the hand-over.
	var joined, consulted int
	for _, e := range r.events(0) {
		if e.Study == ct.studyUID && strings.Contains(e.Detail, "joined consult") {
			joined++
		}
		if e.Action == renkei.ActionConsult {
			consulted++
		}
	}
	if joined < 3 || consulted < 2 {
		t.Errorf("audit trail: %d joins, %d consult events", joined, consulted)
	}
}

// TestConsultVoice: two participants talk without a phone: one turns voice on, the browsers connect over WebRTC
// with the room relaying the signalling, and the other one receives the audio. (Chromium's fake microphone stands
// in for a real one: the only fake here, because a test machine has no sound card.)
func TestConsultVoice(t *testing.T) {
	r := newRegion(t)
	media := []chromedp.ExecAllocatorOption{chromedp.Flag("use-fake-ui-for-media-stream", true), chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns")}
	actx, cancelA := browser(t, media...)
	defer cancelA()
	bctx, cancelB := browser(t, media...)
	defer cancelB()
	out := artifacts(t)
	step := func(ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		runStep(ctx, t, out, name, actions...)
	}
	id := consultOfP1(t, r.as("kato@kita-clinic"), 1)
	room := fmt.Sprintf("#/consult/%d", id)
	step(actx, "v1", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute(room), chromedp.WaitVisible(`#consult [data-ready="true"]`))
	step(bctx, "v2", r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute(room), chromedp.WaitVisible(`#consult [data-ready="true"]`))
	step(actx, "v3", poll(`document.querySelectorAll('#con-people li').length >= 2`), chromedp.Click("#con-voice"),
		poll(`document.querySelector('#con-voice').dataset.state === 'connected'`))
	step(bctx, "v4", poll(`(() => { const a = document.querySelector('#con-audio audio'); return !!a && !!a.srcObject && a.srcObject.getAudioTracks().length > 0; })()`))
}

// TestConsultAfterConsent: the invitation's share rests on the patient's consent; when the patient withdraws it, the
// invited doctor of another institution is out of the room too (its chat and drawings are about the patient), as
// for a consult that does not exist, and off their list of consults, while the clinic's own members stay. Inviting the same doctor twice (a double
// click) leaves one share in force, not a second one that no membership records.
func TestConsultAfterConsent(t *testing.T) {
	r := newRegion(t)
	kato, tanaka := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	room := fmt.Sprintf("/api/consults/%d", consultOfP1(t, kato, 2)) // invited twice: a double click
	active := func() int {
		list, err := r.db.Shares(context.Background(), renkei.ShareFilter{FromInstitution: r.clinic.PK, ToUser: r.users["tanaka@chuo-hospital"].pk,
			ActiveAt: r.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, sh := range list {
			if sh.Purpose == renkei.PurposeConsult {
				n++
			}
		}
		return n
	}
	if n := active(); n != 1 {
		t.Errorf("after inviting twice: %d consult shares in force, want 1", n)
	}
	if st := tanaka.get(room); st != 200 {
		t.Fatalf("the invited doctor reads the consult: %d", st)
	}

	withdrawConsentOfP1(t, kato)
	if n := active(); n != 0 {
		t.Errorf("after the withdrawal: %d consult shares in force", n)
	}
	for _, path := range []string{room, room + "/ws"} {
		if st := tanaka.get(path); st != 404 {
			t.Errorf("the invited doctor, after the withdrawal: GET %s %d, want 404", path, st)
		}
	}
	var list []struct{ ID int64 }
	tanaka.getJSON("/api/consults", &list)
	if len(list) != 0 {
		t.Errorf("the invited doctor's consults, after the withdrawal: %+v", list)
	}
	if st := kato.get(room); st != 200 {
		t.Errorf("the clinic's own doctor, after the withdrawal: %d", st)
	}
	kato.getJSON("/api/consults", &list)
	if len(list) != 1 {
		t.Errorf("the clinic's own doctor's consults, after the withdrawal: %+v", list)
	}
}

// TestConsultSocketAfterConsent: the invited doctor is in the room when the patient withdraws consent; the open
// socket does not go on carrying the room's chat to them.
func TestConsultSocketAfterConsent(t *testing.T) {
	r := newRegion(t)
	kato, tanaka := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	id := consultOfP1(t, kato, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(cl *client) *websocket.Conn {
		h := http.Header{}
		h.Set("Cookie", web.SessionCookie+"="+cl.cookie)
		h.Set("Origin", r.srv.URL)
		conn, _, err := websocket.Dial(ctx, strings.Replace(r.srv.URL, "http", "ws", 1)+fmt.Sprintf("/api/consults/%d/ws", id),
			&websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadLimit(1 << 20)
		t.Cleanup(func() { conn.CloseNow() })
		return conn
	}
	read := func(conn *websocket.Conn) (consult.Message, error) {
		_, b, err := conn.Read(ctx)
		var m consult.Message
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		return m, err
	}
	a := dial(kato)
	if m, err := read(a); err != nil || m.Type != consult.TypeSnapshot {
		t.Fatalf("the clinic's snapshot: %+v %v", m, err)
	}
	b := dial(tanaka)
	if m, err := read(b); err != nil || m.Type != consult.TypeSnapshot {
		t.Fatalf("the hospital's snapshot: %+v %v", m, err)
	}
	say := func(text string) {
		msg, _ := json.Marshal(consult.Message{Type: consult.TypeChat, Text: text})
		if err := a.Write(ctx, websocket.MessageText, msg); err != nil {
			t.Fatal(err)
		}
	}
	say("before")
	for {
		m, err := read(b)
		if err != nil {
			t.Fatalf("before the withdrawal: %v", err)
		}
		if m.Type == consult.TypeChat && m.Text == "before" {
			break
		}
	}

	withdrawConsentOfP1(t, kato)
	r.clock.Advance(2 * time.Minute)
	say("after: 山田さんの所見")
	for {
		m, err := read(b)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Errorf("the socket ended with %v, want policy violation", err)
			}
			break
		}
		if m.Type == consult.TypeChat {
			t.Errorf("after the withdrawal the invited doctor still receives the chat: %q", m.Text)
			break
		}
	}
	// The clinic's chat is audited by its socket's reader; wait for it before the region closes the index.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, e := range r.events(0) {
			if e.Action == renkei.ActionConsult && strings.Contains(e.Detail, "chat") {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chats audited, want 2", n)
		}
	}
}

// consultOfP1 starts, as the clinic's doctor, a consult on the clinic's CT of P1, invites the hospital's doctor to it
// invites times, and returns the consult's ID.
func consultOfP1(t *testing.T, kato *client, invites int) int64 {
	t.Helper()
	if st := kato.post("/api/consults", map[string]string{"study": kato.r.p1a.studyUID}); st != 201 {
		t.Fatalf("start a consult: %d %s", st, kato.body)
	}
	var c struct{ ID int64 }
	json.Unmarshal(kato.body, &c)
	for range invites {
		if st := kato.post(fmt.Sprintf("/api/consults/%d/invite", c.ID), map[string]string{"login": "tanaka@chuo-hospital"}); st != 200 {
			t.Fatalf("invite: %d %s", st, kato.body)
		}
	}
	return c.ID
}

// withdrawConsentOfP1 records, as the clinic's doctor, the withdrawal of P1's one consent.
func withdrawConsentOfP1(t *testing.T, kato *client) {
	t.Helper()
	var consents []struct{ ID int64 }
	kato.getJSON("/api/consents?patientId=P1", &consents)
	if len(consents) != 1 {
		t.Fatalf("consents: %+v", consents)
	}
	if st := kato.post(fmt.Sprintf("/api/consents/%d/withdraw", consents[0].ID), map[string]any{}); st != 200 {
		t.Fatalf("withdraw: %d %s", st, kato.body)
	}
}
