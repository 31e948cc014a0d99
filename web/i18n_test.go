package web_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryStringInBothLanguages: the interface speaks Japanese and English, so every string key of one dictionary
// is in the other (a missing one would show its key to a doctor), and every key the scripts use exists.
func TestEveryStringInBothLanguages(t *testing.T) {
	b, err := os.ReadFile("ui/i18n.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	jaStart, enStart := strings.Index(src, "const ja = {"), strings.Index(src, "const en = {")
	end := strings.Index(src, "const dicts")
	if jaStart < 0 || enStart < jaStart || end < enStart {
		t.Fatal("ui/i18n.js no longer has the ja and en dictionaries this test reads")
	}
	key := regexp.MustCompile(`(?m)(?:^|[{,]\s*)'([a-z0-9][\w.-]*)':`)
	keys := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, k := range key.FindAllStringSubmatch(s, -1) {
			m[k[1]] = true
		}
		return m
	}
	ja, en := keys(src[jaStart:enStart]), keys(src[enStart:end])
	if len(ja) < 100 {
		t.Fatalf("read only %d Japanese keys: the pattern no longer matches the file", len(ja))
	}
	var missing []string
	for k := range ja {
		if !en[k] {
			missing = append(missing, "en: "+k)
		}
	}
	for k := range en {
		if !ja[k] {
			missing = append(missing, "ja: "+k)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("strings missing in one language:\n%s", strings.Join(missing, "\n"))
	}
	// Keys used literally in the scripts, t('…'), exist.
	use := regexp.MustCompile(`\bt\('([a-z0-9][\w.-]*)'`)
	files, _ := os.ReadDir("ui")
	var unknown []string
	for _, f := range files {
		// link.js is the share-link page for people outside renkei, with its own small dictionary.
		if !strings.HasSuffix(f.Name(), ".js") || f.Name() == "i18n.js" || f.Name() == "link.js" {
			continue
		}
		js, _ := os.ReadFile("ui/" + f.Name())
		for _, m := range use.FindAllStringSubmatch(string(js), -1) {
			if strings.HasSuffix(m[1], ".") {
				continue // a prefix completed at run time: t('ref.status.' + s)
			}
			if !ja[m[1]] && !slices.Contains(unknown, f.Name()+": "+m[1]) {
				unknown = append(unknown, f.Name()+": "+m[1])
			}
		}
	}
	if len(unknown) > 0 {
		t.Errorf("scripts use strings that are in no dictionary:\n%s", strings.Join(unknown, "\n"))
	}
}
