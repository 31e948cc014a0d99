package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits keeps deploy/systemd honest: every ExecStart names flags the command really has (a unit that
// names a removed or misspelt flag would fail only on the hospital's machine, at boot), and, where systemd-analyze
// is installed, the units have no key or section systemd would ignore.
func TestSystemdUnits(t *testing.T) {
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in deploy/systemd: %v", err)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ") // continuation lines
		var found bool
		for line := range strings.Lines(text) {
			cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart=")
			if !ok {
				continue
			}
			found = true
			args := strings.Fields(strings.ReplaceAll(cmd, "${CREDENTIALS_DIRECTORY}", t.TempDir()))
			if args[0] != "/usr/local/bin/renkei" {
				t.Errorf("%s: ExecStart runs %s, not /usr/local/bin/renkei", u, args[0])
				continue
			}
			// Parsing stops at --help after every flag before it was parsed: an unknown flag or a bad value fails.
			var out, errs bytes.Buffer
			if code := Main(context.Background(), append(args[1:], "--help"), &out, &errs); code != 0 {
				t.Errorf("%s: renkei %s: exit %d: %s", u, strings.Join(args[1:], " "), code, firstLine(errs.String()))
			}
		}
		if !found {
			t.Errorf("%s: no ExecStart", u)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the units' syntax is not checked")
		return
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	timers, _ := filepath.Glob("../../deploy/systemd/*.timer")
	all := append(units, timers...)
	var names []string
	for _, u := range all {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that the program exists: the binary is not installed here.
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/renkei"), []byte(truePath))
		name := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, names...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
