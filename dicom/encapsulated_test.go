package dicom_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renkei/dicom"
)

// TestEncapsulatedPDF: the report object dcmtk reads (dcmdump) with its Japanese name, its study, and the PDF back
// byte for byte (dcm2pdf).
func TestEncapsulatedPDF(t *testing.T) {
	pdf := []byte("%PDF-1.4\n% a report\n%%EOF\n")
	st := dicom.DocumentStudy{PatientName: "Yamada^Taro=山田^太郎", PatientID: "P1", IssuerOfPatientID: "KITA", StudyInstanceUID: "1.2.3.4", StudyDate: "20261120"}
	file, sop, series := dicom.EncapsulatedPDF(st, pdf, "読影レポート", "中央病院", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	if !dicom.ValidUID(sop) || !dicom.ValidUID(series) || sop == series {
		t.Fatalf("UIDs %q %q", sop, series)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "report.dcm")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dcmdump", "+U8", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %v\n%s", err, out)
	}
	for _, want := range []string{"山田^太郎", "EncapsulatedPDFStorage", "1.2.3.4", "application/pdf", "DOC", "読影レポート"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dcmdump does not show %q:\n%s", want, out)
		}
	}
	back := filepath.Join(dir, "back.pdf")
	if out, err := exec.Command("dcm2pdf", path, back).CombinedOutput(); err != nil {
		t.Fatalf("dcm2pdf: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(back)
	if string(got) != string(pdf) {
		t.Errorf("the PDF came back as %q", got)
	}
}
