package fhir_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renkei"
	"renkei/fhir"
)

// FuzzParse feeds Parse and ParseLetterDocument arbitrary bytes: neither may panic, an error is always a
// *fhir.ValidationError with at least one Error issue, and an accepted input has warnings only. `go test` runs
// the seeds (every sample in testdata and a few hostile shapes); `go test -fuzz FuzzParse ./fhir` explores.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"resourceType":"Patient","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
		`{"resourceType":"AllergyIntolerance","code":{"coding":[{"system":1}]},"patient":"x"}`,
		`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition","section":[{"text":{"div":"<div><p class=\"renkei-x\">a<br/>b"}}]}}]}`,
		`{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"!!!","size":-1}}]}`,
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m","code":"x"}],"subject":{"reference":"Patient/1"}}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"a","resource":{"resourceType":"Provenance","target":[{"reference":"a"}],"agent":[{"who":{"reference":"a"}}]}}]}`,
		`{"resourceType":"Condition","onsetDateTime":"2024-02-30","recordedDate":"9999-12-31T23:59:60+14:00","code":{"text":"x"},"subject":{"display":"x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(name string, ok bool, warnings []fhir.Issue, err error) {
			if err != nil {
				var ve *fhir.ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("%s: error %v is not a ValidationError", name, err)
				}
				if k := renkei.ErrorKind(err); k != renkei.Invalid && k != renkei.TooLarge {
					t.Fatalf("%s: kind %v", name, k)
				}
				for _, is := range ve.Issues {
					if is.Severity == fhir.Error && is.Location != "" && is.MessageJa != "" {
						return
					}
				}
				t.Fatalf("%s: error without an Error issue: %v", name, ve.Issues)
			}
			if !ok {
				t.Fatalf("%s: no result and no error", name)
			}
			for _, w := range warnings {
				if w.Severity != fhir.Warning {
					t.Fatalf("%s: accepted with issue %v", name, w)
				}
			}
		}
		im, err := fhir.Parse(data)
		var warnings []fhir.Issue
		if im != nil {
			warnings = im.Warnings
		}
		check("Parse", im != nil, warnings, err)
		li, err := fhir.ParseLetterDocument(data)
		warnings = nil
		if li != nil {
			warnings = li.Warnings
		}
		check("ParseLetterDocument", li != nil, warnings, err)
	})
}
