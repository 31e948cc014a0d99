package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"renkei/internal/dicomtest"
	"renkei/pgbus"
	"renkei/sqlstore/pgtest"
)

// startDemoNode runs `renkei serve --demo` on db until the test ends and returns its base URL and the demo accounts
// (login → password, TOTP key).
func startDemoNode(t *testing.T, args ...string) (string, map[string][2]string) {
	t.Helper()
	accounts := map[string][2]string{}
	base := serveLines(t, func(l string) {
		if f := strings.Split(strings.TrimSpace(l), "\t"); len(f) == 3 && strings.HasPrefix(f[0], "demo-") {
			accounts[f[0]] = [2]string{f[1], f[2]}
		}
	}, args...)
	return base, accounts
}

// liveStream opens GET /api/events on base with c's session and returns the events as "event data" lines.
func liveStream(t *testing.T, base string, c *apiClient) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	req.Header.Set("Cookie", "renkei_session="+c.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/events: %v %v", resp.Status, err)
	}
	got := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var event string
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				got <- event + " " + d
			}
		}
	}()
	return got
}

// hear waits for want on the stream, skipping other events.
func hear(t *testing.T, stream <-chan string, want, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var heard []string
	for {
		select {
		case s := <-stream:
			if s == want {
				return
			}
			heard = append(heard, s)
		case <-deadline:
			t.Fatalf("%s: %q not heard on the other node (heard %q)", what, want, heard)
		}
	}
}

// TestClusterLiveEvents runs two `renkei serve --db postgres://…` nodes: the hospital physician's live-update
// stream is open on node B, while on node A a referral moves on and the hospital's CT stores a study; both events
// reach the stream on B (through PostgreSQL LISTEN/NOTIFY), once each.
func TestClusterLiveEvents(t *testing.T) {
	db := pgtest.URL(t)
	data := filepath.Join(t.TempDir(), "data")
	nodeA, accounts := startDemoNode(t, "--data", data, "--db", db, "--demo")
	nodeB, _ := startDemoNode(t, "--data", data, "--db", db)

	// One login (sessions are in the shared index): the stream on B, the actions on A.
	acc := accounts["demo-tanaka@chuo-hospital"]
	tanaka := login(t, nodeA, "demo-tanaka@chuo-hospital", acc[0], acc[1])
	stream := liveStream(t, nodeB, tanaka)

	var board []struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	tanaka.getJSON(t, "/api/referrals?direction=in", &board)
	if len(board) == 0 {
		t.Fatal("the demo hospital has no referral waiting")
	}
	if code := tanaka.do(t, "POST", fmt.Sprintf("/api/referrals/%d/receive", board[0].ID), map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("receive the referral on node A: %d", code)
	}
	hear(t, stream, fmt.Sprintf("referral %d", board[0].ID), "a referral step on node A")

	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "token", "add", "ct-room", "--institution", "chuo-hospital", "--write", "--data", data, "--db", db}, &out, &out); code != 0 {
		t.Fatalf("token add: %s", out.String())
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("token add printed no token: %s", out.String())
	}
	study := dicomtest.UID("cluster/study")
	path := filepath.Join(t.TempDir(), "ct.dcm")
	if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: dicomtest.UID("cluster/series"),
		SOPInstanceUID: dicomtest.UID("cluster/ct"), PatientID: "H0099", Rows: 16, Cols: 16, InstanceNumber: 1}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := stow(&http.Client{Transport: bearer{m[1], http.DefaultTransport}}, nodeA+"/dicomweb/studies", b); err != nil {
		t.Fatalf("node A: %v", err)
	}
	hear(t, stream, "study "+study, "a study stored on node A")
	select {
	case s := <-stream:
		if s == "study "+study {
			t.Errorf("the study's event was delivered twice")
		}
	case <-time.After(500 * time.Millisecond):
	}

	// The security monitor runs on one node, under a lease; when that node's lease connection dies, the other node
	// takes it.
	pg, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	holder := func() (pid int, name string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := pg.QueryRow(`SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`,
				pgbus.LeaseKey("monitor")).Scan(&pid, &name)
			if err == nil {
				return pid, name
			}
			if time.Now().After(deadline) {
				t.Fatalf("no node holds the monitor's lease: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pid, first := holder()
	for name, tries := first, 0; name == first; tries++ { // the killed node may win the lock back: kill it again
		if tries == 5 {
			t.Fatalf("the monitor stayed with %s", first)
		}
		if _, err := pg.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		pid, name = holder()
	}
}

// roomClient is one participant's consult WebSocket.
type roomClient struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan map[string]any
}

func joinRoom(t *testing.T, base string, c *apiClient, id int64) *roomClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+fmt.Sprintf("/api/consults/%d/ws", id),
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"renkei_session=" + c.cookie}}})
	if err != nil {
		t.Fatalf("join consult %d on %s: %v", id, base, err)
	}
	rc := &roomClient{t: t, conn: conn, msgs: make(chan map[string]any, 100)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				close(rc.msgs)
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				rc.msgs <- m
			}
		}
	}()
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	return rc
}

func (rc *roomClient) say(m map[string]any) {
	b, _ := json.Marshal(m)
	if err := rc.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		rc.t.Fatal(err)
	}
}

// await waits for a message for which ok holds, skipping others.
func (rc *roomClient) await(what string, ok func(m map[string]any) bool) map[string]any {
	rc.t.Helper()
	deadline := time.After(15 * time.Second)
	var skipped []string
	for {
		select {
		case m, open := <-rc.msgs:
			if !open {
				rc.t.Fatalf("%s: the connection closed", what)
			}
			if ok(m) {
				return m
			}
			skipped = append(skipped, fmt.Sprintf("%.200v", m))
		case <-deadline:
			rc.t.Fatalf("%s: not received (got %q)", what, skipped)
		}
	}
}

// TestClusterConsult: two doctors of one hospital in one consult, on two nodes, see each other join and each
// other's annotations; a third node started afterwards gives a late joiner the room as it stands (the driver, both
// annotations, the chat and everyone in it).
func TestClusterConsult(t *testing.T) {
	db := pgtest.URL(t)
	data := filepath.Join(t.TempDir(), "data")
	nodeA, accounts := startDemoNode(t, "--data", data, "--db", db, "--demo")
	nodeB, _ := startDemoNode(t, "--data", data, "--db", db)
	as := func(user string) *apiClient {
		acc := accounts[user]
		return login(t, nodeA, user, acc[0], acc[1])
	}
	tanaka, suzuki, sato := as("demo-tanaka@chuo-hospital"), as("demo-suzuki@chuo-hospital"), as("demo-sato@chuo-hospital")
	var studies []map[string]struct{ Value []any }
	tanaka.getJSON(t, "/dicomweb/studies", &studies)
	if len(studies) == 0 {
		t.Fatal("the demo hospital sees no study")
	}
	var room struct {
		ID int64 `json:"id"`
	}
	if code := tanaka.do(t, "POST", "/api/consults", map[string]string{"study": fmt.Sprint(studies[0]["0020000D"].Value[0]), "title": "二拠点の相談"}, &room); code != http.StatusCreated {
		t.Fatalf("create consult: %d", code)
	}
	for _, who := range []string{"demo-suzuki@chuo-hospital", "demo-sato@chuo-hospital"} {
		if code := tanaka.do(t, "POST", fmt.Sprintf("/api/consults/%d/invite", room.ID), map[string]string{"login": who}, nil); code != http.StatusOK {
			t.Fatalf("invite %s: %d", who, code)
		}
	}
	is := func(typ string) func(map[string]any) bool {
		return func(m map[string]any) bool { return m["type"] == typ }
	}

	onA := joinRoom(t, nodeA, tanaka, room.ID)
	onA.await("tanaka's snapshot", is("snapshot"))
	onB := joinRoom(t, nodeB, suzuki, room.ID)
	// Suzuki's node asks the other nodes for the room: a snapshot naming tanaka as driver follows.
	onB.await("the room as node A has it, on node B", func(m map[string]any) bool {
		return m["type"] == "snapshot" && m["driver"] == "demo-tanaka@chuo-hospital" && len(m["participants"].([]any)) == 2
	})
	onA.await("suzuki's join, on node A", func(m map[string]any) bool { return m["type"] == "join" && m["from"] == "demo-suzuki@chuo-hospital" })

	onA.say(map[string]any{"type": "annotate", "annotation": map[string]any{"kind": "arrow", "x": 1}})
	onB.await("tanaka's annotation, on node B", func(m map[string]any) bool {
		return m["type"] == "annotate" && m["from"] == "demo-tanaka@chuo-hospital"
	})
	onB.say(map[string]any{"type": "annotate", "annotation": map[string]any{"kind": "circle", "x": 2}})
	onA.await("suzuki's annotation, on node A", func(m map[string]any) bool {
		return m["type"] == "annotate" && m["from"] == "demo-suzuki@chuo-hospital"
	})
	long := strings.Repeat("<所見>", 499) // 3,992 bytes, 9 kB as JSON (< and > escaped): over one NOTIFY
	onB.say(map[string]any{"type": "chat", "text": long})
	onA.await("suzuki's long chat, on node A", func(m map[string]any) bool { return m["type"] == "chat" && m["text"] == long })
	onB.say(map[string]any{"type": "state", "state": map[string]any{"slice": 3}})
	onB.await("refusal: suzuki does not drive", is("error"))
	onA.say(map[string]any{"type": "grant", "to": "demo-suzuki@chuo-hospital"})
	onB.await("control passed to suzuki, on node B", func(m map[string]any) bool {
		return m["type"] == "control" && m["driver"] == "demo-suzuki@chuo-hospital"
	})
	onB.say(map[string]any{"type": "state", "state": map[string]any{"slice": 7}})
	onA.await("suzuki's view, on node A", func(m map[string]any) bool { return m["type"] == "state" && m["from"] == "demo-suzuki@chuo-hospital" })

	// A node started now never heard the room: its first joiner gets it from the others.
	nodeC, _ := startDemoNode(t, "--data", data, "--db", db)
	onC := joinRoom(t, nodeC, sato, room.ID)
	// Nodes A and B both answer: the first answer's snapshot carries the chat, which the client keeps, the next
	// one only adds participants.
	chat := 0
	onC.await("the room as it stands, on node C", func(m map[string]any) bool {
		if m["type"] != "snapshot" {
			return false
		}
		c, _ := m["chat"].([]any)
		chat += len(c)
		anns, _ := m["annotations"].([]any)
		state, _ := m["state"].(map[string]any)
		return m["driver"] == "demo-suzuki@chuo-hospital" && len(anns) == 2 && chat == 1 && len(m["participants"].([]any)) == 3 && state["slice"] == float64(7)
	})
}
