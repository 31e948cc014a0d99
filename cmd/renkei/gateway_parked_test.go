package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"renkei/gateway"
	"renkei/internal/dicomtest"
)

// stowCounter is an HTTP proxy between the gateway and renkei that counts the STOW-RS requests it forwards.
type stowCounter struct {
	addr  string
	stows atomic.Int64
}

func newStowCounter(t *testing.T, target string) *stowCounter {
	t.Helper()
	c := &stowCounter{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/dicomweb/studies") {
			c.stows.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// gatewayParkedRun: a modality sends corrected versions of three studies renkei already holds (same SOP Instance UIDs,
// another patient name), which renkei refuses for good (0x0111). The gateway parks them after one request each and
// sends them no more; its backlog is empty (renkei's backlog alert stays quiet) while `renkei gateway status`, the
// status page, `renkei gateway parked` and the heartbeat on renkei's admin page say what is parked, where and why.
// Once renkei's admin removed the first version of one study, `renkei gateway retry` — while the gateway runs — sends
// it again and renkei stores it; `renkei gateway discard` deletes the parked images of the named study and no other.
func gatewayParkedRun(t *testing.T, bin string) {
	e := newGWEnv(t, bin)
	counter := newStowCounter(t, e.renkei.addr)
	spool := filepath.Join(e.dir, "spool")
	dimseAddr, statusAddr := freeAddr(t), freeAddr(t)
	gw := startGateway(t, bin, "--server", "http://"+counter.addr, "--token-file", e.tokFile, "--dimse", dimseAddr, "--ae", "GW_TEST",
		"--spool", spool, "--status", statusAddr, "--heartbeat", "1s", "--reserve-mb", "1")
	gw.waitDIMSE(t, dimseAddr)
	host, port, _ := net.SplitHostPort(dimseAddr)

	// Version 1 of studies A, B and C reaches renkei; version 2 (a corrected patient name) is refused.
	names := []string{"A", "B", "C"}
	study := map[string]string{}
	v2 := map[string]map[string][32]byte{}
	send := func(version int) {
		dir := filepath.Join(e.dir, fmt.Sprintf("modality-v%d", version))
		for _, n := range names {
			study[n] = dicomtest.UID("parked-study-" + n)
			v2[n] = map[string][32]byte{}
			for i := 1; i <= 2; i++ {
				sop := dicomtest.UID(fmt.Sprintf("parked-%s-%d", n, i))
				p := filepath.Join(dir, fmt.Sprintf("%s-%d.dcm", n, i))
				os.MkdirAll(dir, 0o755)
				if err := dicomtest.CT(p, dicomtest.CTOptions{StudyInstanceUID: study[n], SeriesInstanceUID: dicomtest.UID("parked-series-" + n),
					SOPInstanceUID: sop, PatientID: "GW-PARK-" + n, PatientName: fmt.Sprintf("Parked^Version%d", version), Rows: 16, Cols: 16,
					InstanceNumber: i, Seed: int64(i)}); err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(p)
				ds, err := dataSet(b)
				if err != nil {
					t.Fatal(err)
				}
				v2[n][sop] = sha256.Sum256(ds)
			}
		}
		if out, err := dcmtk("storescu", "-aet", "CT_ROOM1", "-aec", "GW_TEST", "+sd", host, port, dir).CombinedOutput(); err != nil {
			t.Fatalf("storescu version %d: %v\n%s", version, err, tailString(string(out), 20))
		}
	}
	send(1)
	waitEmpty(t, gw, spool, time.Minute)
	send(2)

	var st gateway.Status
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		st, err = gateway.ReadStatus(spool)
		if err == nil && st.Parked.Instances == 6 && st.Queue.Instances == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d parked, %d waiting (%v); failures %+v\n%s", st.Parked.Instances, st.Queue.Instances, err, st.Failures, gw.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(st.Parked.Studies) != 3 || st.Parked.Studies[0].Kind != gateway.ParkedConflict || !strings.Contains(st.Parked.Studies[0].Reason, "0x0111") {
		t.Errorf("parked studies: %+v; want 3, as conflicts (0x0111)", st.Parked.Studies)
	}
	// Not sent again: the refused version once waited a second, two, four… and was sent on forever.
	stows := counter.stows.Load()
	time.Sleep(5 * time.Second)
	if n := counter.stows.Load(); n != stows {
		t.Errorf("%d STOW-RS requests after the images were parked", n-stows)
	}

	var cli bytes.Buffer
	if code := Main(context.Background(), []string{"gateway", "status", "--spool", spool}, &cli, &cli); code != 0 ||
		!strings.Contains(cli.String(), "送信を止めた画像 (parked") || !strings.Contains(cli.String(), "6 件, 3 検査") ||
		!strings.Contains(cli.String(), study["B"]) || !strings.Contains(cli.String(), "renkei already holds an image with this UID") ||
		!strings.Contains(cli.String(), "待ち (waiting):        0 件") {
		t.Errorf("renkei gateway status (exit %d):\n%s", code, cli.String())
	}
	if page := httpGet(t, "http://"+statusAddr+"/"); !strings.Contains(page, `id="parked"`) || !strings.Contains(page, study["C"]) ||
		!strings.Contains(page, "renkei に同じ UID で内容の異なる画像がすでにあります") || !strings.Contains(page, "6 件の送信を止めています") {
		t.Errorf("the status page does not show the parked images:\n%s", page)
	}
	cli.Reset()
	if code := Main(context.Background(), []string{"gateway", "parked", "--spool", spool}, &cli, &cli); code != 0 ||
		strings.Count(cli.String(), "検査 (study)") != 3 || !strings.Contains(cli.String(), dicomtest.UID("parked-A-2")) {
		t.Errorf("renkei gateway parked (exit %d):\n%s", code, cli.String())
	}
	// The heartbeat tells renkei's admin page: failing, with how many are parked and why; no backlog.
	idx, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "data", "index.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	var failures, instances int
	var lastError string
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := idx.QueryRow(`SELECT failures, instances, last_error FROM gateways`).Scan(&failures, &instances, &lastError); err == nil &&
			strings.Contains(lastError, "parked") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if failures != 6 || instances != 0 || !strings.Contains(lastError, "6 image(s) of 3 study(ies) parked") {
		t.Errorf("renkei's record of the gateway: %d failures, %d waiting, %q", failures, instances, lastError)
	}

	// renkei's admin removes version 1 of study A (to the trash, then purged): version 2 may be stored now.
	for _, u := range []string{e.renkei.url + "/studies/" + study["A"], "http://" + e.renkei.addr + "/api/trash/studies/" + study["A"]} {
		req, _ := http.NewRequest(http.MethodDelete, u, nil)
		resp, err := e.renkei.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE %s: %s", u, resp.Status)
		}
	}
	cli.Reset()
	if code := Main(context.Background(), []string{"gateway", "retry", "--spool", spool, "--study", study["A"]}, &cli, &cli); code != 0 ||
		!strings.Contains(cli.String(), "2 parked image(s) are queued again") || !strings.Contains(cli.String(), "done by the running gateway") {
		t.Fatalf("renkei gateway retry (exit %d):\n%s", code, cli.String())
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		got := e.stored(study["A"])
		same := len(got) == 2
		for sop, sum := range v2["A"] {
			same = same && got[sop] == sum
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			st, _ := gateway.ReadStatus(spool)
			t.Fatalf("renkei does not hold version 2 of study A after the retry: %d instances; parked %+v\n%s", len(got), st.Parked, gw.output())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Discard deletes B's parked images, and not C's.
	cli.Reset()
	if code := Main(context.Background(), []string{"gateway", "discard", "--spool", spool, "--study", study["B"]}, &cli, &cli); code != 0 ||
		!strings.Contains(cli.String(), "Deleted 2 parked image(s)") || strings.Count(cli.String(), "study "+study["B"]) != 2 {
		t.Fatalf("renkei gateway discard (exit %d):\n%s", code, cli.String())
	}
	if code := Main(context.Background(), []string{"gateway", "discard", "--spool", spool}, &cli, &cli); code == 0 {
		t.Error("discard without --study succeeded")
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, _ = gateway.ReadStatus(spool)
		if len(st.Parked.Studies) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parked after discarding B: %+v", st.Parked)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Parked.Studies[0].StudyInstanceUID != study["C"] || st.Parked.Instances != 2 {
		t.Errorf("parked after discarding B: %+v, want C's 2", st.Parked)
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "objects", "*.dcm")); len(files) != 2 {
		t.Errorf("the spool holds %d files, want C's 2", len(files))
	}
	log, _ := os.ReadFile(filepath.Join(spool, "audit.log"))
	for _, want := range []string{`"action":"park"`, `"action":"retry"`, `"action":"discard"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the spool's audit.log has no %s:\n%s", want, log)
		}
	}

	// With no gateway running, the commands act on the spool themselves.
	gw.kill()
	cli.Reset()
	if code := Main(context.Background(), []string{"gateway", "retry", "--spool", spool, "--all"}, &cli, &cli); code != 0 ||
		!strings.Contains(cli.String(), "no gateway runs with this spool") {
		t.Errorf("renkei gateway retry --all with the gateway stopped (exit %d):\n%s", code, cli.String())
	}
	if st, err := gateway.ReadStatus(spool); err != nil || st.Parked.Instances != 0 || st.Queue.Instances != 2 {
		t.Errorf("after retry --all: %d parked, %d waiting (%v); want 0 and 2", st.Parked.Instances, st.Queue.Instances, err)
	}
}
