package dicomtest

import (
	"context"
	"os"
	"os/exec"
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
