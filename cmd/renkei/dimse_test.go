package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// TestServeDIMSE drives `renkei serve` the way a hospital's devices would: a modality (storescu) sends, a
// workstation (findscu, movescu) searches in Japanese and pulls to its own storescp, an unregistered AE is turned
// away, and what came in by DIMSE is there by DICOMweb too.
func TestServeDIMSE(t *testing.T) {
	for _, tool := range []string{"echoscu", "storescu", "findscu", "movescu", "storescp", "dcmdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing: install Debian's dcmtk (scripts/setup does)", tool)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	destPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var out bytes.Buffer
	for _, args := range [][]string{
		{"admin", "institution", "add", "hosp-a", "--name", "A病院", "--kind", "hospital", "--issuer", "HOSP_A"},
		{"admin", "ae", "add", "MODALITY", "--host", "127.0.0.1", "--institution", "hosp-a"},
		{"admin", "ae", "add", "WORKSTATION", "--host", "127.0.0.1", "--port", fmt.Sprint(destPort), "--institution", "hosp-a"},
		{"admin", "ae", "add", "CLI", "--host", "127.0.0.1", "--institution", "hosp-a"}, // same issuer as MODALITY: its D1 is the same patient
		{"admin", "token", "add", "viewer", "--institution", "hosp-a"},
	} {
		if code := Main(context.Background(), append(args, "--data", data), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "127.0.0.1:0", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`http://(\S+)/dicomweb, dicom RENKEI@127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("start-up line gives no DICOM address: %q", line)
	}
	httpAddr, port := m[1], m[2]
	env := append(os.Environ(), "TCP_NODELAY=1")
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env, cmd.Dir = env, dir
		b, err := cmd.CombinedOutput()
		return string(b), err
	}

	if o, err := run("echoscu", "-aet", "MODALITY", "-aec", "RENKEI", "127.0.0.1", port); err != nil {
		t.Fatalf("C-ECHO from a registered AE: %v\n%s", err, o)
	}
	if o, err := run("echoscu", "-aet", "INTRUDER", "-aec", "RENKEI", "127.0.0.1", port); err == nil || !strings.Contains(o, "Calling AE Title Not Recognized") {
		t.Errorf("an unregistered AE was not rejected: %v\n%s", err, o)
	}

	study := dicomtest.UID("dimse-e2e-study")
	var files []string
	for i := 1; i <= 2; i++ {
		p := filepath.Join(dir, fmt.Sprintf("ct%d.dcm", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: dicomtest.UID("dimse-e2e-series"),
			SOPInstanceUID: dicomtest.UID(fmt.Sprint("dimse-e2e-", i)), PatientID: "D1", PatientName: "Yamada^Taro=山田^太郎=ヤマダ^タロウ",
			Rows: 64, Cols: 64, InstanceNumber: i, Seed: int64(i)}); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if o, err := run("storescu", append([]string{"-aet", "MODALITY", "-aec", "RENKEI", "127.0.0.1", port}, files...)...); err != nil {
		t.Fatalf("C-STORE: %v\n%s", err, o)
	}

	o, err := run("findscu", "-aet", "WORKSTATION", "-aec", "RENKEI", "-S", "-k", "QueryRetrieveLevel=STUDY",
		"-k", "SpecificCharacterSet=ISO_IR 192", "-k", "PatientName=山田*", "-k", "StudyInstanceUID", "-k", "IssuerOfPatientID",
		"-k", "NumberOfStudyRelatedInstances", "127.0.0.1", port)
	if err != nil || !strings.Contains(o, study) || !strings.Contains(o, "HOSP_A") || !regexp.MustCompile(`\[2\s*\]\s+#.*NumberOfStudyRelatedInstances`).MatchString(o) {
		t.Errorf("C-FIND for 山田* did not find the study with its issuer and 2 instances: %v\n%s", err, o)
	}

	recv := filepath.Join(dir, "received")
	os.Mkdir(recv, 0o755)
	scp := exec.Command("storescp", "-aet", "WORKSTATION", "+xa", "-od", recv, fmt.Sprint(destPort))
	scp.Env = env
	if err := scp.Start(); err != nil {
		t.Fatal(err)
	}
	defer scp.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	if o, err := run("movescu", "-aet", "WORKSTATION", "-aec", "RENKEI", "-aem", "WORKSTATION", "-S",
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, "127.0.0.1", port); err != nil {
		t.Fatalf("C-MOVE: %v\n%s", err, o)
	}
	got, _ := filepath.Glob(filepath.Join(recv, "*"))
	if len(got) != 2 {
		t.Fatalf("C-MOVE delivered %d files, want 2", len(got))
	}
	// The pixel data a modality sent comes back unchanged through C-MOVE.
	for _, f := range got {
		b, _ := os.ReadFile(f)
		o, _ := run("dcmdump", "+P", "SOPInstanceUID", f)
		var src []byte
		for i, uid := range []string{dicomtest.UID("dimse-e2e-1"), dicomtest.UID("dimse-e2e-2")} {
			if strings.Contains(o, uid) {
				src, _ = os.ReadFile(files[i])
			}
		}
		if src == nil || !bytes.HasSuffix(b, src[len(src)-64*64*2:]) {
			t.Errorf("%s: not one of the sent instances, or its pixels differ", filepath.Base(f))
		}
	}

	// renkei's own client: echo, send a third instance, find it, and C-GET the study.
	cli := func(args ...string) (string, int) {
		var b bytes.Buffer
		code := Main(context.Background(), append([]string{"dicom"}, args...), &b, &b)
		return b.String(), code
	}
	addr := "127.0.0.1:" + port
	if o, code := cli("echo", "--aet", "CLI", "--aec", "RENKEI", addr); code != 0 || !strings.Contains(o, "0x0000") {
		t.Errorf("renkei dicom echo: %d %s", code, o)
	}
	third := filepath.Join(dir, "ct3.dcm")
	if err := dicomtest.CT(third, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: dicomtest.UID("dimse-e2e-series"),
		SOPInstanceUID: dicomtest.UID("dimse-e2e-3"), PatientID: "D1", PatientName: "Yamada^Taro=山田^太郎=ヤマダ^タロウ", Rows: 64, Cols: 64, InstanceNumber: 3, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if o, code := cli("send", "--aet", "CLI", "--aec", "RENKEI", addr, third); code != 0 || !strings.Contains(o, "sent 1 file(s), 0 refused") {
		t.Errorf("renkei dicom send: %d %s", code, o)
	}
	if o, code := cli("find", "--aet", "CLI", "--aec", "RENKEI", "-k", "PatientName=山田*", "-k", "NumberOfStudyRelatedInstances=", addr); code != 0 ||
		!strings.Contains(o, `"00201208":{"vr":"IS","Value":[3]}`) || !strings.Contains(o, "山田^太郎") {
		t.Errorf("renkei dicom find: %d %s", code, o)
	}
	getDir := filepath.Join(dir, "got")
	if o, code := cli("get", "--aet", "CLI", "--aec", "RENKEI", "-k", "StudyInstanceUID="+study, "--out", getDir, addr); code != 0 || !strings.Contains(o, "3 received, 0 failed") {
		t.Errorf("renkei dicom get: %d %s", code, o)
	}
	for i, f := range append(files, third) {
		src, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(getDir, dicomtest.UID(fmt.Sprint("dimse-e2e-", i+1))+".dcm"))
		if err != nil || !bytes.HasSuffix(got, src[len(src)-64*64*2:]) {
			t.Errorf("C-GET of %s: missing or different pixels (%v)", filepath.Base(f), err)
		}
	}
	if o, err := run("dcmdump", filepath.Join(getDir, dicomtest.UID("dimse-e2e-3")+".dcm")); err != nil || strings.Contains(o, "E:") {
		t.Errorf("a file written by renkei dicom get does not parse: %v\n%s", err, o)
	}

	// DICOMweb answers the same institution's read token with what its modality stored over DIMSE.
	token := regexp.MustCompile(`(?m)^rk_\S+$`).FindString(out.String())
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/dicomweb/studies/"+study+"/instances", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), `"00080018"`); n != 3 {
		t.Errorf("QIDO-RS lists %d instances of the study stored by C-STORE, want 3: %s", n, body)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
