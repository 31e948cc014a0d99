package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// crashAE is the calling AE title of TestCrashDIMSE's modalities, registered as the test clinic's.
const crashAE = "CRASHSCU"

// TestCrashDIMSE is TestCrash with modalities instead of STOW-RS clients: each batch goes to renkei's DIMSE port by
// dcmtk's storescu on one association, and the server is killed with SIGKILL at a random moment. Every instance whose
// C-STORE storescu saw answered with Success (also in a batch the kill cut short) must be there, whole, after the
// restart: the success must only be sent once the instance is durable. RENKEI_CRASH_KILLS (default 10) and
// RENKEI_CRASH_SEED as for TestCrash.
func TestCrashDIMSE(t *testing.T) {
	if _, err := exec.LookPath("storescu"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dcmtk's storescu is not installed (scripts/setup installs dcmtk)")
		}
		t.Skip("storescu is missing: install Debian's dcmtk (scripts/setup does)")
	}
	runCrash(t, true, 10)
}

// store sends one batch with storescu and returns the SOP Instance UIDs it saw answered with Success, in order; an
// error when storescu failed (the kill) or an instance was not stored.
func (cl *crashClient) store(batch []*sentInstance) ([]string, error) {
	dir := filepath.Join(cl.run.gen, fmt.Sprintf("scu-%d", cl.id))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	bySOPPath := map[string]string{}
	args := []string{"-v", "-aet", crashAE, "-aec", "RENKEI"}
	host, port, err := net.SplitHostPort(cl.run.srv.dimse)
	if err != nil {
		return nil, err
	}
	args = append(args, host, port)
	for i, in := range batch {
		p := filepath.Join(dir, fmt.Sprintf("%d.dcm", i))
		if err := os.WriteFile(p, in.bytes, 0o640); err != nil {
			return nil, err
		}
		bySOPPath[p] = in.sop
		args = append(args, p)
	}
	out, runErr := dcmtk("storescu", args...).CombinedOutput()
	// storescu -v says "Sending file: PATH" before each C-STORE and "Received Store Response (Success)" after it.
	var acked []string
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if _, p, ok := strings.Cut(line, "Sending file: "); ok {
			current = strings.TrimSpace(p)
			continue
		}
		if strings.Contains(line, "Received Store Response") {
			if strings.Contains(line, "(Success)") && bySOPPath[current] != "" {
				acked = append(acked, bySOPPath[current])
			} else if !cl.killed.Load() {
				return acked, fmt.Errorf("storescu of %s: %s", sops(batch), line)
			}
			current = ""
		}
	}
	if runErr != nil {
		return acked, fmt.Errorf("storescu of %s: %v\n%s", sops(batch), runErr, tailString(string(out), 10))
	}
	if len(acked) != len(batch) {
		return acked, fmt.Errorf("storescu of %s: %d of %d answered Success:\n%s", sops(batch), len(acked), len(batch), tailString(string(out), 20))
	}
	return acked, nil
}

// contentKey names what must come back of a sent Part 10 file: all of it for STOW-RS, which stores the bytes sent;
// the data set after the File Meta Information for C-STORE, which carries no meta (the archive writes its own).
func (c *crashRun) contentKey(b []byte) [sha256.Size]byte {
	if c.dimse && len(b) > 144 && string(b[128:132]) == "DICM" && string(b[132:136]) == "\x02\x00\x00\x00" {
		// (0002,0000) UL, explicit VR: 4 bytes of tag, "UL", a 2-byte length of 4, then the group's length.
		if end := 144 + int(binary.LittleEndian.Uint32(b[140:144])); end <= len(b) {
			return sha256.Sum256(b[end:])
		}
	}
	return sha256.Sum256(b)
}
