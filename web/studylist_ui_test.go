package web_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
)

// TestStudyListOnPhone: a doctor called to an emergency opens the study list on a phone (390 px wide) or a small
// tablet held upright (744 px), in Japanese or in English, whatever their role. Every row's patient, date, modality and description, and its buttons (open,
// the patient's page, share, link, delete), are on the screen, big enough for a finger (44 px), and the page does not
// scroll sideways: the table once was 405 px wide in Japanese and 539 px in English for an institution's admin, and
// "open" and "share" were off the right edge. A patient reads their own list the same way.
func TestStudyListOnPhone(t *testing.T) {
	r := newRegion(t)
	r.addUser("ito@kita-clinic", r.clinic, renkei.Nurse)
	r.addUser("mori@kita-clinic", r.clinic, renkei.Clerk)
	r.addUser("ono@kita-clinic", r.clinic, renkei.Radiologist)
	// The hospital sees the clinic's P1 shared, with who shared it, why and until when: the longest access text.
	if err := r.db.CreateShare(t.Context(), &renkei.Share{FromInstitution: r.clinic.PK, Patient: renkei.PatientKey{Issuer: r.clinic.Issuer, ID: "P1"},
		ToInstitution: r.hospital.PK, Purpose: renkei.PurposeReferral, Reason: "胸部異常影の精査をお願いします (further work-up of a chest shadow)",
		CreatedBy: r.users["kato@kita-clinic"].pk, ExpiresAt: r.clock.Now().Add(30 * 24 * time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	lp, err := r.db.LocalPatient(t.Context(), r.clinic.PK, renkei.PatientKey{Issuer: r.clinic.Issuer, ID: "P1"})
	if err != nil {
		t.Fatal(err)
	}
	r.addPatientUser("yamada.taro", r.clinic, lp.PK)

	out := artifacts(t)
	for _, c := range []struct {
		login, list string
		rows        int
	}{
		{"admin@kita-clinic", "#/studies", 3}, // share, link and delete: the most buttons
		{"ono@kita-clinic", "#/studies", 3},
		{"kato@kita-clinic", "#/studies", 3},
		{"ito@kita-clinic", "#/studies", 3},
		{"mori@kita-clinic", "#/studies", 3},
		{"tanaka@chuo-hospital", "#/studies", 2}, // shared with the hospital
		{"yamada.taro", "#/my/studies", 2},       // the patient's own
	} {
		t.Run(c.login, func(t *testing.T) {
			ctx, cancel := browser(t)
			defer cancel()
			step := stepper(ctx, t, out)
			rows := fmt.Sprintf(`document.querySelectorAll('#studies tbody tr').length === %d`, c.rows)
			step(c.login+"-login", chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
				r.loginSteps(r.users[c.login]), poll(`document.querySelector('#nav a[href="`+c.list+`"]') !== null`),
				poll(`(document.querySelector('#tour-skip') && document.querySelector('#tour-skip').click(), document.querySelector('#tour') === null)`),
				hashRoute(c.list), poll(rows))
			for _, lang := range []string{"ja", "en"} {
				if lang == "en" {
					step(c.login+"-en", chromedp.Click("#lang"), poll(`document.documentElement.lang === 'en'`), hashRoute(c.list), poll(rows),
						poll(`[...document.querySelectorAll('#studies a.view')].every((a) => a.textContent === 'View images')`))
				}
				for _, size := range [][2]int64{{390, 844}, {744, 1133}} {
					name := fmt.Sprintf("%s-%s-%dx%d", c.login, lang, size[0], size[1])
					step(name, chromedp.EmulateViewport(size[0], size[1], chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
						poll(fmt.Sprintf(`screen.width === %d`, size[0])),
						chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error { // two frames for the layout to follow
							_, err := chromedp.Evaluate[bool](`new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`, chromedp.EvalAwaitPromise)(ctx, tg)
							return err
						}))
					studiesFit(ctx, t, name, c.list == "#/studies")
				}
				step(c.login+"-"+lang+"-back", chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
					poll(`screen.width === 390`))
			}
		})
	}
}

// studyFit is what a phone shows of the study list, in CSS pixels.
type studyFit struct {
	Screen, ScrollWidth, TableWidth float64
	Problems                        []string
}

// studiesFit checks that the study list does not make the page wider than the phone's screen, and that each row's
// cells and buttons are wholly on it, not covered, and (the buttons) at least 44 px each way.
func studiesFit(ctx context.Context, t *testing.T, name string, staff bool) {
	t.Helper()
	f, err := chromedp.Run(ctx, chromedp.Evaluate[studyFit](`(() => {
		const w = screen.width, problems = [];
		const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom].map(Math.round).join(','); };
		for (const tr of document.querySelectorAll('#studies tbody tr')) {
			const row = tr.dataset.study.slice(-6);
			// The thumbnail and date, the patient, the description and the modality.
			const cells = [...tr.children].slice(0, 4);
			cells.forEach((td, i) => {
				const r = td.getBoundingClientRect();
				if (r.width === 0 || r.height === 0 || getComputedStyle(td).visibility !== 'visible') problems.push(row + ' cell ' + (i + 1) + ' is hidden');
				else if (r.left < 0 || r.right > w + 1) problems.push(row + ' cell ' + (i + 1) + ' ' + JSON.stringify(td.innerText) + ' is off the screen: ' + box(td));
			});
			for (const b of tr.querySelectorAll('a, button')) {
				if (b.querySelector('img')) continue; // the thumbnail opens the study too; "View images" is the button for it
				const what = row + ' ' + JSON.stringify(b.textContent);
				b.scrollIntoView({ block: 'center', inline: 'nearest' });
				const r = b.getBoundingClientRect();
				if (r.left < 0 || r.right > w + 1) { problems.push(what + ' is off the screen: ' + box(b)); continue; }
				if (r.width < 44 || r.height < 44) problems.push(what + ' is too small for a finger: ' + Math.round(r.width) + '×' + Math.round(r.height));
				const at = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
				if (!at || !(at === b || b.contains(at))) problems.push(what + ' is covered by ' + (at ? at.tagName + '.' + at.className : 'nothing'));
			}
		}
		scrollTo(0, 0);
		return { Screen: w, ScrollWidth: document.documentElement.scrollWidth, TableWidth: document.querySelector('#studies').getBoundingClientRect().width, Problems: problems };
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if f.ScrollWidth > f.Screen {
		t.Errorf("%s: the page is %.0f px wide on a %.0f px screen (the study list %.0f px): it scrolls sideways", name, f.ScrollWidth, f.Screen, f.TableWidth)
	}
	for _, p := range f.Problems {
		t.Errorf("%s: %s", name, p)
	}
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#studies tbody a.view').length`))
	if err != nil || buttons == 0 {
		t.Errorf("%s: no open button in the list (%v)", name, err)
	}
	if staff {
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#studies tbody a[href^="#/patient/"]').length`)); err != nil || n == 0 {
			t.Errorf("%s: no link to the patient's page in the list (%v)", name, err)
		}
	}
}
