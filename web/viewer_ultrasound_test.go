package web_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
)

// TestViewerUltrasoundCalibration: an ultrasound image without Pixel Spacing but with two regions (PS3.3 C.8.5.5.1),
// a B-mode region calibrated in centimetres (0.5 mm a pixel across, 0.4 mm down) and a Doppler region in seconds and
// cm/s. A length or ROI inside the B-mode region is in millimetres from its deltas, labelled as ultrasound
// calibration, and an angle there is measured in millimetres too; a length that leaves the region, or lies in the
// Doppler one, is in pixels, labelled as such.
func TestViewerUltrasoundCalibration(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	const rows, cols = 96, 128
	px := make([]int, rows*cols)
	for y := range rows {
		for x := range cols {
			px[y*cols+x] = (x*3 + y*5) % 200
		}
	}
	region := func(x0, y0, x1, y1 uint32, unitsX, unitsY uint16, dx, dy float64) []*dicom.Element {
		return []*dicom.Element{u32s(0x00186018, x0), u32s(0x0018601A, y0), u32s(0x0018601C, x1), u32s(0x0018601E, y1),
			u16s(0x00186012, "US", 1), u16s(0x00186014, "US", 1), // RegionSpatialFormat 2D, RegionDataType tissue
			u16s(0x00186024, "US", unitsX), u16s(0x00186026, "US", unitsY), f64s(0x0018602C, dx), f64s(0x0018602E, dy)}
	}
	us := testImage{key: "us-regions", sopClass: "1.2.840.10008.5.1.4.1.1.6.1", modality: "US", rows: rows, cols: cols, bits: 8, bitsStored: 8, pixels: px,
		extra: []*dicom.Element{sq(0x00186011,
			region(10, 10, 89, 79, 3, 3, 0.05, 0.04), // cm, cm
			region(92, 10, 125, 79, 4, 7, 0.01, 0.5), // seconds, cm/s
		)}}
	r.stowFiles(t, us.file())
	study, _, _ := us.uids()

	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search")); err != nil {
		screenshot(ctx, t, out, "00-login-failed")
		t.Fatal(err)
	}
	openStudy(ctx, t, r, study)
	if err := chromedp.Do(ctx, chromedp.Click(`button[data-tool="length"]`)); err != nil {
		t.Fatal(err)
	}
	dragImage(ctx, t, [2]float64{20.5, 30.5}, [2]float64{40.5, 30.5})  // 20 px across: 10 mm
	dragImage(ctx, t, [2]float64{20.5, 20.5}, [2]float64{32.5, 35.5})  // 12 across and 15 down: √(6² + 6²) mm
	dragImage(ctx, t, [2]float64{80.5, 40.5}, [2]float64{100.5, 40.5}) // leaves the B-mode region
	dragImage(ctx, t, [2]float64{95.5, 20.5}, [2]float64{95.5, 40.5})  // inside the Doppler region
	// An angle of 45° in millimetres (10 mm across, 10 mm up) that would be 51.3° in pixels (20 across, 25 up): a
	// drag for its first arm, a click for the end of the second.
	if err := chromedp.Do(ctx, chromedp.Click(`button[data-tool="angle"]`)); err != nil {
		t.Fatal(err)
	}
	dragImage(ctx, t, [2]float64{20.5, 60.5}, [2]float64{40.5, 60.5})
	dragImage(ctx, t, [2]float64{20.5, 35.5}, [2]float64{20.5, 35.5})
	if err := chromedp.Do(ctx, chromedp.Click(`button[data-tool="roi"]`)); err != nil {
		t.Fatal(err)
	}
	dragImage(ctx, t, [2]float64{20, 50}, [2]float64{40, 70}) // semi-axes 5 mm and 4 mm: 62.8 mm²
	screenshot(ctx, t, out, "01-measured")

	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.measurements`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := json.Unmarshal([]byte(s), &got); err != nil || len(got) != 6 {
		t.Fatalf("measurements %s (%v)", s, err)
	}
	// The ROI's mean and SD depend on the pixels; its area and label are what this test is about.
	if !strings.HasSuffix(got[5], "(62.8 mm² (超音波の較正))") {
		t.Errorf("the ROI reads %q, want its area as 62.8 mm² (超音波の較正)", got[5])
	}
	want := []string{"10.0 mm (超音波の較正)", "8.5 mm (超音波の較正)", "20 px (画素数:この位置は長さの較正なし)", "20 px (画素数:この位置は長さの較正なし)", "45.0°"}
	if d := cmp.Diff(want, got[:5]); d != "" {
		t.Errorf("lengths and angle (-want +got):\n%s", d)
	}
}
