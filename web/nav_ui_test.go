package web_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"renkei"
)

// TestMenuFits: on a laptop or a tablet (1,024 px up) every item of the top menu is on the screen, in Japanese and in
// English, for the two admins (the institution's has the most items, the region's the most pages): the menu wraps
// onto a second line rather than scrolling sideways, which users did not know to do ("Help" was off the right edge at
// 1,024 px). On a phone the items are all on the screen too, on more lines, and the study list under them does not
// make the page scroll sideways either.
func TestMenuFits(t *testing.T) {
	r := newRegion(t)
	region := renkei.Institution{ID: "region", Name: "事務局", Kind: renkei.RegionOperator}
	if err := r.db.PutInstitution(t.Context(), &region, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("admin@region", region, renkei.RegionAdmin)
	out := artifacts(t)
	for _, c := range []struct {
		login string
		items int
	}{
		{"admin@kita-clinic", 12},
		{"admin@region", 11},
	} {
		t.Run(c.login, func(t *testing.T) {
			ctx, cancel := browser(t)
			defer cancel()
			step := stepper(ctx, t, out)
			step(c.login+"-login", chromedp.EmulateViewport(1024, 768), r.loginSteps(r.users[c.login]), chromedp.WaitVisible("#search"),
				poll(`(document.querySelector('#tour-skip') && document.querySelector('#tour-skip').click(), document.querySelector('#tour') === null)`))
			for _, lang := range []string{"ja", "en"} {
				if lang == "en" {
					step(c.login+"-en", chromedp.Click("#lang"), poll(`document.documentElement.lang === 'en' && document.querySelector('#nav a[href="#/help"]').textContent === 'Help'`))
				}
				for _, size := range [][2]int64{{1024, 768}, {1280, 800}, {1599, 900}, {390, 844}} {
					name := fmt.Sprintf("%s-%s-%dx%d", c.login, lang, size[0], size[1])
					vp := chromedp.EmulateViewport(size[0], size[1])
					if size[0] < 700 {
						vp = chromedp.EmulateViewport(size[0], size[1], chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch)
					}
					step(name, vp, poll(fmt.Sprintf(`innerWidth === %[1]d || screen.width === %[1]d`, size[0])),
						chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error { // two frames for the layout to follow
							_, err := chromedp.Evaluate[bool](`new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`, chromedp.EvalAwaitPromise)(ctx, tg)
							return err
						}))
					menuFits(ctx, t, name, c.items)
				}
			}
		})
	}
}

// menu is where the top menu's items are, in CSS pixels.
type menu struct {
	Items               int
	Wide                []string // the first elements past the right edge, if the page is too wide
	Outside             []string // items not wholly on the screen, with their box
	ScrollWidth, Width  float64
	NavScroll, NavWidth float64
}

// menuFits checks that the menu's items are all wholly on the screen and that neither the menu nor the page (the
// study list under it, on a phone its cards) scrolls sideways.
func menuFits(ctx context.Context, t *testing.T, name string, items int) {
	t.Helper()
	m, err := chromedp.Run(ctx, chromedp.Evaluate[menu](`(() => {
		// A phone's page that is too wide widens the layout viewport: the screen is the measure.
		const w = Math.min(document.documentElement.clientWidth, innerWidth, matchMedia("(max-width: 700px)").matches ? screen.width : innerWidth); const h = window.innerHeight;
		const links = [...document.querySelectorAll('#nav a')];
		const nav = document.querySelector('#nav');
		const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 1).slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
		return { Wide: wide, Items: links.length, ScrollWidth: document.documentElement.scrollWidth, Width: w, NavScroll: nav.scrollWidth, NavWidth: nav.clientWidth,
			Outside: links.filter((a) => { const r = a.getBoundingClientRect(); return r.left < 0 || r.top < 0 || r.right > w || r.bottom > h; })
				.map((a) => { const r = a.getBoundingClientRect(); return a.textContent + ' ' + [r.left, r.top, r.right, r.bottom].map(Math.round).join(','); }) };
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Items != items {
		t.Errorf("%s: the menu has %d items, want %d", name, m.Items, items)
	}
	if len(m.Outside) > 0 {
		t.Errorf("%s: menu items not wholly on the %.0f px wide screen: %q", name, m.Width, m.Outside)
	}
	if m.NavScroll > m.NavWidth+1 {
		t.Errorf("%s: the menu is %.0f px wide in %.0f px: it scrolls sideways", name, m.NavScroll, m.NavWidth)
	}
	if m.ScrollWidth > m.Width {
		t.Errorf("%s: the page is %.0f px wide on a %.0f px screen: it scrolls sideways %q", name, m.ScrollWidth, m.Width, m.Wide)
	}
}
