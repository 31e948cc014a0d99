package dicomweb_test

import (
	"bytes"
	"image"
	_ "image/jpeg"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"renkei/internal/dicomtest"
)

// windowFor is the window each grey series of the dataset is looked at with, in both renderers.
func windowFor(name string) (string, bool) {
	switch {
	case strings.HasPrefix(name, "ct-"):
		return "40,400", true
	case strings.HasPrefix(name, "mr-"):
		return "32768,65536", true
	case strings.HasPrefix(name, "cr-"):
		return "2048,4096", true
	case strings.HasPrefix(name, "sc-signed12"):
		return "0,4096", true
	}
	return "", false
}

// TestRendered: every losslessly stored sample of the dataset, rendered by WADO-RS `rendered` with a window, matches
// dcmtk's dcm2pnm rendering of the same pixels with the same window (of the uncompressed original, which the lossless
// copies equal): within one grey level for grey images, one level per channel for colour (RGB, planar, palette).
func TestRendered(t *testing.T) {
	if _, err := exec.LookPath("dcm2pnm"); err != nil {
		t.Skip("dcm2pnm is missing: scripts/setup installs dcmtk")
	}
	d := newSampleSet(t)
	e := newEnv(t)
	files := make([][]byte, len(d.samples))
	for i, s := range d.samples {
		files[i] = d.bytes(s.Name)
	}
	if st, body := e.stow(files...); st != http.StatusOK {
		t.Fatalf("STOW-RS: %d %s", st, body)
	}
	refs := map[string]image.Image{}
	reference := func(s dicomtest.Sample, window string) image.Image {
		src := s.Name
		if s.Source != "" {
			src = s.Source
		}
		if m, ok := refs[src+window]; ok {
			return m
		}
		out := filepath.Join(t.TempDir(), "ref.png")
		args := []string{"+on"}
		if window != "" {
			args = append(args, "+Ww", strings.Split(window, ",")[0], strings.Split(window, ",")[1])
		}
		args = append(args, d.sample(src).Path, out)
		if b, err := exec.Command("dcm2pnm", args...).CombinedOutput(); err != nil {
			t.Fatalf("dcm2pnm %v: %v\n%s", args, err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := png.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		refs[src+window] = m
		return m
	}
	checked := 0
	for _, s := range d.samples {
		if s.Lossy {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			window, grey := windowFor(s.Name)
			url := instanceURL(e, s) + "/rendered"
			if grey {
				url += "?window=" + window
			}
			st, ct, body := e.get(url, "image/png")
			if st != http.StatusOK || ct != "image/png" {
				t.Fatalf("GET %s: %d %s %.200s", url, st, ct, body)
			}
			got, err := png.Decode(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			want := reference(s, window)
			if got.Bounds() != want.Bounds() {
				t.Fatalf("size %v, dcm2pnm %v", got.Bounds(), want.Bounds())
			}
			worst, at := 0, image.Point{}
			b := want.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r1, g1, b1, _ := got.At(x, y).RGBA()
					r2, g2, b2, _ := want.At(x, y).RGBA()
					for _, dlt := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
						if dlt < 0 {
							dlt = -dlt
						}
						if dlt > worst {
							worst, at = dlt, image.Pt(x, y)
						}
					}
				}
			}
			if worst > 1 {
				t.Errorf("differs from dcm2pnm by %d levels at %v (window %q)", worst, at, window)
			}
		})
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d samples compared", checked)
	}
	// A thumbnail is small, whatever the image.
	st, ct, body := e.get(strings.TrimSuffix(instanceURL(e, d.sample("ct-explicit-le")), "/instances/"+d.sample("ct-explicit-le").SOPInstanceUID)+"/thumbnail", "image/jpeg")
	if st != http.StatusOK || ct != "image/jpeg" {
		t.Fatalf("series thumbnail: %d %s", st, ct)
	}
	if m, _, err := image.Decode(bytes.NewReader(body)); err != nil || m.Bounds().Dx() > 128 || m.Bounds().Dy() > 128 {
		t.Errorf("thumbnail: %v %v", m.Bounds(), err)
	}
	if st, _, _ := e.get(instanceURL(e, d.sample("ct-explicit-le"))+"/rendered?window=40", "image/png"); st != http.StatusBadRequest {
		t.Errorf("a window without width: %d", st)
	}
}
