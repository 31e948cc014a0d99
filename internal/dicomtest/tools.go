package dicomtest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NeedTools skips the test when one of the tools (dcmtk's, by default) is not on PATH.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package dcmtk; scripts/setup installs it)", tool)
		}
	}
}

// Run runs a tool with TCP_NODELAY=1 (without it Debian's dcmtk waits ~40 ms per DIMSE exchange) and fails the test
// with the tool's output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a tool with TCP_NODELAY=1 and a one-minute limit, and returns its output and exit error.
func RunErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StartStorescp starts dcmtk's storescp as AE title aet on a free loopback port, writing what it receives into a
// new temporary folder, and stops it when the test ends (printing its output if the test failed). flags go to
// storescp, e.g. "+xa" to accept every transfer syntax it supports.
func StartStorescp(t testing.TB, aet string, flags ...string) (addr, dir string) {
	t.Helper()
	NeedTools(t, "storescp")
	dir = t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	args := append([]string{"-aet", aet, "-od", dir}, flags...)
	cmd := exec.Command("storescp", append(args, port)...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("storescp output:\n%s", out.String())
		}
	})
	addr = "127.0.0.1:" + port
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, dir
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("storescp did not start:\n%s", out.String())
	return "", ""
}
