package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"renkei/internal/dicomtest"
	"renkei/internal/s3test"
	"renkei/sqlstore/pgtest"
)

// region is a regional archive on a private PostgreSQL database and a real S3 bucket, whose nodes are the real
// binary: several `renkei serve --db postgres://… --blobs s3://…` processes sharing one data folder (the audit key).
type region struct {
	t      *testing.T
	bin    string
	db     string
	blobs  string
	data   string
	env    []string
	token  string // a read-write API token of test-clinic
	logDir string
	gen    string
}

func newRegion(t *testing.T) *region {
	t.Helper()
	work := t.TempDir()
	s3 := s3test.Start(t)
	r := &region{
		t:      t,
		bin:    buildRenkei(t, work),
		db:     pgtest.URL(t),
		blobs:  s3.BlobsURL(s3.Bucket(t), "region-a"),
		data:   filepath.Join(work, "data"),
		logDir: work,
		gen:    filepath.Join(work, "gen"),
	}
	if err := os.MkdirAll(r.gen, 0o750); err != nil {
		t.Fatal(err)
	}
	r.env = append(append(os.Environ(), "RENKEI_DEMO=false"), s3.Env(filepath.Join(work, "no-such-file"))...)
	var out bytes.Buffer
	for _, args := range [][]string{
		{"admin", "institution", "add", "test-clinic", "--name", "試験クリニック", "--kind", "clinic"},
		{"admin", "token", "add", "test-client", "--institution", "test-clinic", "--write"},
	} {
		out.Reset()
		if code := Main(context.Background(), append(args, "--data", r.data, "--db", r.db), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("token add printed no token: %s", out.String())
	}
	r.token = m[1]
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(r.logDir, "node-*.log"))
			for _, l := range logs {
				t.Logf("last lines of %s:\n%s", filepath.Base(l), tail(l, 30))
			}
		}
	})
	return r
}

// node starts one `renkei serve` process and waits for its /healthz. dimse are its DIMSE flags (default: off).
func (r *region) node(name string, dimse ...string) *crashServer {
	t := r.t
	t.Helper()
	addr := freeAddr(t)
	logPath := filepath.Join(r.logDir, "node-"+name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	s := &crashServer{addr: addr, url: "http://" + addr + "/dicomweb", log: log, exited: make(chan struct{}),
		http: &http.Client{Transport: bearer{r.token, &http.Transport{}}, Timeout: time.Minute}}
	if len(dimse) == 0 {
		dimse = []string{"--dimse", "off"}
	}
	s.cmd = exec.Command(r.bin, append([]string{"serve", "--data", r.data, "--db", r.db, "--blobs", r.blobs, "--http", addr,
		"--log-level", "warn"}, dimse...)...)
	s.cmd.Stdout, s.cmd.Stderr, s.cmd.Env = log, log, r.env
	if err := s.cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start node %s: %v", name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		log.Close()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	if err := s.waitHealthy(); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return s
}

// nodeProxy is a tiny round-robin HTTP proxy in front of the nodes, as a load balancer would be: each request goes
// to the next node; a node that refuses the connection is skipped from then on and the request goes to another.
// Any other failure (a node killed while it handled the request) reaches the client as 502, whose outcome the
// client does not know.
type nodeProxy struct {
	url   string
	nodes []string // host:port
	dead  []atomic.Bool
	next  atomic.Uint64
	tr    *http.Transport
}

func newNodeProxy(t *testing.T, nodes ...*crashServer) *nodeProxy {
	t.Helper()
	p := &nodeProxy{dead: make([]atomic.Bool, len(nodes)), tr: &http.Transport{MaxIdleConnsPerHost: 8}}
	for _, n := range nodes {
		p.nodes = append(p.nodes, n.addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *nodeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first := int(p.next.Add(1))
	for i := range len(p.nodes) {
		n := (first + i) % len(p.nodes)
		if p.dead[n].Load() {
			continue
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.nodes[n]+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := p.tr.RoundTrip(req)
		if errors.Is(err, syscall.ECONNREFUSED) {
			p.dead[n].Store(true)
			continue
		}
		if err != nil {
			http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "proxy: no node left", http.StatusServiceUnavailable)
}

// regionLedger records every instance the clients sent, by SOP Instance UID, and which were acknowledged.
type regionLedger struct {
	mu    sync.Mutex
	sent  map[string]*sentInstance
	acked map[string]bool
}

func newRegionLedger() *regionLedger {
	return &regionLedger{sent: map[string]*sentInstance{}, acked: map[string]bool{}}
}

func (l *regionLedger) send(in *sentInstance) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[in.sop] = in
}

func (l *regionLedger) ack(batch []*sentInstance) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, in := range batch {
		l.acked[in.sop] = true
	}
}

func (l *regionLedger) isAcked(sop string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[sop]
}

func (l *regionLedger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// ackedIn returns the acknowledged instances of study.
func (l *regionLedger) ackedIn(study string) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for sop := range l.acked {
		if l.sent[sop].study == study {
			out[sop] = true
		}
	}
	return out
}

// regionClient is one STOW-RS sender, with its own patient, study and series.
type regionClient struct {
	r      *region
	id     int
	url    string // the DICOMweb base it posts to
	http   *http.Client
	ledger *regionLedger
	seq    int
	prefix string
	failed atomic.Int64 // requests not acknowledged, counted as they fail
}

func (r *region) client(id int, base, prefix string, ledger *regionLedger) *regionClient {
	return &regionClient{r: r, id: id, url: base, ledger: ledger, prefix: prefix,
		http: &http.Client{Transport: bearer{r.token, &http.Transport{}}, Timeout: 90 * time.Second}}
}

func (cl *regionClient) study() string {
	return dicomtest.UID(fmt.Sprintf("%s/study/%d", cl.prefix, cl.id))
}

// batch makes n new instances.
func (cl *regionClient) batch(n int) ([]*sentInstance, error) {
	var out []*sentInstance
	for range n {
		cl.seq++
		in := &sentInstance{
			sop:    dicomtest.UID(fmt.Sprintf("%s/%d/%d/sop", cl.prefix, cl.id, cl.seq)),
			study:  cl.study(),
			series: dicomtest.UID(fmt.Sprintf("%s/series/%d", cl.prefix, cl.id)),
			client: cl.id,
		}
		path := filepath.Join(cl.r.gen, fmt.Sprintf("%s-%d.dcm", cl.prefix, cl.id))
		if err := dicomtest.CT(path, dicomtest.CTOptions{
			StudyInstanceUID: in.study, SeriesInstanceUID: in.series, SOPInstanceUID: in.sop,
			PatientID: fmt.Sprintf("NODES%d", cl.id), PatientName: fmt.Sprintf("Nodes^Client%d", cl.id),
			Rows: 32, Cols: 32, InstanceNumber: cl.seq, Seed: int64(cl.seq*10 + cl.id),
		}); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		in.bytes, in.sha = b, sha256.Sum256(b)
		cl.ledger.send(in)
		out = append(out, in)
	}
	return out, nil
}

// stowResult is how one STOW-RS request ended.
type stowResult struct {
	status         int // 0: no response (a transport error)
	contentType    string
	body           string
	failureReasons []int // of FailedSOPSequence, in a 202
	err            error
}

func (r stowResult) String() string {
	if r.status == 0 {
		return fmt.Sprintf("no response: %v", r.err)
	}
	return fmt.Sprintf("%d %s (%v): %.300s", r.status, r.contentType, r.err, r.body)
}

// post sends batch once and records the instances acknowledged; acked reports that all were. A 202 (PS3.18
// 10.5.3: some stored, some failed) acknowledges those in ReferencedSOPSequence.
func (cl *regionClient) post(batch []*sentInstance) (acked bool, res stowResult) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, in := range batch {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(in.bytes)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, cl.url+"/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := cl.http.Do(req)
	if err != nil {
		return false, stowResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	res = stowResult{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b), err: err}
	if err != nil || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return false, res
	}
	var m map[string]dicomJSON
	if err := json.Unmarshal(b, &m); err != nil {
		res.err = fmt.Errorf("%d with a body that is not DICOM JSON: %v", resp.StatusCode, err)
		return false, res
	}
	listed := map[string]bool{}
	for _, item := range m["00081199"].items() {
		listed[item["00081155"].str()] = true
	}
	for _, item := range m["00081198"].items() {
		n, _ := item["00081197"].num()
		res.failureReasons = append(res.failureReasons, n)
	}
	var ok []*sentInstance
	for _, in := range batch {
		if listed[in.sop] {
			ok = append(ok, in)
		}
	}
	cl.ledger.ack(ok)
	if len(ok) < len(batch) {
		if resp.StatusCode == http.StatusOK {
			res.err = fmt.Errorf("200 without every instance in ReferencedSOPSequence")
		}
		return false, res
	}
	return true, res
}

// send posts batch until every instance is acknowledged, at most tries times a moment apart, each time with the
// instances not yet acknowledged, and returns the failures seen. A 4xx answer ends it: every instance sent is valid.
func (cl *regionClient) send(batch []*sentInstance, tries int) (failures []stowResult, err error) {
	for range tries {
		ok, res := cl.post(batch)
		if ok {
			return failures, nil
		}
		failures = append(failures, res)
		cl.failed.Add(1)
		if res.status != 0 && res.status < 500 && res.status != http.StatusAccepted {
			return failures, fmt.Errorf("client %d: STOW-RS of %s refused: %v", cl.id, sops(batch), res)
		}
		batch = slices.DeleteFunc(batch, func(in *sentInstance) bool { return cl.ledger.isAcked(in.sop) })
		time.Sleep(250 * time.Millisecond)
	}
	return failures, fmt.Errorf("client %d: %s not acknowledged after %d tries; last: %v", cl.id, sops(batch), tries, failures[len(failures)-1])
}

// checkStored checks, on node s, that every instance the clients sent is stored once and only once, byte for byte:
// QIDO-RS lists each of a study's SOP Instance UIDs once, WADO-RS of the study returns exactly the bytes sent, the
// index holds one row per SOP Instance UID and institution, and the audit chain verifies. Every instance sent is
// expected, acknowledged or not, since the clients resent each until it was acknowledged.
func (r *region) checkStored(s *crashServer, l *regionLedger, studies []string) {
	t := r.t
	t.Helper()
	l.mu.Lock()
	want := map[string]map[[sha256.Size]byte]string{} // study → SHA-256 → SOP Instance UID
	for sop, in := range l.sent {
		if !l.acked[sop] {
			t.Errorf("instance %s was never acknowledged", sop)
		}
		if want[in.study] == nil {
			want[in.study] = map[[sha256.Size]byte]string{}
		}
		want[in.study][in.sha] = sop
	}
	l.mu.Unlock()
	for _, study := range studies {
		var list []map[string]dicomJSON
		if err := s.getJSON(s.url+"/studies/"+study+"/instances", &list); err != nil {
			t.Fatalf("QIDO-RS of study %s on %s: %v", study, s.addr, err)
		}
		seen := map[string]int{}
		for _, it := range list {
			seen[it["00080018"].str()]++
		}
		for sop, n := range seen {
			if n != 1 {
				t.Errorf("study %s on %s: %s listed %d times", study, s.addr, sop, n)
			}
		}
		if len(seen) != len(want[study]) {
			t.Errorf("study %s on %s: %d instances listed, %d sent", study, s.addr, len(seen), len(want[study]))
		}
		parts, err := s.retrieve(s.url + "/studies/" + study)
		if err != nil {
			t.Fatalf("WADO-RS of study %s on %s: %v", study, s.addr, err)
		}
		got := map[[sha256.Size]byte]bool{}
		for _, p := range parts {
			sum := sha256.Sum256(p)
			if _, ok := want[study][sum]; !ok {
				t.Errorf("study %s on %s: WADO-RS returned %d bytes that no client sent", study, s.addr, len(p))
			}
			got[sum] = true
		}
		for sum, sop := range want[study] {
			if !got[sum] {
				t.Errorf("study %s on %s: %s is not returned byte for byte", study, s.addr, sop)
			}
		}
		if len(parts) != len(want[study]) {
			t.Errorf("study %s on %s: WADO-RS returned %d instances, %d sent", study, s.addr, len(parts), len(want[study]))
		}
	}
	pg, err := sql.Open("pgx", r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	var dups int
	if err := pg.QueryRow(`SELECT count(*) FROM (SELECT 1 FROM instances GROUP BY institution_pk, sop_uid HAVING count(*) > 1) d`).Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d SOP Instance UIDs are indexed more than once in one institution", dups)
	}
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "audit", "verify", "--data", r.data, "--db", r.db}, &out, &out); code != 0 || !strings.Contains(out.String(), "intact") {
		t.Errorf("audit verify: exit %d: %s", code, out.String())
	}
}

// errorList collects the errors of concurrent clients.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (e *errorList) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *errorList) any() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs) > 0
}

func (e *errorList) report(t *testing.T) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, err := range e.errs {
		if i == 20 {
			t.Errorf("… and %d more", len(e.errs)-i)
			break
		}
		t.Error(err)
	}
	if len(e.errs) > 0 {
		t.FailNow()
	}
}

// TestNodesKill runs three `renkei serve --db postgres://… --blobs s3://…` processes behind a round-robin proxy.
// Three clients ingest over STOW-RS through the proxy while a querier asks node C directly (QIDO-RS) and finds every
// instance acknowledged before its query, whichever node took it; node B is killed with SIGKILL in the middle.
// Clients resend what was not acknowledged (the proxy takes it to another node) and succeed; afterwards every
// instance is stored once, byte for byte, in PostgreSQL and S3 as both survivors see it, and the audit chain
// verifies.
func TestNodesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three nodes; skipped with -short")
	}
	r := newRegion(t)
	a := r.node("a") // the first node creates the tables; the others find them
	b, c := r.node("b"), r.node("c")
	proxy := newNodeProxy(t, a, b, c)

	const clients, perClient, killAfter = 3, 30, 25 // instances; the kill comes after killAfter acknowledgements
	l := newRegionLedger()
	var errs errorList
	var wg sync.WaitGroup
	var resent atomic.Int64
	var studies []string
	for i := range clients {
		cl := r.client(i, proxy.url+"/dicomweb", "nodes", l)
		studies = append(studies, cl.study())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cl.seq < perClient {
				batch, err := cl.batch(1 + cl.seq%3)
				if err != nil {
					errs.add(err)
					return
				}
				failed, err := cl.send(batch, 20)
				resent.Add(int64(len(failed)))
				for _, f := range failed {
					// What the kill may cause: the proxy's 502 for a request cut off. Not a 5xx from a live node.
					if f.status != http.StatusBadGateway || !strings.HasPrefix(f.body, "proxy: ") {
						errs.add(fmt.Errorf("client %d: a failure the kill does not explain: %v", cl.id, f))
					}
				}
				if err != nil {
					errs.add(err)
					return
				}
			}
		}()
	}
	// The querier: node C lists what was acknowledged before each query, wherever it was stored.
	stop := make(chan struct{})
	var queries atomic.Int64
	var qwg sync.WaitGroup
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, study := range studies {
				before := l.ackedIn(study)
				var list []map[string]dicomJSON
				if err := c.getJSON(c.url+"/studies/"+study+"/instances", &list); err != nil {
					if len(before) == 0 && (strings.Contains(err.Error(), "status 404") || strings.Contains(err.Error(), "status 204")) {
						continue // the study is not there yet
					}
					errs.add(fmt.Errorf("QIDO-RS on node C: %v", err))
					return
				}
				for _, it := range list {
					delete(before, it["00080018"].str())
				}
				if len(before) > 0 {
					errs.add(fmt.Errorf("QIDO-RS on node C does not list %d acknowledged instances of %s", len(before), study))
					return
				}
				queries.Add(1)
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for l.ackedCount() < killAfter && time.Now().Before(deadline) && !errs.any() {
		time.Sleep(10 * time.Millisecond)
	}
	b.kill()
	t.Logf("node B killed after %d acknowledged instances", l.ackedCount())
	wg.Wait()
	close(stop)
	qwg.Wait()
	errs.report(t)
	t.Logf("%d instances acknowledged, %d failed requests resent, %d queries on node C", l.ackedCount(), resent.Load(), queries.Load())
	if !proxy.dead[1].Load() {
		t.Errorf("the proxy never found node B refusing connections: no client sent to it after the kill")
	}
	r.checkStored(a, l, studies)
	r.checkStored(c, l, studies)
}

// TestNodesPostgresRestart restarts PostgreSQL (a fast shutdown, then a start on the same port) under a running
// region of two nodes, with a client sending to each all along. While it is down, STOW-RS, QIDO-RS and WADO-RS on
// each node answer promptly with a 5xx problem+json, a modality's C-STORE gets a failure status, and the clients
// see nothing else. Once it is back the same processes, not restarted, store (over STOW-RS and C-STORE), list and
// return instances again, their listeners are back on PostgreSQL, and nothing acknowledged was lost or stored twice.
func TestNodesPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and restarts PostgreSQL; skipped with -short")
	}
	if _, err := exec.LookPath("storescu"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dcmtk's storescu is not installed (scripts/setup installs dcmtk)")
		}
		t.Skip("dcmtk's storescu is not installed")
	}
	r := newRegion(t)
	dimseAddr := freeAddr(t)
	_, dimsePort, _ := net.SplitHostPort(dimseAddr)
	nodes := []*crashServer{
		r.node("a", "--dimse", dimseAddr, "--dimse-accept-any", "--dimse-any-institution", "test-clinic"),
		r.node("b"),
	}
	l := newRegionLedger()
	var studies []string
	var clients []*regionClient
	for i, n := range nodes {
		cl := r.client(i, n.url, "pgrestart", l)
		clients = append(clients, cl)
		studies = append(studies, cl.study())
	}
	var errs errorList
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch, err := cl.batch(1 + cl.seq%2)
				if err != nil {
					errs.add(err)
					return
				}
				failed, err := cl.send(batch, 400) // 100 s: the outage, and the time to come back, on a slow machine
				for _, f := range failed {
					if !cleanFailure(f) {
						errs.add(fmt.Errorf("client %d, during the outage: %v", cl.id, f))
					}
				}
				if err != nil {
					errs.add(err)
					return
				}
			}
		}()
	}
	for l.ackedCount() < 10 && !errs.any() {
		time.Sleep(10 * time.Millisecond)
	}

	// storescu sends one file to node A and returns its output; it must end by itself (a minute is a hang).
	storescu := func(path string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "storescu", "-v", "-aet", "MODALITY", "-aec", "RENKEI", "127.0.0.1", dimsePort, path)
		out, _ := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Errorf("storescu to node A did not end within a minute: %s", out)
		}
		return string(out)
	}
	dimseFile := func(cl *regionClient) (*sentInstance, string) {
		batch, err := cl.batch(1)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(r.gen, cl.prefix+"-dimse.dcm")
		if err := os.WriteFile(path, batch[0].bytes, 0o640); err != nil {
			t.Fatal(err)
		}
		return batch[0], path
	}

	probes := 0
	pgtest.Restart(t, func() {
		// PostgreSQL is down: each node answers each kind of request, promptly, with a clean failure.
		down := r.client(9, "", "pgrestart-down", newRegionLedger())
		for i, n := range nodes {
			batch, err := down.batch(1)
			if err != nil {
				t.Fatal(err)
			}
			down.url = n.url
			if ok, res := down.post(batch); ok || !cleanFailure(res) {
				t.Errorf("node %d: STOW-RS while PostgreSQL is down: %v", i, res)
			}
			for _, u := range []string{n.url + "/studies?PatientID=NODES0", n.url + "/studies/" + studies[0]} {
				if res := get(n.http, u); !cleanFailure(res) {
					t.Errorf("node %d: GET %s while PostgreSQL is down: %v", i, u, res)
				}
				probes++
			}
			// The load balancer's readiness check takes the node out while its database is gone.
			if res := get(n.http, strings.TrimSuffix(n.url, "/dicomweb")+"/readyz"); res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "index") {
				t.Errorf("node %d: /readyz while PostgreSQL is down: %d %s, want 503 naming the index", i, res.status, res.body)
			}
			probes++
		}
		_, path := dimseFile(down)
		out := storescu(path)
		t.Logf("C-STORE while PostgreSQL is down:\n%s", tailString(out, 4))
		if strings.Contains(out, "Received Store Response (Success)") ||
			!strings.Contains(out, "Received Store Response") && !strings.Contains(out, "Association Rejected") {
			t.Errorf("C-STORE to node A while PostgreSQL is down: want a failure status or a rejected association:\n%s", tailString(out, 15))
		}
		probes++
		// Stay down until each client has had a request fail: the outage happens under load.
		deadline := time.Now().Add(time.Minute)
		for clients[0].failed.Load() == 0 || clients[1].failed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Errorf("a minute into the outage, the clients' requests have not failed (%d, %d)", clients[0].failed.Load(), clients[1].failed.Load())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Logf("PostgreSQL restarted; %d probes answered while it was down, the clients' %d and %d failed requests resent",
		probes, clients[0].failed.Load(), clients[1].failed.Load())
	for i, n := range nodes {
		for deadline := time.Now().Add(30 * time.Second); ; {
			res := get(n.http, strings.TrimSuffix(n.url, "/dicomweb")+"/readyz")
			if res.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("node %d: /readyz 30 s after PostgreSQL came back: %d %s", i, res.status, res.body)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Back up: each client gets three more instances acknowledged by its node, the same process.
	want := make([]int, len(clients))
	for i := range clients {
		want[i] = len(l.ackedIn(studies[i])) + 3
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < len(clients) && !errs.any(); {
		if len(l.ackedIn(studies[i])) >= want[i] {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Errorf("client %d: no new instance acknowledged two minutes after PostgreSQL came back", i)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	errs.report(t)
	// And C-STORE again, into a study of its own. (renkei keeps the data set it received with its own file meta
	// information, so these bytes are not the file's: the instance is checked by QIDO-RS, below.)
	dimseClient := r.client(2, "", "pgrestart-dimse", newRegionLedger())
	in, path := dimseFile(dimseClient)
	if out := storescu(path); !strings.Contains(out, "Received Store Response (Success)") {
		t.Fatalf("C-STORE to node A after PostgreSQL came back:\n%s", tailString(out, 15))
	}
	for i, n := range nodes {
		select {
		case <-n.exited:
			t.Fatalf("node %d exited: %v", i, n.err)
		default:
		}
	}
	// The nodes' listeners (LISTEN/NOTIFY between nodes) are back.
	pg, err := sql.Open("pgx", r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	for deadline := time.Now().Add(time.Minute); ; {
		var listeners int
		err := pg.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'renkei listen %'`).Scan(&listeners)
		if err == nil && listeners == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes listen on PostgreSQL again a minute after its restart (%v)", listeners, len(nodes), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d instances acknowledged", l.ackedCount())
	for _, n := range nodes {
		r.checkStored(n, l, studies)
		var list []map[string]dicomJSON
		if err := n.getJSON(n.url+"/studies/"+in.study+"/instances", &list); err != nil || len(list) != 1 || list[0]["00080018"].str() != in.sop {
			t.Errorf("the instance stored over C-STORE, as %s lists it: %v %v", n.addr, list, err)
		}
	}
}

// cleanFailure reports whether a request failed as it must when the index is away: a response (not a hang, not a
// dropped connection), either 5xx with an RFC 9457 problem+json body, or a STOW-RS 202 that stored some instances
// and failed the others with 0xA700, out of resources (PS3.18 Table 10.5.3-2), to be resent.
func cleanFailure(res stowResult) bool {
	if res.status == http.StatusAccepted && len(res.failureReasons) > 0 {
		return !slices.ContainsFunc(res.failureReasons, func(r int) bool { return r != 0xA700 })
	}
	return res.status >= 500 && strings.HasPrefix(res.contentType, "application/problem+json") && json.Valid([]byte(res.body))
}

// get sends a GET and returns how it ended.
func get(c *http.Client, u string) stowResult {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/dicom+json")
	if strings.Contains(u, "/studies/") {
		req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	}
	resp, err := c.Do(req)
	if err != nil {
		return stowResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return stowResult{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b), err: err}
}
