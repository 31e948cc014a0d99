package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"renkei"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// TestCrash drives the real binary the way a modality does and pulls the plug on it: 4 STOW-RS clients post small
// CT instances while the server is killed with SIGKILL at a random moment, then the server is restarted on the same
// data folder and checked (see crashCheck): an acknowledged instance survives whole, nothing is half present, and no
// partial blob is left outside blobs/tmp. Each kill is one round; the next round's clients first resend what was in
// flight at the kill, as a modality retries.
//
// RENKEI_CRASH_KILLS sets the number of kills (default 20; 200 for the long run), RENKEI_CRASH_SEED the seed that
// picks the kill delays and the requests (logged, so a failure can be replayed; thread timing is not replayed).
func TestCrash(t *testing.T) { runCrash(t, false, 20) }

// runCrash is TestCrash, with the clients sending by C-STORE (TestCrashDIMSE) or STOW-RS, and kills the default
// number of kills.
func runCrash(t *testing.T, dimse bool, kills int) {
	if testing.Short() {
		t.Skip("crash test builds and kills the real binary; skipped with -short")
	}
	if v := os.Getenv("RENKEI_CRASH_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RENKEI_CRASH_KILLS=%q: want a positive number of kills", v)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RENKEI_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RENKEI_CRASH_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("seed %d, %d kills (replay: RENKEI_CRASH_SEED=%d RENKEI_CRASH_KILLS=%d go test ./cmd/renkei -run '%s$' -v)", seed, kills, seed, kills, t.Name())

	work := t.TempDir()
	c := &crashRun{
		t:       t,
		seed:    seed,
		bin:     buildRenkei(t, work),
		data:    filepath.Join(work, "data"),
		gen:     filepath.Join(work, "gen"),
		logPath: filepath.Join(work, "server.log"),
		ledger:  newLedger(),
		blobs:   map[string]bool{},
		dimse:   dimse,
		reads:   map[string]map[int]bool{},
	}
	if err := os.MkdirAll(c.gen, 0o750); err != nil {
		t.Fatal(err)
	}
	c.token = provisionToken(t, c.data)
	if dimse {
		var out bytes.Buffer
		if code := Main(context.Background(), []string{"admin", "ae", "add", crashAE, "--host", "127.0.0.1", "--institution", "test-clinic",
			"--data", c.data}, &out, &out); code != 0 {
			t.Fatalf("ae add: %s", out.String())
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; last lines of the server log:\n%s", seed, tail(c.logPath, 40))
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0))
	start := time.Now()
	for k := 1; k <= kills; k++ {
		c.round(k, rng)
		if t.Failed() {
			t.Fatalf("stopping after kill %d of %d (seed %d)", k, kills, seed)
		}
	}
	el := time.Since(start)
	c.checkReadsAudited()
	l := c.ledger
	t.Logf("%d kills in %v (%v per kill, build not included); %d requests, %d instances sent, %d acknowledged and checked after every later kill, %d acknowledgements of a resent instance",
		kills, el.Round(time.Millisecond), (el / time.Duration(kills)).Round(time.Millisecond), l.requests, len(l.sent), len(l.acked), l.reacks)
}

// buildRenkei builds this package's binary into dir once.
func buildRenkei(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "renkei")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// crashRun is the state of one TestCrash run.
type crashRun struct {
	t       *testing.T
	seed    uint64
	bin     string
	data    string
	token   string // a read-write API token of the institution the clients send for
	gen     string // where the instances are generated
	logPath string
	ledger  *ledger
	srv     *crashServer    // the running server, started by the previous round's check
	blobs   map[string]bool // blob files whose SHA-256 was checked
	// dimse makes the clients modalities: each batch goes by dcmtk's storescu (C-STORE) instead of STOW-RS.
	dimse bool

	// leftovers are the new instances of requests in flight at the last kill, per client, resent first.
	leftovers [crashClients][]*sentInstance

	readsMu sync.Mutex
	reads   map[string]map[int]bool // study → the rounds in which a read of its metadata was answered
	nreads  int                     // answered reads
}

const (
	crashClients  = 4
	crashMaxDelay = 400 * time.Millisecond
)

// round runs load on the server, kills it, restarts it and checks the data folder. One round in eight instead kills
// a server that is still opening the data folder (migrations, tmp cleanup), before it answers /healthz.
func (c *crashRun) round(k int, rng *rand.Rand) {
	t := c.t
	early := c.srv == nil && (k > 1 || rng.IntN(2) == 0)
	if c.srv == nil {
		c.srv = c.start(k)
	}
	var delay time.Duration
	var stats roundStats
	if early {
		delay = time.Duration(rng.Int64N(int64(20 * time.Millisecond)))
		time.Sleep(delay)
		c.srv.kill()
	} else {
		if err := c.srv.waitHealthy(); err != nil {
			t.Errorf("kill %d (seed %d): %v", k, c.seed, err)
			c.srv.kill()
			return
		}
		delay = time.Duration(rng.Int64N(int64(crashMaxDelay)))
		stats = c.load(k, rng.Uint64(), delay)
	}
	c.srv = c.start(k + 1)
	if err := c.srv.waitHealthy(); err != nil {
		t.Errorf("kill %d (seed %d): restart after the kill: %v", k, c.seed, err)
		return
	}
	when := fmt.Sprintf("under load after %v", delay.Round(time.Millisecond))
	if early {
		when = fmt.Sprintf("%v after exec, before /healthz", delay.Round(time.Microsecond))
	}
	checkStart := time.Now()
	checked := c.check(k)
	t.Logf("kill %d %s: %d requests, %d instances acknowledged (%d resent), %d in flight; checked %d acknowledged, %d listed, %d unused blobs in %v",
		k, when, stats.requests, stats.acked, stats.resent, stats.inflight, checked.acked, checked.listed, checked.orphans, time.Since(checkStart).Round(time.Millisecond))
	if rng.IntN(8) == 0 {
		// The next round kills its server early; this one goes down idle (also a kill, and an easy one).
		c.srv.kill()
		c.srv = nil
	}
}

type roundStats struct{ requests, acked, resent, inflight int }

// load runs the clients against c.srv and kills it after delay.
func (c *crashRun) load(k int, seed uint64, delay time.Duration) roundStats {
	srv := c.srv
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: crashClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: bearer{c.token, tr}, Timeout: 30 * time.Second}
	var killed atomic.Bool
	var wg sync.WaitGroup
	stats := make([]roundStats, crashClients)
	for i := range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &crashClient{run: c, k: k, id: i, rng: rand.New(rand.NewPCG(seed, uint64(i))), http: client, url: srv.url, killed: &killed, stats: &stats[i]}
			cl.loop(ctx)
		}()
	}
	time.Sleep(delay)
	killed.Store(true)
	if k%2 == 0 {
		// Every other round ends with reads alone: the senders stop (what they have in flight is answered), a
		// viewer reads for 150 ms, and then the kill. Without stored instances, whose transactions take the
		// waiting audit events with them, those reads' events are only in the audit journal at the kill.
		cancel()
		wg.Wait()
		rctx, rcancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		c.readLoop(rctx, k, seed, client, srv.url)
		rcancel()
	}
	srv.kill()
	cancel()
	wg.Wait()
	var sum roundStats
	for _, s := range stats {
		sum.requests += s.requests
		sum.acked += s.acked
		sum.resent += s.resent
		sum.inflight += s.inflight
	}
	return sum
}

// readLoop reads the metadata of acknowledged studies until ctx ends, as a viewer does, and notes each read
// answered: its audit event was recorded before the first byte of the answer, so it must survive the kill
// (checkReadsAudited). Each server process records a study's read once per caller (the dedup window), so a study
// read in n rounds has at least n read events.
func (c *crashRun) readLoop(ctx context.Context, k int, seed uint64, client *http.Client, url string) {
	rng := rand.New(rand.NewPCG(seed, crashClients))
	for ctx.Err() == nil {
		in := c.ledger.pickAcked(rng)
		if in == nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		req, err := http.NewRequestWithContext(ctx, "GET", url+"/studies/"+in.study+"/metadata", nil)
		if err != nil {
			c.t.Error(err)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.t.Errorf("kill %d (seed %d): reader: %v", k, c.seed, err)
			}
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			c.readsMu.Lock()
			if c.reads[in.study] == nil {
				c.reads[in.study] = map[int]bool{}
			}
			c.reads[in.study][k] = true
			c.nreads++
			c.readsMu.Unlock()
		default:
			c.t.Errorf("kill %d (seed %d): reader: metadata of acknowledged study %s: %s %s", k, c.seed, in.study, resp.Status, body)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkReadsAudited stops the server (a last kill) and checks the audit trail: renkei admin audit verify finds it
// intact, and every study has a read event for each round in which a read of it was answered.
func (c *crashRun) checkReadsAudited() {
	t := c.t
	if c.srv != nil {
		c.srv.kill()
		c.srv = nil
	}
	ctx := context.Background()
	var out bytes.Buffer
	if code := Main(ctx, []string{"admin", "audit", "verify", "--data", c.data}, &out, &out); code != 0 || !strings.Contains(out.String(), "intact") {
		t.Errorf("audit verify after the kills: exit %d\n%s", code, out.String())
	}
	db, err := sqlstore.Open(ctx, filepath.Join(c.data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.AuditEvents(ctx, renkei.AuditFilter{Action: renkei.ActionRead, Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]int{}
	for _, e := range evs {
		recorded[e.Study]++
	}
	c.readsMu.Lock()
	defer c.readsMu.Unlock()
	missing := 0
	for study, rounds := range c.reads {
		if recorded[study] < len(rounds) {
			missing++
			t.Errorf("study %s: its metadata was read and answered in %d rounds, but the audit trail has %d read events of it", study, len(rounds), recorded[study])
		}
	}
	t.Logf("%d reads answered across the kills, of %d studies; each has its audit event (%d read events recorded), the chain verifies", c.nreads, len(c.reads), len(evs))
}

// crashClient is one STOW-RS sender in one round.
type crashClient struct {
	run    *crashRun
	k, id  int
	rng    *rand.Rand
	http   *http.Client
	url    string
	killed *atomic.Bool
	stats  *roundStats
	seq    int
}

// loop posts requests until the server is killed. Client i sends to its own patient and, every 10 kills, to a new
// study, so studies grow across crashes; each round adds a series.
func (cl *crashClient) loop(ctx context.Context) {
	c := cl.run
	resend := c.leftovers[cl.id]
	c.leftovers[cl.id] = nil
	for ctx.Err() == nil {
		var batch []*sentInstance
		switch {
		case len(resend) > 0:
			n := min(len(resend), 5)
			batch, resend = resend[:n], resend[n:]
		default:
			for range 1 + cl.rng.IntN(5) {
				in, err := cl.generate()
				if err != nil {
					c.t.Errorf("kill %d: client %d: generate: %v", cl.k, cl.id, err)
					return
				}
				batch = append(batch, in)
			}
			// One request in four also repeats an instance acknowledged before, maybe by another client, maybe
			// before an earlier kill: the archive must acknowledge it again (a Duplicate), unchanged.
			if cl.rng.IntN(4) == 0 {
				if old := c.ledger.pickAcked(cl.rng); old != nil {
					batch = append(batch, old)
				}
			}
		}
		c.ledger.sending(batch)
		post := cl.post
		if c.dimse {
			post = cl.store
		}
		acked, err := post(batch)
		cl.stats.requests++
		// What the server answered success for is acknowledged, even in a batch the kill cut short (C-STORE answers
		// each instance on its own; STOW-RS answers nothing when cut).
		bySOP := map[string]*sentInstance{}
		for _, in := range batch {
			bySOP[in.sop] = in
		}
		if err != nil {
			for _, sop := range acked {
				if c.ledger.ack(bySOP[sop], cl.k, cl.id) {
					cl.stats.resent++
				}
			}
			cl.stats.acked += len(acked)
		}
		if err != nil {
			if cl.killed.Load() {
				// In flight at the kill: unknown outcome; resend the new instances in the next round.
				for _, in := range batch {
					if !c.ledger.isAcked(in.sop) {
						c.leftovers[cl.id] = append(c.leftovers[cl.id], in)
						cl.stats.inflight++
					}
				}
				c.leftovers[cl.id] = append(c.leftovers[cl.id], resend...)
				return
			}
			c.t.Errorf("kill %d (seed %d): client %d: %v", cl.k, c.seed, cl.id, err)
			return
		}
		for _, in := range batch {
			if c.ledger.ack(in, cl.k, cl.id) {
				cl.stats.resent++
			}
		}
		cl.stats.acked += len(acked)
	}
	c.leftovers[cl.id] = append(c.leftovers[cl.id], resend...)
}

// generate writes one new distinct CT instance and returns it.
func (cl *crashClient) generate() (*sentInstance, error) {
	cl.seq++
	name := fmt.Sprintf("crash/%d/%d/%d", cl.k, cl.id, cl.seq)
	size := 64
	if cl.rng.IntN(4) == 0 {
		size = 128
	}
	study := dicomtest.UID(fmt.Sprintf("crash/study/%d/%d", cl.id, (cl.k-1)/10))
	in := &sentInstance{
		sop:    dicomtest.UID(name + "/sop"),
		study:  study,
		series: dicomtest.UID(fmt.Sprintf("crash/series/%d/%d", cl.id, cl.k)),
		kill:   cl.k,
		client: cl.id,
	}
	path := filepath.Join(cl.run.gen, fmt.Sprintf("%d.dcm", cl.id))
	err := dicomtest.CT(path, dicomtest.CTOptions{
		StudyInstanceUID: in.study, SeriesInstanceUID: in.series, SOPInstanceUID: in.sop,
		PatientID: fmt.Sprintf("CRASH%d", cl.id), PatientName: fmt.Sprintf("Crash^Client%d", cl.id),
		Rows: size, Cols: size, InstanceNumber: cl.seq, Seed: int64(cl.k*100 + cl.id),
	})
	if err != nil {
		return nil, err
	}
	if in.bytes, err = os.ReadFile(path); err != nil {
		return nil, err
	}
	in.sha = cl.run.contentKey(in.bytes)
	return in, nil
}

// post sends one STOW-RS request. A transport error is returned as is; any complete response other than 200 listing
// every instance is an error too, since every instance sent is valid.
func (cl *crashClient) post(batch []*sentInstance) ([]string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, in := range batch {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			return nil, err
		}
		w.Write(in.bytes)
	}
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, cl.url+"/studies", &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := cl.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("STOW-RS of %s: status %d: %s", sops(batch), resp.StatusCode, b)
	}
	var res map[string]dicomJSON
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("STOW-RS of %s: status 200 with a body that is not DICOM JSON (%v): %s", sops(batch), err, b)
	}
	listed := map[string]bool{}
	for _, item := range res["00081199"].items() {
		listed[item["00081155"].str()] = true
	}
	var acked []string
	for _, in := range batch {
		if !listed[in.sop] {
			return nil, fmt.Errorf("STOW-RS of %s: status 200 without %s in ReferencedSOPSequence: %s", sops(batch), in.sop, b)
		}
		acked = append(acked, in.sop)
	}
	return acked, nil
}

func sops(batch []*sentInstance) string {
	s := make([]string, len(batch))
	for i, in := range batch {
		s[i] = in.sop
	}
	return "[" + strings.Join(s, " ") + "]"
}

// sentInstance is one instance as the clients sent it.
type sentInstance struct {
	sop, study, series string
	kill, client       int // the round and client that made it
	bytes              []byte
	sha                [sha256.Size]byte
}

// ledger records what was sent and what was acknowledged, across kills.
type ledger struct {
	mu       sync.Mutex
	sent     map[string]*sentInstance // by SOPInstanceUID
	bySHA    map[[sha256.Size]byte]*sentInstance
	acked    map[string]ackInfo
	ring     []*sentInstance // recent acknowledged instances with their bytes, to resend (bounded memory)
	next     int
	requests int
	reacks   int
}

type ackInfo struct{ kill, client int }

func newLedger() *ledger {
	return &ledger{sent: map[string]*sentInstance{}, bySHA: map[[sha256.Size]byte]*sentInstance{}, acked: map[string]ackInfo{}}
}

func (l *ledger) sending(batch []*sentInstance) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	for _, in := range batch {
		cp := *in
		cp.bytes = nil // the ledger keeps hashes; bytes stay with the ring and the clients
		l.sent[in.sop] = &cp
		l.bySHA[in.sha] = &cp
	}
}

// ack records an acknowledgement and reports whether the instance had been acknowledged before.
func (l *ledger) ack(in *sentInstance, kill, client int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.acked[in.sop]; ok {
		l.reacks++
		return true
	}
	l.acked[in.sop] = ackInfo{kill, client}
	if len(l.ring) < 256 {
		l.ring = append(l.ring, in)
	} else {
		l.ring[l.next] = in
		l.next = (l.next + 1) % len(l.ring)
	}
	return false
}

func (l *ledger) isAcked(sop string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.acked[sop]
	return ok
}

func (l *ledger) pickAcked(rng *rand.Rand) *sentInstance {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) == 0 {
		return nil
	}
	return l.ring[rng.IntN(len(l.ring))]
}

// crashServer is one `renkei serve` process.
type crashServer struct {
	cmd     *exec.Cmd
	addr    string
	dimse   string // host:port of its DICOM listener
	url     string
	log     *os.File
	http    *http.Client // for the checks: a hung server fails the test instead of hanging it
	exited  chan struct{}
	err     error // of Wait, once exited is closed
	healthy bool
}

// start starts `renkei serve` on the data folder and a free port, without waiting for it.
func (c *crashRun) start(run int) *crashServer {
	t := c.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dimseAddr := "127.0.0.1:0"
	if c.dimse {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dimseAddr = ln.Addr().String()
		ln.Close()
	}
	log, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "=== run %d (seed %d) on %s\n", run, c.seed, addr)
	s := &crashServer{addr: addr, dimse: dimseAddr, url: "http://" + addr + "/dicomweb", log: log, exited: make(chan struct{}), http: &http.Client{Transport: bearer{c.token, http.DefaultTransport}, Timeout: time.Minute}}
	s.cmd = exec.Command(c.bin, "serve", "--data", c.data, "--http", addr, "--dimse", dimseAddr, "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.Env = append(os.Environ(), "RENKEI_DEMO=false")
	if err := s.cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start renkei: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		log.Close()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	return s
}

// waitHealthy waits for GET /healthz to answer 200.
func (s *crashServer) waitHealthy() error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("renkei serve exited before answering /healthz: %v", s.err)
		default:
		}
		resp, err := s.http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.healthy = true
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("renkei serve did not answer /healthz within 20s")
}

// kill sends SIGKILL and reaps the process.
func (s *crashServer) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
