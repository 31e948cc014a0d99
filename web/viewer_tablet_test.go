package web_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"renkei"
)

// TestViewerTablet opens a CT on an emulated touch tablet, in landscape (1024×768) and portrait (768×1024): the tool
// bar and the canvas fit the screen with no horizontal scrolling, every tool button is at least 44 px tall (a
// finger's size), two fingers pinching apart zoom in about the point between them, and one finger applies the
// current tool: it draws a length (7.0 mm at 0.7 mm pixel spacing) and scrolls the stack.
func TestViewerTablet(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	ct := r.stow(token, "T1", "Tablet^Hanako=手帳^花子", 820, 5)
	ctx, cancel := browser(t)
	defer cancel()
	landscape := chromedp.EmulateViewport(1024, 768, chromedp.EmulateLandscape, chromedp.EmulateMobile, chromedp.EmulateTouch)
	if err := chromedp.Do(ctx, landscape, r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#studies a.view")); err != nil {
		t.Fatal(err)
	}
	openStudy(ctx, t, r, ct.studyUID)

	fits(ctx, t, "landscape")
	screenshot(ctx, t, out, "01-landscape")

	// Two fingers 100 px apart around the canvas's centre move to 300 px apart: three times the zoom, and the image
	// point between them stays between them.
	cx, cy := canvasCentre(ctx, t)
	before := imagePointAt(ctx, t, cx, cy)
	touches(ctx, t, input.DispatchTouchEventTypeTouchStart, [2]float64{cx - 50, cy}, [2]float64{cx + 50, cy})
	for _, d := range []float64{80, 110, 150} {
		touches(ctx, t, input.DispatchTouchEventTypeTouchMove, [2]float64{cx - d, cy}, [2]float64{cx + d, cy})
	}
	touches(ctx, t, input.DispatchTouchEventTypeTouchEnd)
	screenshot(ctx, t, out, "02-pinched")
	if z := dataset(ctx, t, "zoom"); z < 2.9 || z > 3.1 {
		t.Errorf("after the pinch the zoom is %.2f, want 3", z)
	}
	if after := imagePointAt(ctx, t, cx, cy); abs(after[0]-before[0]) > 0.5 || abs(after[1]-before[1]) > 0.5 {
		t.Errorf("the pinch moved the image under the fingers from %v to %v", before, after)
	}

	// One finger with the length tool: a measurement, as with the mouse.
	press(ctx, t, "#reset")
	press(ctx, t, `button[data-tool="length"]`)
	from, to := imageToClient(ctx, t, 2.5, 3.5), imageToClient(ctx, t, 12.5, 3.5)
	touches(ctx, t, input.DispatchTouchEventTypeTouchStart, from)
	touches(ctx, t, input.DispatchTouchEventTypeTouchMove, [2]float64{(from[0] + to[0]) / 2, from[1]})
	touches(ctx, t, input.DispatchTouchEventTypeTouchMove, to)
	touches(ctx, t, input.DispatchTouchEventTypeTouchEnd)
	screenshot(ctx, t, out, "03-length-by-finger")
	if m, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.measurements`)); err != nil || m != `["7.0 mm"]` {
		t.Errorf("a one-finger drag with the length tool measured %s (%v), want 7.0 mm", m, err)
	}

	// One finger with the scroll tool goes through the stack.
	press(ctx, t, `button[data-tool="stack"]`)
	slice := dataset(ctx, t, "slice")
	touches(ctx, t, input.DispatchTouchEventTypeTouchStart, [2]float64{cx, cy - 60})
	for _, y := range []float64{-40, -20, 0, 20} {
		touches(ctx, t, input.DispatchTouchEventTypeTouchMove, [2]float64{cx, cy + y})
	}
	touches(ctx, t, input.DispatchTouchEventTypeTouchEnd)
	if got := dataset(ctx, t, "slice"); got == slice {
		t.Errorf("a one-finger drag with the scroll tool stayed on slice %v", got)
	}

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(768, 1024, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
		t.Fatal(err)
	}
	// Turned: once the window has its new size, two frames for the layout to follow.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.innerWidth === 768`)); err != nil {
		t.Fatal(err)
	}
	if err := js[any](ctx, t, `new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`, nil); err != nil {
		t.Fatal(err)
	}
	fits(ctx, t, "portrait")
	screenshot(ctx, t, out, "04-portrait")
}

// layout is where the viewer's parts are on the screen, in CSS pixels.
type layout struct {
	ScrollWidth, Width, Height float64
	Canvas, Tools              [4]float64 // left, top, right, bottom
	Outside                    []string   // tool buttons not wholly on the screen
	Small                      []string   // tool buttons less than 44 px tall, with their height
}

// fits checks that the tool bar and the canvas are on the screen, without horizontal scrolling, with buttons a
// finger can hit and a canvas worth looking at.
func fits(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](`(() => {
		const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
		const w = document.documentElement.clientWidth; const h = window.innerHeight;
		const buttons = [...document.querySelectorAll('.tools button')];
		return { ScrollWidth: document.documentElement.scrollWidth, Width: w, Height: h,
			Canvas: box(document.querySelector('#viewport')), Tools: box(document.querySelector('.tools')),
			Outside: buttons.filter((b) => { const r = b.getBoundingClientRect(); return r.left < 0 || r.right > w || r.top < 0 || r.bottom > h; }).map((b) => b.textContent),
			Small: buttons.filter((b) => b.getBoundingClientRect().height < 44).map((b) => b.textContent + ' ' + b.getBoundingClientRect().height) };
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if l.ScrollWidth > l.Width {
		t.Errorf("%s: the page is %.0f px wide on a %.0f px screen: it scrolls sideways", name, l.ScrollWidth, l.Width)
	}
	for what, b := range map[string][4]float64{"canvas": l.Canvas, "tool bar": l.Tools} {
		if b[0] < 0 || b[1] < 0 || b[2] > l.Width || b[3] > l.Height {
			t.Errorf("%s: the %s at %v is not wholly on the %.0f×%.0f screen", name, what, b, l.Width, l.Height)
		}
	}
	if w, h := l.Canvas[2]-l.Canvas[0], l.Canvas[3]-l.Canvas[1]; w < 0.6*l.Width || h < 0.5*l.Height {
		t.Errorf("%s: the canvas is %.0f×%.0f on a %.0f×%.0f screen", name, w, h, l.Width, l.Height)
	}
	if len(l.Outside) > 0 {
		t.Errorf("%s: tool buttons off the screen: %s", name, strings.Join(l.Outside, ", "))
	}
	if len(l.Small) > 0 {
		t.Errorf("%s: tool buttons under 44 px tall: %s", name, strings.Join(l.Small, ", "))
	}
}

// touches sends one touch event with a finger at each point (ids 1, 2…); TouchEnd takes none.
func touches(ctx context.Context, t *testing.T, typ input.DispatchTouchEventType, points ...[2]float64) {
	t.Helper()
	tp := []*input.TouchPoint{}
	for i, p := range points {
		id := float64(i + 1)
		tp = append(tp, &input.TouchPoint{X: p[0], Y: p[1], ID: &id})
	}
	if _, err := devtools(ctx, input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: typ, TouchPoints: tp}); err != nil {
		t.Fatal(err)
	}
}

// press presses a button. (A tap is the browser's to turn into a click, and synthetic taps make one only now and
// then, seconds late, in headless Chromium: the buttons are pressed with the mouse, the canvas is touched.)
func press(ctx context.Context, t *testing.T, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(sel)); err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
}

func canvasCentre(ctx context.Context, t *testing.T) (float64, float64) {
	t.Helper()
	xy, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => { const r = document.querySelector('#viewport').getBoundingClientRect();
		return [r.left + r.width / 2, r.top + r.height / 2]; })()`))
	if err != nil {
		t.Fatal(err)
	}
	return xy[0], xy[1]
}

// imagePointAt is the image point (in pixels) under a point of the screen.
func imagePointAt(ctx context.Context, t *testing.T, x, y float64) [2]float64 {
	t.Helper()
	p, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => { const c = document.querySelector('#viewport');
		const v = JSON.parse(c.dataset.view); const r = c.getBoundingClientRect();
		return [(%f - r.left - v.ox) / v.scale, (%f - r.top - v.oy) / v.scale]; })()`, x, y)))
	if err != nil {
		t.Fatal(err)
	}
	return [2]float64{p[0], p[1]}
}

// imageToClient is the point of the screen where an image point is drawn.
func imageToClient(ctx context.Context, t *testing.T, x, y float64) [2]float64 {
	t.Helper()
	p, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => { const c = document.querySelector('#viewport');
		const v = JSON.parse(c.dataset.view); const r = c.getBoundingClientRect();
		return [r.left + v.ox + %f * v.scale, r.top + v.oy + %f * v.scale]; })()`, x, y)))
	if err != nil {
		t.Fatal(err)
	}
	return [2]float64{p[0], p[1]}
}

// dataset reads a number the viewer's canvas publishes as a data- attribute.
func dataset(ctx context.Context, t *testing.T, name string) float64 {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.`+name))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("data-%s is %q", name, s)
	}
	return v
}

func abs(x float64) float64 { return max(x, -x) }
