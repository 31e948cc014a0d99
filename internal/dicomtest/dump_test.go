package dicomtest_test

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"
)

// dump runs dcmdump with args on path and returns the top-level elements it prints, by "gggg,eeee", with the
// value as dcmdump prints it (the raw bytes of strings, without brackets). Any warning or error fails the test.
func dump(t *testing.T, path string, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command("dcmdump", append(append([]string{"-Un", "+L", "-M"}, args...), path)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("dcmdump %s: %v\n%s", path, err, stderr.Bytes())
	}
	return parseDump(stdout.Bytes())
}

var dumpLine = regexp.MustCompile(`^\(([0-9a-f]{4},[0-9a-f]{4})\) [A-Z]{2} (.*)$`)

func parseDump(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range bytes.Split(out, []byte("\n")) {
		sub := dumpLine.FindSubmatch(line)
		if sub == nil {
			continue // comments, and nested items which start with spaces
		}
		v := sub[2]
		if i := bytes.LastIndex(v, []byte(" #")); i >= 0 {
			v = v[:i]
		}
		v = bytes.TrimRight(v, " ")
		if len(v) > 1 && v[0] == '[' && v[len(v)-1] == ']' {
			v = v[1 : len(v)-1]
		}
		m[string(sub[1])] = string(v)
	}
	return m
}
