package web_test

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/archive"
	"renkei/internal/dicomtest"
)

// TestBrowserSpeed measures the viewer in headless Chromium on loopback with the Performance API, for a 300-slice
// 512×512 CT (RENKEI_BROWSER_BENCH=1; skipped otherwise, it takes a minute): time from the click to the first image
// and to the whole stack, and frames per second while scrolling and while dragging the window.
func TestBrowserSpeed(t *testing.T) {
	if os.Getenv("RENKEI_BROWSER_BENCH") == "" {
		t.Skip("set RENKEI_BROWSER_BENCH=1 to measure the viewer in Chromium")
	}
	r := newRegion(t)
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	const slices = 300
	start := time.Now()
	for b := 0; b < slices; b += 30 {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for i := b + 1; i <= b+30; i++ {
			p := filepath.Join(r.dir, fmt.Sprintf("big-%d.dcm", i))
			if err := dicomtest.CT(p, dicomtest.CTOptions{PatientID: "BIG1", PatientName: "Speed^Test", Rows: 512, Cols: 512, InstanceNumber: i, Seed: 5000}); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(p)
			os.Remove(p)
			pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
			pw.Write(data)
		}
		mw.Close()
		if st := r.withToken(token).do("POST", "/dicomweb/studies", &body, "Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary()); st != 200 {
			t.Fatalf("store: %d", st)
		}
	}
	t.Logf("stored %d slices of 512×512 in %v", slices, time.Since(start).Round(time.Millisecond))
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(u), chromedp.WaitVisible("#studies a.view")); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(async () => {
		const waitFor = (f) => new Promise((ok) => { const tick = () => (f() ? ok() : requestAnimationFrame(tick)); tick(); });
		const t0 = performance.now();
		document.querySelector('#studies a.view').click();
		await waitFor(() => { const c = document.querySelector('#viewport'); return c && c.dataset.loaded === 'true'; });
		const first = performance.now() - t0;
		await waitFor(() => document.querySelector('#viewport').dataset.stack === 'loaded');
		const all = performance.now() - t0;
		const c = document.querySelector('#viewport');
		// Scrolling: 200 steps, each drawn at once by the key handler, one per animation frame.
		let t1 = performance.now();
		for (let i = 0; i < 200; i++) {
			c.dispatchEvent(new KeyboardEvent('keydown', { key: i < 100 ? 'ArrowDown' : 'ArrowUp', bubbles: true }));
			await new Promise((ok) => requestAnimationFrame(ok));
		}
		const scrollFPS = 200 / ((performance.now() - t1) / 1000);
		// Window/level drag: 200 pointer moves.
		const r = c.getBoundingClientRect();
		c.dispatchEvent(new PointerEvent('pointerdown', { clientX: r.left + 100, clientY: r.top + 100, button: 0, pointerId: 1, bubbles: true }));
		t1 = performance.now();
		for (let i = 0; i < 200; i++) {
			c.dispatchEvent(new PointerEvent('pointermove', { clientX: r.left + 100 + (i % 50), clientY: r.top + 100 + (i % 30), pointerId: 1, bubbles: true }));
			await new Promise((ok) => requestAnimationFrame(ok));
		}
		const wlFPS = 200 / ((performance.now() - t1) / 1000);
		c.dispatchEvent(new PointerEvent('pointerup', { pointerId: 1, bubbles: true }));
		return { first, all, scrollFPS, wlFPS };
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("300×512×512 CT: first image %.0f ms after the click, whole stack %.0f ms; scrolling %.1f frames/s, window drag %.1f frames/s",
		res["first"], res["all"], res["scrollFPS"], res["wlFPS"])
}

// TestBrowserUploadSpeed compares importing a 500-file CD-ROM folder through the web app in Chromium with STOW-RS
// of the same files (4 clients × 10 per request) into the same server (RENKEI_BROWSER_BENCH=1).
func TestBrowserUploadSpeed(t *testing.T) {
	if os.Getenv("RENKEI_BROWSER_BENCH") == "" {
		t.Skip("set RENKEI_BROWSER_BENCH=1 to measure the import page in Chromium")
	}
	r := newRegion(t)
	const files = 500
	cd := filepath.Join(r.dir, "CD500")
	os.MkdirAll(cd, 0o755)
	var paths []string
	for i := 1; i <= files; i++ {
		p := filepath.Join(cd, fmt.Sprintf("IM%05d", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{PatientID: "UP1", Rows: 512, Cols: 512, InstanceNumber: i, Seed: 6000}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// STOW-RS of the same files under other UIDs' twin (a second copy, made with another seed), into the hospital.
	token, _ := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "stow", Write: true})
	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan []string)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range jobs {
				var body bytes.Buffer
				mw := multipart.NewWriter(&body)
				for _, p := range batch {
					data, _ := os.ReadFile(p)
					pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
					pw.Write(data)
				}
				mw.Close()
				r.withToken(token).do("POST", "/dicomweb/studies", &body, "Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
			}
		}()
	}
	for i := 0; i < files; i += 10 {
		jobs <- paths[i : i+10]
	}
	close(jobs)
	wg.Wait()
	stow := float64(files) / time.Since(start).Seconds()

	u := r.users["kato@kita-clinic"]
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(u), chromedp.WaitVisible("#search"),
		hashRoute("#/upload"), chromedp.WaitReady("#upload-folder")); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles("#upload-folder", []string{cd}), chromedp.WaitReady(`#app[data-finished="true"]`)); err != nil {
		t.Fatal(err)
	}
	browserRate := float64(files) / time.Since(start).Seconds()
	summary, _ := chromedp.Run(ctx, chromedp.Text("#upload-summary"))
	t.Logf("%d files of 512×512: STOW-RS %.0f files/s, the import page %.0f files/s (%.0f%% of STOW-RS); %s", files, stow, browserRate, 100*browserRate/stow, summary)
}

// TestBrowserStudyListSpeed measures the study list's first page in Chromium with 100,000 studies in the index
// (RENKEI_BROWSER_BENCH=1): from the search to the rows on screen, with the Performance API.
func TestBrowserStudyListSpeed(t *testing.T) {
	if os.Getenv("RENKEI_BROWSER_BENCH") == "" {
		t.Skip("set RENKEI_BROWSER_BENCH=1 to measure the study list in Chromium")
	}
	r := newRegion(t)
	const studies = 100000
	one := 1
	now := time.Now()
	var wg sync.WaitGroup
	ch := make(chan int, 256)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				name := fmt.Sprintf("Bench%06d^Taro=ベンチ%06d^太郎", i/4, i/4)
				in := &renkei.Instance{Institution: r.hospital.PK, Patient: renkei.PatientKey{Issuer: "CHUO", ID: fmt.Sprintf("S%06d", i/4)},
					PatientName: name, PatientNameKeys: archive.NameKeys(name), StudyInstanceUID: fmt.Sprintf("2.25.7%d", i),
					StudyDate: fmt.Sprintf("20%02d%02d%02d", 10+i%15, 1+i%12, 1+i%28), StudyTime: "120000", SeriesInstanceUID: fmt.Sprintf("2.25.8%d", i),
					Modality: "CT", SeriesNumber: &one, SOPInstanceUID: fmt.Sprintf("2.25.9%d", i), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					InstanceNumber: &one, TransferSyntaxUID: "1.2.840.10008.1.2.1", Rows: 512, Columns: 512, NumberOfFrames: 1, BitsAllocated: 16,
					BlobKey: fmt.Sprintf("%064x", i+1), Size: 525000, ReceivedAt: now, Source: "bench"}
				if _, _, err := r.db.Insert(t.Context(), in); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range studies {
		ch <- i
	}
	close(ch)
	wg.Wait()
	t.Logf("indexed %d studies in %v", studies, time.Since(now).Round(time.Second))
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(u), chromedp.WaitVisible("#studies tbody tr")); err != nil {
		t.Fatal(err)
	}
	times, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(async () => {
		const waitFor = (f) => new Promise((ok) => { const tick = () => (f() ? ok() : requestAnimationFrame(tick)); tick(); });
		const out = [];
		for (const q of ['', 'name=ベンチ000123', 'modality=CT&from=2020-01-01', 'offset=500']) {
			for (let k = 0; k < 5; k++) {
				document.querySelector('#app').replaceChildren();
				const t0 = performance.now();
				location.hash = '#/studies?' + q + '&k=' + k;
				await waitFor(() => document.querySelector('#studies tbody tr') || document.querySelector('#no-studies'));
				out.push(performance.now() - t0);
			}
		}
		return out;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	t.Logf("first page with %d studies: newest %.0f ms, by name %.0f ms, by modality and date %.0f ms, page 11 %.0f ms (medians of 5)",
		studies, med(times[0:5]), med(times[5:10]), med(times[10:15]), med(times[15:20]))
}
