package metrics

import "testing"

// TestDICOMweb: every DICOMweb request is named by its kind, never by its path (which holds UIDs).
func TestDICOMweb(t *testing.T) {
	for _, c := range []struct {
		method, path string
		uri          bool
		want         string
	}{
		{"GET", "/dicomweb/studies", false, "qido"},
		{"GET", "/dicomweb/studies/1.2.3/series", false, "qido"},
		{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances", false, "qido"},
		{"GET", "/dicomweb/instances", false, "qido"},
		{"POST", "/dicomweb/studies", false, "stow"},
		{"POST", "/dicomweb/studies/1.2.3", false, "stow"},
		{"GET", "/dicomweb/studies/1.2.3", false, "wado"},
		{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7", false, "wado"},
		{"GET", "/dicomweb/studies/1.2.3/metadata", false, "wado-metadata"},
		{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/frames/1,2", false, "wado-frames"},
		{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/rendered", false, "wado-rendered"},
		{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/bulkdata/7FE00010", false, "wado-bulkdata"},
		{"GET", "/dicomweb/wado", true, "wado-uri"},
		{"DELETE", "/dicomweb/studies/1.2.3", false, "delete"},
		{"OPTIONS", "/dicomweb/studies", false, "preflight"},
		{"PUT", "/dicomweb/studies", false, "other"},
	} {
		if got := DICOMweb(c.method, c.path, c.uri); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestTransport(t *testing.T) {
	for source, want := range map[string]string{"STOW-RS": "stow", "STOW-RS from AE CT_ROOM1": "stow", "C-STORE from CT1": "dimse",
		"upload": "upload", "DICOMDIR import": "upload", "bench": "other"} {
		if got := Transport(source); got != want {
			t.Errorf("Transport(%q) = %q, want %q", source, got, want)
		}
	}
}
