package web_test

import (
	"bytes"
	"fmt"
	"image/png"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/internal/dicomtest"
)

// TestViewerPixels: for every grey sample of the dataset stored without loss (CT, MR, MONOCHROME1 CR and signed
// 12-bit SC, in every transfer syntax), the grey levels the viewer computes in the browser from the server's decoded
// frame match dcmtk's dcm2pnm with the same window within one level.
func TestViewerPixels(t *testing.T) {
	if _, err := exec.LookPath("dcm2pnm"); err != nil {
		t.Skip("dcm2pnm is missing: scripts/setup installs dcmtk")
	}
	r := newRegion(t)
	dir := t.TempDir()
	samples, err := dicomtest.Dataset(dir)
	if err != nil {
		t.Skipf("the dataset needs dcmtk and GDCM: %v", err)
	}
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "pacs", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, s := range samples {
		b, _ := os.ReadFile(s.Path)
		pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		pw.Write(b)
	}
	mw.Close()
	if st := r.withToken(token).do("POST", "/dicomweb/studies", &body, "Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary()); st != 200 {
		t.Fatalf("STOW-RS: %d", st)
	}
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(u), chromedp.WaitVisible("#search")); err != nil {
		t.Fatal(err)
	}
	byName := map[string]dicomtest.Sample{}
	for _, s := range samples {
		byName[s.Name] = s
	}
	windows := map[string][2]float64{"ct-": {40, 400}, "mr-": {32768, 65536}, "cr-": {2048, 4096}, "sc-signed12": {0, 4096}}
	compared := 0
	for _, s := range samples {
		var win [2]float64
		found := false
		for prefix, w := range windows {
			if strings.HasPrefix(s.Name, prefix) {
				win, found = w, true
			}
		}
		if !found || s.Lossy {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			got, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](fmt.Sprintf(`(async () => {
				const m = await import('/ui/viewer.js');
				const meta = await (await fetch('/dicomweb/studies/%s/series/%s/instances/%s/metadata', { headers: { Accept: 'application/dicom+json' } })).json();
				const md = m.imageMeta(meta[0]);
				const px = await m.loadFrame('%s', '%s', '%s', 1, md);
				return Array.from(m.windowGrey(px.values, %g, %g, md.photometric === 'MONOCHROME1'));
			})()`, s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID, s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID, win[0], win[1]),
				chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			src := s
			if s.Source != "" {
				src = byName[s.Source]
			}
			out := filepath.Join(t.TempDir(), "ref.png")
			if b, err := exec.Command("dcm2pnm", "+on", "+Ww", fmt.Sprint(win[0]), fmt.Sprint(win[1]), src.Path, out).CombinedOutput(); err != nil {
				t.Fatalf("dcm2pnm: %v %s", err, b)
			}
			f, _ := os.Open(out)
			ref, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			b := ref.Bounds()
			if len(got) != b.Dx()*b.Dy() {
				t.Fatalf("%d grey levels for a %v image", len(got), b)
			}
			worst := 0
			for y := 0; y < b.Dy(); y++ {
				for x := 0; x < b.Dx(); x++ {
					r0, _, _, _ := ref.At(x, y).RGBA()
					d := got[y*b.Dx()+x] - int(r0>>8)
					if d < 0 {
						d = -d
					}
					worst = max(worst, d)
				}
			}
			if worst > 1 {
				t.Errorf("the viewer's grey levels differ from dcm2pnm by up to %d", worst)
			}
		})
		compared++
	}
	if compared < 15 {
		t.Errorf("only %d samples compared", compared)
	}
}
