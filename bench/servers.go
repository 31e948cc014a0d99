package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a running DICOMweb server under test.
type server struct {
	Name string
	Base string // DICOMweb root, e.g. http://127.0.0.1:PORT/dicomweb
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// children are the processes this program started; cleanup ends them (also on a signal).
var (
	childMu  sync.Mutex
	children = map[*exec.Cmd]bool{}
)

func startProcess(cmd *exec.Cmd) error {
	// Pdeathsig ends the child even if this program is killed outright; Setpgid lets cleanup end its group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	childMu.Lock()
	children[cmd] = true
	childMu.Unlock()
	return nil
}

func forgetProcess(cmd *exec.Cmd) {
	childMu.Lock()
	delete(children, cmd)
	childMu.Unlock()
}

// cleanup kills every child still running (by its own process group id, never by name).
func cleanup() {
	childMu.Lock()
	defer childMu.Unlock()
	for c := range children {
		if c.Process != nil {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
		delete(children, c)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// buildRenkei builds cmd/renkei from the work tree.
func buildRenkei(repo, bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/renkei")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/renkei: %v\n%s", err, out)
	}
	return nil
}

func startRenkei(bin, data, logPath string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	token, err := provisionRenkei(bin, data)
	if err != nil {
		return nil, err
	}
	tokens.Store(addr, token)
	cmd := exec.Command(bin, "serve", "--data", data, "--http", addr, "--dimse", "off", "--log-level", "warn")
	s := &server{Name: "renkei", Base: "http://" + addr + "/dicomweb", cmd: cmd}
	if err := s.start(logPath, "http://"+addr+"/healthz"); err != nil {
		return nil, err
	}
	return s, nil
}

// benchInstitution owns everything the benchmark stores in renkei.
const benchInstitution = "bench-hospital"

// provisionRenkei creates (or updates) the benchmark's institution in a data folder with renkei admin, and a
// read-write API token for the client.
func provisionRenkei(bin, data string) (string, error) {
	out, err := exec.Command(bin, "admin", "institution", "add", benchInstitution, "--name", "ベンチ病院", "--kind", "hospital", "--data", data).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("renkei admin institution add: %v: %s", err, out)
	}
	out, err = exec.Command(bin, "admin", "token", "add", "bench-client", "--institution", benchInstitution, "--write", "--data", data).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("renkei admin token add: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "rk_") {
			return strings.TrimSpace(l), nil
		}
	}
	return "", fmt.Errorf("renkei admin token add printed no token: %s", out)
}

// startOrthanc writes an Orthanc configuration with its storage and index in dir and starts it on loopback.
func startOrthanc(dir, logPath string) (*server, error) { return startOrthancWith(dir, logPath, nil) }

// startOrthancWith is startOrthanc with extra configuration keys (they replace the defaults of the same name).
func startOrthancWith(dir, logPath string, extra map[string]any) (*server, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dicomPort, err := freePort()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"storage", "index"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	cfg := map[string]any{
		"Name":                  "bench",
		"StorageDirectory":      filepath.Join(dir, "storage"),
		"IndexDirectory":        filepath.Join(dir, "index"),
		"HttpPort":              httpPort,
		"DicomPort":             dicomPort,
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": false,
		"Plugins":               []string{orthancPlugin},
		"DicomWeb":              map[string]any{"Enable": true, "Root": "/dicom-web/"},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("Orthanc", cfgPath)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	s := &server{Name: "Orthanc", Base: base + "/dicom-web", cmd: cmd}
	if err := s.start(logPath, base+"/system"); err != nil {
		return nil, err
	}
	return s, nil
}

const orthancPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

func (s *server) start(logPath, ready string) error {
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	s.log = lf
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	if err := startProcess(s.cmd); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited at start; see %s", s.Name, logPath)
		default:
		}
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				logf("%s: running, pid %d, %s", s.Name, s.cmd.Process.Pid, s.Base)
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("%s did not answer %s within 60 s; see %s", s.Name, ready, logPath)
}

// stop asks the server to shut down (SIGTERM), waiting up to 60 s before killing it.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	forgetProcess(s.cmd)
	s.log.Close()
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// status reads one kB field (VmHWM, VmRSS) of /proc/PID/status.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l[len(field)+1:])
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuSeconds is the user+system CPU time the process has used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// profiler records a CPU profile of a process with perf while a phase runs.
type profiler struct {
	dir   string
	on    bool
	trace bool // also perf trace -s (system-call times); it adds its own overhead to the CPU profile
}

// around runs fn under `perf record -g -p pid` when profiling is on, then writes a flat and a caller summary.
func (p *profiler) around(name string, pid int, fn func() error) error {
	if !p.on {
		return fn()
	}
	data := filepath.Join(p.dir, "perf-"+name+".data")
	cmd := exec.Command("perf", "record", "-F", "997", "-g", "-p", strconv.Itoa(pid), "-o", data)
	lf, _ := os.Create(filepath.Join(p.dir, "perf-"+name+".log"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := startProcess(cmd); err != nil {
		logf("perf: %v (profiling off for %s)", err, name)
		return fn()
	}
	// perf trace -s sums the time each thread spends in each system call: where a phase waits rather than computes.
	traceOut := filepath.Join(p.dir, "perf-"+name+"-syscalls-raw.txt")
	tr := exec.Command("perf", "trace", "-s", "-p", strconv.Itoa(pid), "-o", traceOut)
	trOK := p.trace && startProcess(tr) == nil
	time.Sleep(500 * time.Millisecond)
	err := fn()
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	forgetProcess(cmd)
	lf.Close()
	if trOK {
		tr.Process.Signal(syscall.SIGINT)
		tr.Wait()
		forgetProcess(tr)
		if sum, e := sumSyscalls(traceOut); e == nil {
			os.WriteFile(filepath.Join(p.dir, "perf-"+name+"-syscalls.txt"), []byte(sum), 0o644)
		}
	}
	for _, r := range []struct{ suffix, args string }{
		{"flat", "--no-children --sort symbol --percent-limit 0.7 -g none"},
		{"children", "--children --sort symbol --percent-limit 3 -g none"},
	} {
		out := filepath.Join(p.dir, "perf-"+name+"-"+r.suffix+".txt")
		rep := exec.Command("sh", "-c", "perf report -i "+data+" --stdio "+r.args+" > "+out+" 2>/dev/null")
		if e := rep.Run(); e != nil {
			logf("perf report %s: %v", name, e)
		}
	}
	logf("perf: profile of %s in %s", name, filepath.Join(p.dir, "perf-"+name+"-flat.txt"))
	return err
}

// sumSyscalls adds up perf trace -s's per-thread tables: calls and total milliseconds per system call, largest first.
func sumSyscalls(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	type agg struct {
		calls int64
		ms    float64
	}
	m := map[string]*agg{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 8 {
			continue
		}
		calls, err1 := strconv.ParseInt(f[1], 10, 64)
		total, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		a := m[f[0]]
		if a == nil {
			a = &agg{}
			m[f[0]] = a
		}
		a.calls += calls
		a.ms += total
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.SortFunc(names, func(x, y string) int { return cmp.Compare(m[y].ms, m[x].ms) })
	var out strings.Builder
	fmt.Fprintf(&out, "%-20s %10s %12s %10s\n", "syscall", "calls", "total ms", "avg ms")
	for _, k := range names {
		fmt.Fprintf(&out, "%-20s %10d %12.1f %10.3f\n", k, m[k].calls, m[k].ms, m[k].ms/float64(m[k].calls))
	}
	return out.String(), nil
}
