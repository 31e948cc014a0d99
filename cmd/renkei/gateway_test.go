package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/gateway"
	"renkei/internal/dicomtest"
)

// TestGateway runs the real binary twice, as renkei and as the hospital's gateway, with dcmtk's storescu as the
// modality, and checks the gateway's promise: nothing the modality was told is stored is lost, whatever happens to
// the line, the gateway's process or its disk.
func TestGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("gateway tests build and run the real binary; skipped with -short")
	}
	for _, tool := range []string{"storescu", "echoscu"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing: install Debian's dcmtk (scripts/setup does)", tool)
		}
	}
	work := t.TempDir()
	bin := buildRenkei(t, work)
	t.Run("line down", func(t *testing.T) { gatewayLineDown(t, bin) })
	t.Run("kills", func(t *testing.T) { gatewayKills(t, bin) })
	t.Run("disk full", func(t *testing.T) { gatewayDiskFull(t, bin) })
	t.Run("revoked token", func(t *testing.T) { gatewayRevoked(t, bin) })
	t.Run("parked", func(t *testing.T) { gatewayParkedRun(t, bin) })
	t.Run("storage commitment", func(t *testing.T) { gatewayCommitment(t, bin) })
	t.Run("deliver to PACS", func(t *testing.T) { gatewayDeliver(t, bin) })
	t.Run("fetch from PACS", func(t *testing.T) { gatewayFetch(t, bin) })
}

// gwEnv is a running renkei with one hospital and its gateway's token.
type gwEnv struct {
	t       *testing.T
	bin     string
	dir     string
	renkei  *crashServer
	token   string
	tokFile string
}

func newGWEnv(t *testing.T, bin string) *gwEnv {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	e := &gwEnv{t: t, bin: bin, dir: dir, token: provisionToken(t, data), tokFile: filepath.Join(dir, "token")}
	if err := os.WriteFile(e.tokFile, []byte(e.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &crashRun{t: t, bin: bin, data: data, token: e.token, logPath: filepath.Join(dir, "renkei.log")}
	e.renkei = c.start(0)
	if err := e.renkei.waitHealthy(); err != nil {
		t.Fatalf("%v\n%s", err, tail(c.logPath, 20))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("renkei's log:\n%s", tail(c.logPath, 30))
		}
	})
	return e
}

// proc is a gateway process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	stderr *bytes.Buffer
	mu     *sync.Mutex
}

func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// startGateway starts `renkei gateway` and waits until its DIMSE port answers C-ECHO (or the process exits).
func startGateway(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{exited: make(chan struct{}), stderr: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.cmd = exec.Command(bin, append([]string{"gateway", "--log-level", "info"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p.mu, p.stderr}, lockedWriter{p.mu, p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// waitDIMSE waits until addr accepts TCP connections or the process exits.
func (p *proc) waitDIMSE(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("the gateway exited: %v\n%s", p.err, p.output())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the gateway does not listen on %s:\n%s", addr, p.output())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// makeStudy writes n small CT instances of one study into dir and returns the study UID and the SHA-256 of each
// file's data set (what must arrive: the gateway writes its own File Meta Information, the data set is the
// modality's), by SOP Instance UID.
func makeStudy(t *testing.T, dir, name string, n int) (string, map[string][32]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	study := dicomtest.UID(name + "-study")
	series := dicomtest.UID(name + "-series")
	sums := map[string][32]byte{}
	for i := 1; i <= n; i++ {
		sop := dicomtest.UID(fmt.Sprintf("%s-%d", name, i))
		p := filepath.Join(dir, fmt.Sprintf("%s-%04d.dcm", name, i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop,
			PatientID: "GW-" + name, PatientName: "Gateway^Test=ゲートウェイ^テスト", Rows: 16, Cols: 16, InstanceNumber: i, Seed: int64(i)}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := dataSet(b)
		if err != nil {
			t.Fatal(err)
		}
		sums[sop] = sha256.Sum256(ds)
	}
	return study, sums
}

// dataSet returns what follows the preamble, "DICM" and the File Meta Information (group 0002, explicit VR little
// endian) of a Part 10 file.
func dataSet(b []byte) ([]byte, error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, errors.New("not a Part 10 file")
	}
	i := 132
	for i+8 <= len(b) && binary.LittleEndian.Uint16(b[i:]) == 0x0002 {
		vr := string(b[i+4 : i+6])
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			if i+12 > len(b) {
				return nil, errors.New("truncated meta")
			}
			i += 12 + int(binary.LittleEndian.Uint32(b[i+8:]))
		default:
			i += 8 + int(binary.LittleEndian.Uint16(b[i+6:]))
		}
	}
	if i > len(b) {
		return nil, errors.New("truncated meta")
	}
	return b[i:], nil
}

// stored returns, by SOP Instance UID, the SHA-256 of the data set of each instance renkei holds in the study.
func (e *gwEnv) stored(study string) map[string][32]byte {
	e.t.Helper()
	parts, err := e.renkei.retrieve(e.renkei.url + "/studies/" + study)
	if err != nil {
		if strings.Contains(err.Error(), "404") {
			return map[string][32]byte{}
		}
		e.t.Fatalf("WADO-RS study %s: %v", study, err)
	}
	out := map[string][32]byte{}
	sopRe := regexp.MustCompile(`^[0-9.]+$`)
	for _, p := range parts {
		ds, err := dataSet(p)
		if err != nil {
			e.t.Fatalf("renkei returned an instance that is not a Part 10 file: %v", err)
		}
		sop := metaString(p, 0x0003)
		if !sopRe.MatchString(sop) {
			e.t.Fatalf("no MediaStorageSOPInstanceUID in a retrieved instance: %q", sop)
		}
		if _, dup := out[sop]; dup {
			e.t.Errorf("renkei returned %s twice", sop)
		}
		out[sop] = sha256.Sum256(ds)
	}
	return out
}

// metaString returns a File Meta Information element's value (0002,eeee), trimmed.
func metaString(b []byte, elem uint16) string {
	i := 132
	for i+8 <= len(b) && binary.LittleEndian.Uint16(b[i:]) == 0x0002 {
		vr := string(b[i+4 : i+6])
		var n, hdr int
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			n, hdr = int(binary.LittleEndian.Uint32(b[i+8:])), 12
		default:
			n, hdr = int(binary.LittleEndian.Uint16(b[i+6:])), 8
		}
		if binary.LittleEndian.Uint16(b[i+2:]) == elem && i+hdr+n <= len(b) {
			return strings.TrimRight(string(b[i+hdr:i+hdr+n]), "\x00 ")
		}
		i += hdr + n
	}
	return ""
}

// waitEmpty waits until the gateway's spool holds nothing.
func waitEmpty(t *testing.T, p *proc, spool string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var st gateway.Status
	for time.Now().Before(deadline) {
		var err error
		if st, err = gateway.ReadStatus(spool); err == nil && st.Queue.Instances == 0 {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("the gateway exited with %d waiting: %v\n%s", st.Queue.Instances, p.err, p.output())
		default:
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %v the spool still holds %d instances: %+v\n%s", within, st.Queue.Instances, st.Failures, p.output())
}

// cutProxy is a TCP proxy between the gateway and renkei that the test can cut (the hospital's line goes down: every
// connection drops and new ones are refused) and restore.
type cutProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{addr: freeAddr(t), target: target, conns: map[net.Conn]bool{}}
	p.restore(t)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// gatewayLineDown: the modality sends a 500-instance study while the hospital's line to renkei is down; every
// C-STORE succeeds (the spool has them), the status says renkei cannot be reached and how much waits; when the line
// is back, all 500 reach renkei, byte-identical, once.
func gatewayLineDown(t *testing.T, bin string) {
	e := newGWEnv(t, bin)
	proxy := newCutProxy(t, e.renkei.addr)
	spool := filepath.Join(e.dir, "spool")
	dimseAddr, statusAddr := freeAddr(t), freeAddr(t)
	// gzip here (the other runs use the default, zstd): both encodings carry the 500 instances byte-identical.
	gw := startGateway(t, bin, "--server", "http://"+proxy.addr, "--token-file", e.tokFile, "--dimse", dimseAddr, "--ae", "GW_TEST",
		"--spool", spool, "--status", statusAddr, "--heartbeat", "1s", "--reserve-mb", "1", "--encoding", "gzip")
	gw.waitDIMSE(t, dimseAddr)
	proxy.cut()

	files := filepath.Join(e.dir, "modality")
	start := time.Now()
	study, sent := makeStudy(t, files, "linedown", 500)
	t.Logf("500 instances made in %v", time.Since(start).Round(time.Millisecond))
	host, port, _ := net.SplitHostPort(dimseAddr)
	start = time.Now()
	out, err := dcmtk("storescu", "-aet", "CT_ROOM1", "-aec", "GW_TEST", "+sd", "+r", host, port, files).CombinedOutput()
	if err != nil {
		t.Fatalf("storescu to the gateway while the line is down: %v\n%s", err, tailString(string(out), 20))
	}
	t.Logf("storescu sent 500 to the gateway in %v", time.Since(start).Round(time.Millisecond))
	// The local status page and `renkei gateway status` say what waits and that renkei cannot be reached.
	var page string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		page = httpGet(t, "http://"+statusAddr+"/")
		if strings.Contains(page, "500 件") && strings.Contains(page, "unreachable") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(page, "500 件") || !strings.Contains(page, "renkei に接続できません") {
		t.Errorf("the status page while the line is down does not say that 500 images wait and renkei cannot be reached:\n%s", page)
	}
	// The command reads the state the gateway saves every few seconds: it may say "starting" a moment longer.
	var cli bytes.Buffer
	var code int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cli.Reset()
		code = Main(context.Background(), []string{"gateway", "status", "--spool", spool}, &cli, &cli)
		if code == 0 && strings.Contains(cli.String(), "500 件 (1 検査") && strings.Contains(cli.String(), "unreachable") || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(cli.String(), "500 件 (1 検査") || !strings.Contains(cli.String(), "unreachable") {
		t.Errorf("renkei gateway status (exit %d):\n%s", code, cli.String())
	}
	if got := e.stored(study); len(got) != 0 {
		t.Fatalf("renkei holds %d instances although the line was down", len(got))
	}

	proxy.restore(t)
	start = time.Now()
	waitEmpty(t, gw, spool, 3*time.Minute)
	t.Logf("the spool emptied %v after the line came back", time.Since(start).Round(time.Millisecond))
	got := e.stored(study)
	if len(got) != len(sent) {
		t.Errorf("renkei holds %d instances of the study, want %d", len(got), len(sent))
	}
	for sop, sum := range sent {
		if g, ok := got[sop]; !ok {
			t.Errorf("%s did not arrive", sop)
		} else if g != sum {
			t.Errorf("%s arrived with other bytes than the modality sent", sop)
		}
	}
	// Everything the modality sent is attributed to the gateway's institution; the modality's AE is in the file.
	parts, err := e.renkei.retrieve(e.renkei.url + "/studies/" + study + "/series/" + dicomtest.UID("linedown-series") + "/instances/" + dicomtest.UID("linedown-1"))
	if err != nil || len(parts) != 1 || metaString(parts[0], 0x0016) != "CT_ROOM1" {
		t.Errorf("the stored file does not name the modality's AE title as its source: %v", err)
	}
	// The audit trail names the modality behind the gateway for each stored instance.
	idx, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "data", "index.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	var fromModality int
	if err := idx.QueryRow(`SELECT count(*) FROM audit_events WHERE action = 'store' AND detail LIKE '%from AE CT_ROOM1%'`).Scan(&fromModality); err != nil || fromModality != 500 {
		t.Errorf("%d store events name the modality CT_ROOM1, want 500 (%v)", fromModality, err)
	}
	if page := httpGet(t, "http://"+statusAddr+"/"); !strings.Contains(page, "すべて送信済みです") {
		t.Errorf("the status page after the line came back:\n%s", page)
	}
}

// dcmtk runs a dcmtk tool with TCP_NODELAY=1, which dcmtk reads to turn off Nagle's algorithm: without it each
// small C-STORE waits ~40 ms for a delayed ACK, as a modality configured that way would.
func dcmtk(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	return cmd
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// storescuAcks parses `storescu -v` output: the files whose C-STORE was answered Success.
func storescuAcks(out string) []string {
	var acked []string
	file := ""
	for _, l := range strings.Split(out, "\n") {
		if _, f, ok := strings.Cut(l, "Sending file: "); ok {
			file = strings.TrimSpace(f)
		}
		if strings.Contains(l, "Received Store Response (Success)") && file != "" {
			acked = append(acked, file)
			file = ""
		}
	}
	return acked
}

// gatewayKills SIGKILLs the gateway at random moments while the modality sends and while it uploads (20 times; set
// RENKEI_GATEWAY_KILLS=200 for the long run): every instance the modality got a success for reaches renkei, once.
func gatewayKills(t *testing.T, bin string) {
	kills := 20
	if v := os.Getenv("RENKEI_GATEWAY_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RENKEI_GATEWAY_KILLS=%q: want a positive number", v)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d, %d kills", seed, kills)
	e := newGWEnv(t, bin)
	spool := filepath.Join(e.dir, "spool")
	dimseAddr := freeAddr(t)
	host, port, _ := net.SplitHostPort(dimseAddr)
	// The gateway reaches renkei through a proxy: an upload round first fills the spool with the line cut, then
	// restores the line and kills the gateway while it uploads what waited.
	proxy := newCutProxy(t, e.renkei.addr)
	args := []string{"--server", "http://" + proxy.addr, "--token-file", e.tokFile, "--dimse", dimseAddr, "--ae", "GW_TEST",
		"--spool", spool, "--status", "off", "--heartbeat", "1s", "--reserve-mb", "1"}
	const perRound = 40          // about 100 ms of C-STOREs
	acked := map[string]string{} // SOP Instance UID → study
	sums := map[string][32]byte{}
	var studies []string
	for k := 0; k < kills; k++ {
		duringUpload := k%2 == 1
		if duringUpload {
			proxy.cut()
		}
		gw := startGateway(t, bin, args...)
		gw.waitDIMSE(t, dimseAddr)
		name := fmt.Sprintf("kill%d", k)
		dir := filepath.Join(e.dir, name)
		study, sent := makeStudy(t, dir, name, perRound)
		studies = append(studies, study)
		for sop, s := range sent {
			sums[sop] = s
		}
		// stdbuf: storescu's log must reach us line by line even when the aborted association ends it abruptly.
		cmd := dcmtk("stdbuf", "-oL", "-eL", "storescu", "-v", "-aet", "CT_ROOM1", "-aec", "GW_TEST", "+sd", host, port, dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waiting := 0
		if duringUpload {
			cmd.Wait() // the modality is done; its images wait for the line
			gw.kill()
			waiting = spooled(spool)
			proxy.restore(t)
			// Kill once the upload is under way: when the spool has shrunk to a random point short of empty.
			target := 1 + rng.IntN(max(1, waiting-1))
			gw = startGateway(t, bin, args...)
			for deadline := time.Now().Add(time.Minute); spooled(spool) > target && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			gw.kill()
		} else {
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			gw.kill()
			cmd.Wait()
		}
		n := 0
		for _, f := range storescuAcks(out.String()) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			acked[metaString(b, 0x0003)] = study
			n++
		}
		if duringUpload {
			t.Logf("kill %d while uploading: %d waited, %d left on the spool", k, waiting, spooled(spool))
		} else {
			t.Logf("kill %d while receiving: %d of %d acknowledged to the modality, %d on the spool", k, n, perRound, spooled(spool))
		}
	}
	gw := startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)
	waitEmpty(t, gw, spool, 3*time.Minute)
	if left, _ := os.ReadDir(filepath.Join(spool, "tmp")); len(left) != 0 {
		t.Errorf("%d half-written files are left in the spool's tmp/", len(left))
	}
	held := map[string][32]byte{}
	for _, s := range studies {
		for sop, sum := range e.stored(s) {
			held[sop] = sum
		}
	}
	for sop := range acked {
		switch sum, ok := held[sop]; {
		case !ok:
			t.Errorf("%s was acknowledged to the modality but never reached renkei", sop)
		case sum != sums[sop]:
			t.Errorf("%s reached renkei with other bytes", sop)
		}
	}
	t.Logf("%d instances acknowledged to the modality, %d held by renkei (an instance on the spool's disk whose success the kill cut off is sent too)", len(acked), len(held))
}

func spooled(dir string) int {
	st, _ := gateway.ReadStatus(dir)
	return st.Queue.Instances
}

// gatewayDiskFull fills the spool's disk (a real 24 MiB tmpfs) below the reserve: an association already open gets
// 0xA700 for its next C-STORE, a new association is rejected as transient, and both work again once space returns.
func gatewayDiskFull(t *testing.T, bin string) {
	mnt := filepath.Join(t.TempDir(), "disk")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	spool := filepath.Join(mnt, "spool")
	dimseAddr := freeAddr(t)
	host, port, _ := net.SplitHostPort(dimseAddr)
	// renkei is not needed: the images wait on the spool (the server address refuses connections).
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("rk_unused"), 0o600)
	gw := startGateway(t, bin, "--server", "http://"+freeAddr(t), "--token-file", tok, "--dimse", dimseAddr, "--ae", "GW_TEST",
		"--spool", spool, "--status", "off", "--reserve-mb", "8")
	gw.waitDIMSE(t, dimseAddr)

	dir := filepath.Join(t.TempDir(), "modality")
	_, _ = makeStudy(t, dir, "full", 2)
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	ds := func(f string) []byte {
		b, _ := os.ReadFile(f)
		d, _ := dataSet(b)
		return d
	}
	const ct, explicit = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"
	ctx := context.Background()
	a, err := dimse.Dial(ctx, dimseAddr, "CT_ROOM1", "GW_TEST", []dimse.PresentationContext{{AbstractSyntax: ct, TransferSyntaxes: []string{explicit}}})
	if err != nil {
		t.Fatalf("associate: %v", err)
	}
	defer a.Abort()
	b0, _ := os.ReadFile(files[0])
	if st, err := a.Store(ctx, ct, metaString(b0, 0x0003), metaString(b0, 0x0010), bytes.NewReader(ds(files[0]))); err != nil || st.Code != 0 {
		t.Fatalf("C-STORE with room on the disk: %v %+v", err, st)
	}
	// Fill the disk to 4 MiB below the 8 MiB reserve.
	var fs syscall.Statfs_t
	syscall.Statfs(mnt, &fs)
	ballast := filepath.Join(mnt, "ballast")
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(int64(fs.Bavail)*int64(fs.Bsize)-4<<20), ballast).CombinedOutput(); err != nil {
		t.Fatalf("fallocate: %v %s", err, out)
	}
	b1, _ := os.ReadFile(files[1])
	st, err := a.Store(ctx, ct, metaString(b1, 0x0003), metaString(b1, 0x0010), bytes.NewReader(ds(files[1])))
	if err != nil || st.Code != dimse.StatusOutOfResources {
		t.Errorf("C-STORE below the reserve: %v, status 0x%04X; want 0xA700 (out of resources)", err, st.Code)
	}
	a.Release(ctx)
	out, err := dcmtk("echoscu", "-aet", "CT_ROOM1", "-aec", "GW_TEST", host, port).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Association Rejected") || !strings.Contains(string(out), "Transient") {
		t.Errorf("a new association below the reserve was not rejected as transient: %v\n%s", err, out)
	}
	os.Remove(ballast)
	if out, err := dcmtk("storescu", "-aet", "CT_ROOM1", "-aec", "GW_TEST", host, port, files[1]).CombinedOutput(); err != nil {
		t.Errorf("C-STORE after space returned: %v\n%s", err, out)
	}
	st2, err := gateway.ReadStatus(spool)
	if err != nil || st2.Queue.Instances != 2 {
		t.Errorf("the spool holds %d instances, want 2 (%v)", st2.Queue.Instances, err)
	}
}

// gatewayRevoked: a gateway whose token renkei's admin revoked stops and says why, and does not start again with it.
func gatewayRevoked(t *testing.T, bin string) {
	e := newGWEnv(t, bin)
	spool := filepath.Join(e.dir, "spool")
	dimseAddr := freeAddr(t)
	args := []string{"--server", "http://" + e.renkei.addr, "--token-file", e.tokFile, "--dimse", dimseAddr, "--spool", spool,
		"--status", "off", "--heartbeat", "500ms"}
	gw := startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "token", "revoke", "1", "--data", filepath.Join(e.dir, "data")}, &out, &out); code != 0 {
		t.Fatalf("token revoke: %s", out.String())
	}
	select {
	case <-gw.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the gateway runs on with a revoked token:\n%s", gw.output())
	}
	want := "token was refused"
	if gw.err == nil || !strings.Contains(gw.output(), want) {
		t.Errorf("the gateway stopped with %v, saying:\n%s", gw.err, gw.output())
	}
	var cli bytes.Buffer
	Main(context.Background(), []string{"gateway", "status", "--spool", spool}, &cli, &cli)
	if !strings.Contains(cli.String(), "停止") || !strings.Contains(cli.String(), want) {
		t.Errorf("renkei gateway status after the revocation:\n%s", cli.String())
	}
	again := startGateway(t, bin, args...)
	select {
	case <-again.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway started with a revoked token")
	}
	if again.err == nil || !strings.Contains(again.output(), want) {
		t.Errorf("starting with a revoked token: %v\n%s", again.err, again.output())
	}
}

// commitReports is a modality's side of storage commitment: results arrive on its own association or, later, on a
// new association to its Storage Commitment SCU address (a real DIMSE server in the test).
type commitReports chan commitResult

type commitResult struct {
	tx                string
	committed, failed []dimse.SOPReference
	sameAssociation   bool
}

func (c commitReports) handler(same bool) func(context.Context, *dimse.Association, *dimse.EventReport) dimse.Status {
	return func(_ context.Context, _ *dimse.Association, ev *dimse.EventReport) dimse.Status {
		tx, ok, failed, err := dimse.CommitmentResult(ev)
		if err != nil {
			return dimse.Failure(dimse.StatusProcessingFailure, err.Error())
		}
		c <- commitResult{tx, ok, failed, same}
		return dimse.Success()
	}
}

func (c commitReports) wait(t *testing.T, tx string, within time.Duration) commitResult {
	t.Helper()
	select {
	case r := <-c:
		if r.tx != tx {
			t.Fatalf("a storage commitment result for %s, want %s", r.tx, tx)
		}
		return r
	case <-time.After(within):
		t.Fatalf("no storage commitment result for %s within %v", tx, within)
	}
	return commitResult{}
}

// gatewayCommitment: a modality asks the gateway to commit what it sent. With the line up, the answer comes on its
// association, and "committed" means renkei has the images (an image the gateway never got fails with 0x0112). With
// the line down, the request is kept — even across a SIGKILL of the gateway — and, once renkei has the images, the
// result is sent on a new association to the modality's address.
func gatewayCommitment(t *testing.T, bin string) {
	e := newGWEnv(t, bin)
	proxy := newCutProxy(t, e.renkei.addr)
	reports := make(commitReports, 4)
	modAddr := freeAddr(t)
	ln, err := net.Listen("tcp", modAddr)
	if err != nil {
		t.Fatal(err)
	}
	modality := &dimse.Server{AETitle: "CT_ROOM1", Handlers: dimse.Handlers{EventReport: reports.handler(false)}}
	go modality.Serve(ln)
	defer modality.Close()

	spool := filepath.Join(e.dir, "spool")
	dimseAddr := freeAddr(t)
	args := []string{"--server", "http://" + proxy.addr, "--token-file", e.tokFile, "--dimse", dimseAddr, "--ae", "GW_TEST",
		"--spool", spool, "--status", "off", "--heartbeat", "1s", "--commit-wait", "2s", "--modality", "CT_ROOM1=" + modAddr}
	gw := startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)

	dir := filepath.Join(e.dir, "modality")
	study, _ := makeStudy(t, dir, "commit", 5)
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	const ct, explicit = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"
	ctx := context.Background()
	associate := func() *dimse.Association {
		t.Helper()
		d := &dimse.Dialer{Handlers: dimse.Handlers{EventReport: reports.handler(true)}}
		a, err := d.Dial(ctx, dimseAddr, "CT_ROOM1", "GW_TEST", []dimse.PresentationContext{{AbstractSyntax: ct, TransferSyntaxes: []string{explicit}},
			{AbstractSyntax: dimse.StorageCommitmentPushModel, TransferSyntaxes: []string{explicit}}})
		if err != nil {
			t.Fatalf("associate: %v", err)
		}
		return a
	}
	store := func(a *dimse.Association, files []string) []dimse.SOPReference {
		t.Helper()
		var refs []dimse.SOPReference
		for _, f := range files {
			b, _ := os.ReadFile(f)
			ds, _ := dataSet(b)
			sop := metaString(b, 0x0003)
			if st, err := a.Store(ctx, ct, sop, explicit, bytes.NewReader(ds)); err != nil || st.Code != 0 {
				t.Fatalf("C-STORE: %v %+v", err, st)
			}
			refs = append(refs, dimse.SOPReference{SOPClassUID: ct, SOPInstanceUID: sop})
		}
		return refs
	}

	// The line is up: the result comes on the association.
	a := associate()
	refs := store(a, files[:3])
	never := dimse.SOPReference{SOPClassUID: ct, SOPInstanceUID: dicomtest.UID("commit-never-sent")}
	tx1 := dicomtest.UID("commit-tx-1")
	if st, err := a.RequestCommitment(ctx, tx1, append(refs, never)); err != nil || st.Code != 0 {
		t.Fatalf("N-ACTION: %v %+v", err, st)
	}
	r := reports.wait(t, tx1, 30*time.Second)
	if !r.sameAssociation || len(r.committed) != 3 || len(r.failed) != 1 || r.failed[0].SOPInstanceUID != never.SOPInstanceUID ||
		r.failed[0].FailureReason != 0x0112 {
		t.Errorf("result with the line up: %+v; want 3 committed and the unknown one failed (0x0112) on the association", r)
	}
	if got := e.stored(study); len(got) != 3 {
		t.Errorf("renkei holds %d instances when the gateway said 3 were committed", len(got))
	}
	a.Release(ctx)

	// The line is down: the request is kept, survives a SIGKILL, and is answered on a new association later.
	proxy.cut()
	a = associate()
	refs = store(a, files[3:])
	tx2 := dicomtest.UID("commit-tx-2")
	if st, err := a.RequestCommitment(ctx, tx2, refs); err != nil || st.Code != 0 {
		t.Fatalf("N-ACTION: %v %+v", err, st)
	}
	select {
	case r := <-reports:
		t.Fatalf("a result while renkei cannot have the images: %+v", r)
	case <-time.After(3 * time.Second): // past --commit-wait: the request is kept
	}
	a.Release(ctx)
	gw.kill()
	gw = startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)
	proxy.restore(t)
	r = reports.wait(t, tx2, time.Minute)
	if r.sameAssociation || len(r.committed) != 2 || len(r.failed) != 0 {
		t.Errorf("the later result: %+v; want 2 committed, on a new association", r)
	}
	if got := e.stored(study); len(got) != 5 {
		t.Errorf("renkei holds %d instances when the gateway said all 5 were committed", len(got))
	}
	// The gateway forgets the request once the modality answered the report, a moment after our handler ran.
	var left []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if left, _ = os.ReadDir(filepath.Join(spool, "commit")); len(left) == 0 {
			break
		}
	}
	if len(left) != 0 {
		t.Errorf("%d kept commitments remain after the report", len(left))
	}
}

// gatewayDeliver: in the demo region the clinic referred 山田太郎 (D0001 at the clinic, linked to H0001 at the
// hospital) with his CT. The hospital's gateway, with --deliver-to, fetches the shared CT and C-STOREs it to the
// hospital's PACS (dcmtk's storescp) under H0001, the clinic's D0001 kept in OtherPatientIDsSequence; a restarted
// gateway does not send it again.
func gatewayDeliver(t *testing.T, bin string) {
	dir, data, addr, _ := startDemo(t, bin)
	token, tokFile := gatewayToken(t, dir, data, "chuo-hospital")

	pacsDir := filepath.Join(dir, "pacs")
	os.Mkdir(pacsDir, 0o755)
	pacsAddr := freeAddr(t)
	_, pacsPort, _ := net.SplitHostPort(pacsAddr)
	pacs := dcmtk("storescp", "-aet", "HOSP_PACS", "+xa", "-od", pacsDir, pacsPort)
	if err := pacs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pacs.Process.Kill(); pacs.Wait() })

	spool := filepath.Join(dir, "spool")
	dimseAddr := freeAddr(t)
	args := []string{"--server", "http://" + addr, "--token-file", tokFile, "--dimse", dimseAddr, "--ae", "CHUO_GW", "--spool", spool,
		"--status", "off", "--heartbeat", "1s", "--deliver-to", "HOSP_PACS=" + pacsAddr, "--inbox-poll", "500ms"}
	gw := startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)

	// The referral's CT: how many instances renkei holds of it.
	study := dicomtest.UID("demo-study-0")
	hospital := &crashServer{http: &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}}
	parts, err := hospital.retrieve("http://" + addr + "/dicomweb/studies/" + study)
	if err != nil || len(parts) == 0 {
		t.Fatalf("the hospital cannot see the referred CT: %v", err)
	}
	received := func() map[string]string { // SOP Instance UID → dcmdump of the file
		files, _ := os.ReadDir(pacsDir)
		m := map[string]string{}
		for _, f := range files {
			b, err := dcmtk("dcmdump", "+P", "0008,0018", "+P", "0010,0020", "+P", "0010,0021", "+P", "0010,1002", "+P", "0020,000d",
				"+P", "0010,0010", "-s", filepath.Join(pacsDir, f.Name())).CombinedOutput()
			if err == nil {
				if m2 := regexp.MustCompile(`\(0008,0018\) UI \[([0-9.]+)\]`).FindStringSubmatch(string(b)); m2 != nil {
					m[m2[1]] = string(b)
				}
			}
		}
		return m
	}
	// Wait for the referred CT's instances themselves: another study shared with the hospital (the reading
	// request's) may be delivered first, in either order.
	var got map[string]string
	ofStudy := func() int {
		n := 0
		for _, dump := range got {
			if strings.Contains(dump, study) {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = received(); ofStudy() >= len(parts) {
			break
		}
	}
	inStudy := 0
	for _, dump := range got {
		if !strings.Contains(dump, study) {
			continue // another study shared with the hospital (the reading request's)
		}
		inStudy++
		if !strings.Contains(dump, "(0010,0020) LO [H0001]") || !strings.Contains(dump, "(0010,0021) LO [CHUO]") ||
			!strings.Contains(dump, "(0010,1002) SQ") || !strings.Contains(dump, "[D0001]") || !strings.Contains(dump, "[KITA]") {
			t.Errorf("a delivered instance is not filed under the hospital's patient with the clinic's ID kept:\n%s", dump)
		}
	}
	if inStudy != len(parts) {
		t.Fatalf("the PACS received %d instances of the referred CT, want %d:\n%s", inStudy, len(parts), gw.output())
	}
	// The images themselves are renkei's bytes: the pixel data of each delivered file is the stored one's.
	files, _ := os.ReadDir(pacsDir)
	pixels := func(b []byte) []byte {
		f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
		if err != nil || f.PixelData == nil {
			t.Fatalf("no pixel data: %v", err)
		}
		return b[f.PixelData.Offset : f.PixelData.Offset+int64(f.PixelData.Length)]
	}
	stored := map[string][]byte{}
	for _, p := range parts {
		stored[metaString(p, 0x0003)] = pixels(p)
	}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(pacsDir, f.Name()))
		if want, ok := stored[metaString(b, 0x0003)]; ok && !bytes.Equal(pixels(b), want) {
			t.Errorf("%s: the delivered pixel data differ from renkei's", f.Name())
		}
	}
	var cli bytes.Buffer
	Main(context.Background(), []string{"gateway", "status", "--spool", spool}, &cli, &cli)
	if !strings.Contains(cli.String(), "HOSP_PACS") {
		t.Errorf("renkei gateway status does not show the delivery:\n%s", cli.String())
	}

	// A restart sends nothing again.
	gw.kill()
	before := len(received())
	gw = startGateway(t, bin, args...)
	gw.waitDIMSE(t, dimseAddr)
	time.Sleep(2 * time.Second) // several inbox polls
	if after := len(received()); after != before {
		t.Errorf("after a restart the PACS holds %d files, before %d: delivered twice", after, before)
	}
}

// startDemo runs `renkei serve --demo` on a new data folder and returns the folder around it, the data folder, the
// HTTP address and the log (which holds the demo accounts).
func startDemo(t *testing.T, bin string) (dir, data, addr, logPath string) {
	t.Helper()
	dir = t.TempDir()
	data = filepath.Join(dir, "data")
	addr = freeAddr(t)
	logPath = filepath.Join(dir, "renkei.log")
	log, _ := os.Create(logPath)
	srv := exec.Command(bin, "serve", "--demo", "--data", data, "--http", addr, "--dimse", "127.0.0.1:0", "--log-level", "warn")
	srv.Stdout, srv.Stderr = log, log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait(); log.Close() })
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 600 {
			t.Fatalf("renkei serve --demo did not start:\n%s", tail(logPath, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return dir, data, addr, logPath
}

// gatewayToken makes a read-write token for an institution's gateway with `renkei admin` and writes it to a file.
func gatewayToken(t *testing.T, dir, data, institution string) (token, file string) {
	t.Helper()
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "token", "add", institution + "-gateway", "--institution", institution, "--write", "--data", data}, &out, &out); code != 0 {
		t.Fatalf("token add: %s", out.String())
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no token: %s", out.String())
	}
	file = filepath.Join(dir, institution+".token")
	os.WriteFile(file, []byte(m[1]), 0o600)
	return m[1], file
}

// demoLogin logs a demo account in, with the password and authenticator key `renkei serve --demo` printed.
func demoLogin(t *testing.T, addr, logPath, user string) *apiClient {
	t.Helper()
	b, _ := os.ReadFile(logPath)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(user) + `\t(\S+)\t(\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("the demo printed no account %s", user)
	}
	return login(t, "http://"+addr, user, m[1], m[2])
}

// gatewayFetch: a clinic's doctor asks for a patient's earlier studies that never left the clinic's PACS (dcmtk's
// dcmqrscp); the clinic's gateway answers with C-FIND and C-MOVE, the images reach renkei, the request says what was
// fetched, and both renkei's audit trail and the gateway's audit log record it. The hospital that the patient was
// referred to may ask for them too; for a patient not shared with it, it may not.
func gatewayFetch(t *testing.T, bin string) {
	if _, err := exec.LookPath("dcmqrscp"); err != nil {
		t.Skip("dcmqrscp is missing: install Debian's dcmtk (scripts/setup does)")
	}
	dir, data, addr, logPath := startDemo(t, bin)
	token, tokFile := gatewayToken(t, dir, data, "kita-clinic")
	gwAddr, pacsAddr := freeAddr(t), freeAddr(t)
	_, gwPort, _ := net.SplitHostPort(gwAddr)
	_, pacsPort, _ := net.SplitHostPort(pacsAddr)
	db := filepath.Join(dir, "pacs-db")
	os.Mkdir(db, 0o755)
	cfg := filepath.Join(dir, "dcmqrscp.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`NetworkTCPPort  = %s
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
kitagw = (KITA_GW, 127.0.0.1, %s)
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
KITA_PACS  %s  RW  (100, 1024mb)  ANY
AETable END
`, pacsPort, gwPort, db)), 0o644)
	pacs := dcmtk("dcmqrscp", "-c", cfg) // one process per association: in single-process mode (-s) it stopped listening after the first ones here
	var pacsOut bytes.Buffer
	pacs.Stdout, pacs.Stderr = &pacsOut, &pacsOut
	if err := pacs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pacs.Process.Kill(); pacs.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", pacsAddr); err == nil {
			c.Close()
			break
		}
		if i > 200 {
			t.Fatalf("dcmqrscp did not start: %s", pacsOut.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	// The PACS holds an older CT of 山田太郎 (D0001 at the clinic) and a study of another patient.
	old := filepath.Join(dir, "old")
	other := filepath.Join(dir, "other")
	oldStudy := dicomtest.UID("prior-study")
	for i := 1; i <= 6; i++ {
		os.MkdirAll(old, 0o755)
		if err := dicomtest.CT(filepath.Join(old, fmt.Sprintf("%d.dcm", i)), dicomtest.CTOptions{StudyInstanceUID: oldStudy,
			SeriesInstanceUID: dicomtest.UID("prior-series"), SOPInstanceUID: dicomtest.UID(fmt.Sprint("prior-", i)), PatientID: "D0001",
			PatientName: "Yamada^Taro=山田^太郎=ヤマダ^タロウ", StudyDate: "20240110", Rows: 16, Cols: 16, InstanceNumber: i, Seed: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(other, 0o755)
	otherStudy := dicomtest.UID("other-study")
	dicomtest.CT(filepath.Join(other, "1.dcm"), dicomtest.CTOptions{StudyInstanceUID: otherStudy, SeriesInstanceUID: dicomtest.UID("other-series"),
		SOPInstanceUID: dicomtest.UID("other-1"), PatientID: "D0777", PatientName: "Other^Patient", StudyDate: "20240110", Rows: 16, Cols: 16, Seed: 9})
	host, port, _ := net.SplitHostPort(pacsAddr)
	if out, err := dcmtk("storescu", "-aet", "KITA_CT", "-aec", "KITA_PACS", "+sd", host, port, old, other).CombinedOutput(); err != nil {
		t.Fatalf("filling the PACS: %v\n%s", err, out)
	}

	spool := filepath.Join(dir, "spool")
	gw := startGateway(t, bin, "--server", "http://"+addr, "--token-file", tokFile, "--dimse", gwAddr, "--ae", "KITA_GW", "--spool", spool,
		"--status", "off", "--heartbeat", "1s", "--fetch-from", "KITA_PACS="+pacsAddr, "--inbox-poll", "300ms")
	gw.waitDIMSE(t, gwAddr)

	kato := demoLogin(t, addr, logPath, "demo-kato@kita-clinic")
	var req struct {
		ID                 int64
		Status             string
		Studies, Instances int
	}
	if code := kato.do(t, "POST", "/api/gateways/requests", map[string]string{"patientId": "D0001", "reason": "紹介状に過去のCTを添付"}, &req); code != 201 {
		t.Fatalf("asking for earlier studies: %d", code)
	}
	var list []struct {
		ID                 int64
		Status, Detail     string
		Studies, Instances int
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		kato.getJSON(t, "/api/gateways/requests", &list)
		if len(list) > 0 && (list[0].Status == "done" || list[0].Status == "failed") {
			break
		}
	}
	if len(list) == 0 || list[0].ID != req.ID || list[0].Status != "done" || list[0].Studies != 1 || list[0].Instances != 6 {
		t.Fatalf("the request reads %+v; want done with 1 study of 6 instances\n%s\n%s", list, gw.output(), pacsOut.String())
	}
	clinic := &crashServer{http: &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}}
	var parts [][]byte
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if parts, _ = clinic.retrieve("http://" + addr + "/dicomweb/studies/" + oldStudy); len(parts) == 6 {
			break
		}
	}
	if len(parts) != 6 {
		t.Errorf("renkei holds %d instances of the earlier CT, want 6", len(parts))
	}
	if p, err := clinic.retrieve("http://" + addr + "/dicomweb/studies/" + otherStudy); err == nil && len(p) > 0 {
		t.Error("another patient's study was fetched too")
	}
	// Audited on both sides.
	admin := demoLogin(t, addr, logPath, "demo-admin@kita-clinic")
	var events []struct{ Action, Actor, Outcome, PatientID, Detail string }
	admin.getJSON(t, "/api/audit?limit=500", &events)
	asked, fetched := false, false
	for _, e := range events {
		if e.Action == "fetch" && e.PatientID == "D0001" {
			asked = asked || (e.Actor == "demo-kato@kita-clinic" && strings.Contains(e.Detail, "紹介状に過去のCTを添付"))
			fetched = fetched || (e.Actor == "kita-clinic-gateway" && strings.Contains(e.Detail, "1 studies (6 instances)"))
		}
	}
	if !asked || !fetched {
		t.Errorf("renkei's audit trail: the request recorded %v, the gateway's answer recorded %v", asked, fetched)
	}
	local, _ := os.ReadFile(filepath.Join(spool, "audit.log"))
	if !strings.Contains(string(local), `"requestedBy":"demo-kato@kita-clinic"`) || !strings.Contains(string(local), `"status":"done"`) {
		t.Errorf("the gateway's audit log:\n%s", local)
	}

	// The hospital the patient was referred to may ask the clinic's gateway; for another patient it may not.
	tanaka := demoLogin(t, addr, logPath, "demo-tanaka@chuo-hospital")
	if code := tanaka.do(t, "POST", "/api/gateways/requests", map[string]string{"institution": "kita-clinic", "patientId": "D0001", "reason": "過去画像の確認"}, nil); code != 201 {
		t.Errorf("the referral's receiver asking for the priors: %d, want 201", code)
	}
	if code := tanaka.do(t, "POST", "/api/gateways/requests", map[string]string{"institution": "kita-clinic", "patientId": "D0777"}, nil); code != 404 {
		t.Errorf("asking for a patient not shared with the hospital: %d, want 404", code)
	}
}
