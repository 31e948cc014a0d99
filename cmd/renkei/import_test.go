package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"renkei/internal/dicomtest"
)

// TestImport runs `renkei import` against a running server the way a clinic's script would: a CD-ROM folder (with a
// DICOMDIR made by dcmtk that does not list every image, and the disc's viewer files), then a zip of the same images
// with one cut short, then the CD with an image missing that its DICOMDIR lists.
func TestImport(t *testing.T) {
	if _, err := exec.LookPath("dcmgpdir"); err != nil {
		t.Skip("dcmgpdir is missing: scripts/setup installs dcmtk")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	token := provisionToken(t, data)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	server := "http://" + regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(line)[1]

	cd := filepath.Join(dir, "CDROM")
	os.MkdirAll(filepath.Join(cd, "DICOM"), 0o755)
	var images []string
	for i := 1; i <= 4; i++ {
		p := filepath.Join(cd, "DICOM", fmt.Sprintf("IM%06d", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{PatientID: "CD02", Rows: 16, Cols: 16, InstanceNumber: i, Seed: 902}); err != nil {
			t.Fatal(err)
		}
		images = append(images, p)
	}
	gp := exec.Command("dcmgpdir", "+I", "DICOM/IM000001", "DICOM/IM000002", "DICOM/IM000003")
	gp.Dir = cd
	if out, err := gp.CombinedOutput(); err != nil {
		t.Fatalf("dcmgpdir: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(cd, "AUTORUN.INF"), []byte("[autorun]\n"), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	runWith := func(auth []string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append(append([]string{"import", "--server", server}, auth...), args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	run := func(args ...string) (int, string) { return runWith([]string{"--token-file", tokenFile}, args...) }

	code, out := run(cd)
	if code != 0 || !strings.Contains(out, "4 stored, 0 already stored, 0 refused, 2 skipped") {
		t.Errorf("the CD-ROM: exit %d\n%s", code, out)
	}

	zipPath := filepath.Join(dir, "cd.zip")
	zf, _ := os.Create(zipPath)
	zw := zip.NewWriter(zf)
	for i, p := range images {
		b, _ := os.ReadFile(p)
		w, _ := zw.Create(fmt.Sprintf("CD/IM%d.dcm", i+1))
		w.Write(b)
		if i == 0 {
			w, _ := zw.Create("CD/CUT.dcm")
			w.Write(b[:len(b)-200])
		}
	}
	w, _ := zw.Create("../escape.dcm")
	w.Write([]byte("x"))
	zw.Close()
	zf.Close()
	code, out = run(zipPath)
	if code != 1 || !strings.Contains(out, "0 stored, 4 already stored, 2 refused") || !strings.Contains(out, "CUT.dcm: the file is cut short") ||
		!strings.Contains(out, "escape.dcm: an unsafe path") {
		t.Errorf("the zip: exit %d\n%s", code, out)
	}

	os.Remove(images[1])
	code, out = run(cd)
	if code != 1 || !strings.Contains(out, "IM000002: listed in the CD's DICOMDIR but missing") {
		t.Errorf("the CD with an image missing: exit %d\n%s", code, out)
	}
	if code, out := runWith([]string{"--token", "rk_wrong"}, cd); code == 0 || !strings.Contains(out, "401") {
		t.Errorf("a wrong token: exit %d\n%s", code, out)
	}
	cancel()
	<-done
}
