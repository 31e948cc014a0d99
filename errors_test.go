package renkei_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
)

func TestErrorMessageIn(t *testing.T) {
	both := renkei.Errorj("op", renkei.Forbidden, "%[2]s への情報提供に同意がありません。", "no consent to disclose to %[1]s", "the region", "地域")
	both.Code = "consent-required"
	wrapped := fmt.Errorf("share: %w", &renkei.Error{Op: "web", Kind: renkei.Forbidden, Err: both})
	english := renkei.Errorf("op", renkei.Invalid, "bad %s", "thing")
	for _, tc := range []struct {
		name     string
		err      error
		lang     string
		want     string
		wantCode string
	}{
		{"Japanese", both, "ja", "地域 への情報提供に同意がありません。", "consent-required"},
		{"English", both, "en", "no consent to disclose to the region", "consent-required"},
		{"wrapped, Japanese", wrapped, "ja", "地域 への情報提供に同意がありません。", "consent-required"},
		{"wrapped, English", wrapped, "en", "no consent to disclose to the region", "consent-required"},
		{"not yet translated", english, "ja", "bad thing", ""},
		{"not a renkei error", fmt.Errorf("disk full"), "en", "an internal error occurred", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := []string{renkei.ErrorMessageIn(tc.err, tc.lang), renkei.ErrorCode(tc.err)}
			if diff := cmp.Diff([]string{tc.want, tc.wantCode}, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	if got := renkei.ErrorMessage(both); got != "no consent to disclose to the region" {
		t.Errorf("ErrorMessage (the logs' language) = %q", got)
	}
}

func TestAcceptLanguage(t *testing.T) {
	for header, want := range map[string]string{
		"":                           "en", // a program that states no language
		"ja":                         "ja",
		"ja-JP,ja;q=0.9,en-US;q=0.8": "ja",
		"en-US,en;q=0.9,ja;q=0.8":    "en",
		"fr, en;q=0.3, ja-JP;q=0.8":  "ja",
		"EN-gb":                      "en",
		"de, fr":                     "en",
		"ja;q=0, en;q=0.1":           "en",
		"en;q=0.5, ja;q=0.5":         "en", // a tie goes to the first
		"ja;q=0.5, en;q=0.5":         "ja",
		"*":                          "en",
	} {
		if got := renkei.AcceptLanguage(header); got != want {
			t.Errorf("AcceptLanguage(%q) = %q, want %q", header, got, want)
		}
	}
}
