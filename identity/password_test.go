package identity

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestPasswordHash(t *testing.T) {
	h := HashPassword("aozora bunko 2026")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Errorf("hash %q is not argon2id with the documented parameters", h)
	}
	if !CheckPassword(h, "aozora bunko 2026") {
		t.Error("the right password is refused")
	}
	for _, wrong := range []string{"", "aozora bunko 2025", "Aozora bunko 2026", "aozora bunko 2026 "} {
		if CheckPassword(h, wrong) {
			t.Errorf("%q is accepted", wrong)
		}
	}
	if h2 := HashPassword("aozora bunko 2026"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=65536,t=3,p=2$c2FsdA$a2V5", "$argon2id$v=19$m=0,t=3,p=2$c2FsdA$a2V5",
		"$argon2id$v=19$m=99999999,t=3,p=2$c2FsdA$a2V5", "$argon2id$v=19$m=65536,t=3,p=2$!!$a2V5"} {
		if CheckPassword(bad, "x") {
			t.Errorf("malformed hash %q accepted a password", bad)
		}
	}
}

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		pw     string
		ok     bool
		reason string
	}{
		{"short", false, "at least 10"},
		{"password123", false, "most used"},
		{"aaaaaaaaaaaa", false, "too few different"},
		{"tanaka-is-me-2026", false, "login or name"},
		{"田中一郎のパスワード", false, "login or name"},
		{"correct horse battery", true, ""},
		{"さくらさくら弥生の空は", true, ""}, // Japanese passphrases count characters, not bytes
		{strings.Repeat("ab", 129), false, "at most 256"},
	} {
		err := CheckPolicy(tc.pw, "tanaka@chuo-hospital", "田中一郎")
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.reason)) {
			t.Errorf("%q: %v, want ok=%v (%s)", tc.pw, err, tc.ok, tc.reason)
		}
	}
}

func TestOneTimePassword(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	re := regexp.MustCompile(`^[a-hj-km-np-z2-9]{4}(-[a-hj-km-np-z2-9]{4}){3}$`)
	for range 2000 {
		p := OneTimePassword()
		if !re.MatchString(p) {
			t.Fatalf("%q: not four groups of four unambiguous characters", p)
		}
		if seen[p] {
			t.Fatalf("%q repeated", p)
		}
		seen[p] = true
		for _, c := range strings.ReplaceAll(p, "-", "") {
			counts[c]++
		}
	}
	// 32,000 characters over 31 symbols: ~1032 each. Modulo bias would show as some symbols near 1.25× the others.
	for c, n := range counts {
		if n < 850 || n > 1220 {
			t.Errorf("symbol %q appears %d times in 32000: not uniform", c, n)
		}
	}
}

func TestTOTPStep(t *testing.T) {
	secret := "JBSWY3DPEHPK3PXP"
	now := time.Unix(1_800_000_000, 0)
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		code, _ := totp.GenerateCode(secret, now.Add(d))
		step, ok := totpStep(secret, code, now)
		if !ok || step != now.Add(d).Unix()/30 {
			t.Errorf("code of %v: step %d %v, want %d", d, step, ok, now.Add(d).Unix()/30)
		}
	}
	for _, d := range []time.Duration{-90 * time.Second, 90 * time.Second} {
		code, _ := totp.GenerateCode(secret, now.Add(d))
		if _, ok := totpStep(secret, code, now); ok {
			t.Errorf("a code %v away was accepted", d)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := totpStep(secret, bad, now); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
