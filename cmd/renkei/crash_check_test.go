package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// crashChecked counts what one check looked at.
type crashChecked struct{ acked, listed, orphans int }

// check runs after the restart that follows kill k, with no client running:
//   - blobs/tmp is empty (Open removes what a crash left there);
//   - every acknowledged instance is listed by QIDO-RS in the study and series it was sent in;
//   - every listed instance is one that was sent, and every study's NumberOfStudyRelatedInstances and
//     NumberOfStudyRelatedSeries equal what /studies/{study}/instances lists;
//   - WADO-RS of each study with transfer-syntax=* returns exactly the listed instances, each byte for byte as sent
//     (so an acknowledged instance comes back with the SHA-256 of what was sent, and nothing is half present);
//   - every file under blobs/ outside tmp is named by a SHA-256 key, under fan-out folders that spell a prefix of
//     it, and holds bytes whose SHA-256 is its name.
func (c *crashRun) check(k int) crashChecked {
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	defer func() {
		const show = 20
		for i, f := range fails {
			if i == show {
				c.t.Errorf("kill %d (seed %d): … and %d more failures", k, c.seed, len(fails)-show)
				break
			}
			c.t.Errorf("kill %d (seed %d): %s", k, c.seed, f)
		}
	}()
	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	var got crashChecked
	// who says where an instance came from, for failure messages.
	who := func(sop string) string {
		sent := l.sent[sop]
		if sent == nil {
			return "never sent"
		}
		a, ok := l.acked[sop]
		if !ok {
			return fmt.Sprintf("sent in kill %d by client %d, never acknowledged", sent.kill, sent.client)
		}
		return fmt.Sprintf("sent in kill %d by client %d, acknowledged in kill %d", sent.kill, sent.client, a.kill)
	}

	tmp, err := os.ReadDir(filepath.Join(c.data, "blobs", "tmp"))
	if err != nil {
		fail("read blobs/tmp: %v", err)
	}
	for _, e := range tmp {
		fail("blobs/tmp/%s is still there after the restart (Open should remove what a crash left)", e.Name())
	}

	// Every instance QIDO-RS knows, page by page.
	listed := map[string]qidoInstance{}
	for offset := 0; ; {
		var page []map[string]dicomJSON
		if err := c.srv.getJSON(c.srv.url+"/instances?limit=10000&offset="+strconv.Itoa(offset), &page); err != nil {
			fail("QIDO-RS /instances: %v", err)
			return got
		}
		for _, o := range page {
			in := qidoInstance{sop: o["00080018"].str(), study: o["0020000D"].str(), series: o["0020000E"].str()}
			if _, dup := listed[in.sop]; dup {
				fail("QIDO-RS /instances lists %s twice", in.sop)
			}
			listed[in.sop] = in
		}
		if len(page) < 10000 {
			break
		}
		offset += len(page)
	}
	got.listed = len(listed)
	for sop := range l.acked {
		got.acked++
		sent := l.sent[sop]
		in, ok := listed[sop]
		switch {
		case !ok:
			fail("instance %s of study %s (%s) is not found by QIDO-RS", sop, sent.study, who(sop))
		case in.study != sent.study || in.series != sent.series:
			fail("instance %s (%s) is listed in study %s series %s; it was sent in study %s series %s", sop, who(sop), in.study, in.series, sent.study, sent.series)
		}
	}
	byStudy := map[string][]string{}
	for sop, in := range listed {
		if _, ok := l.sent[sop]; !ok {
			fail("QIDO-RS lists instance %s (study %s), which no client sent", sop, in.study)
		}
		byStudy[in.study] = append(byStudy[in.study], sop)
	}

	// Study counters against the instance lists, then every study retrieved whole.
	var studies []map[string]dicomJSON
	if err := c.srv.getJSON(c.srv.url+"/studies?limit=10000", &studies); err != nil {
		fail("QIDO-RS /studies: %v", err)
		return got
	}
	seenStudy := map[string]bool{}
	stored := map[[sha256.Size]byte]bool{}
	for _, st := range studies {
		study := st["0020000D"].str()
		seenStudy[study] = true
		var insts []map[string]dicomJSON
		if err := c.srv.getJSON(c.srv.url+"/studies/"+study+"/instances?limit=10000", &insts); err != nil {
			fail("QIDO-RS /studies/%s/instances: %v", study, err)
			continue
		}
		inStudy := map[string]bool{}
		series := map[string]bool{}
		for _, o := range insts {
			inStudy[o["00080018"].str()] = true
			series[o["0020000E"].str()] = true
		}
		if n, err := st["00201208"].num(); err != nil || n != len(insts) {
			fail("study %s: NumberOfStudyRelatedInstances is %s but /studies/%s/instances lists %d", study, st["00201208"].raw(), study, len(insts))
		}
		if n, err := st["00201206"].num(); err != nil || n != len(series) {
			fail("study %s: NumberOfStudyRelatedSeries is %s but its instances are in %d series", study, st["00201206"].raw(), len(series))
		}
		if len(inStudy) != len(byStudy[study]) {
			fail("study %s: /studies/%s/instances lists %d instances, /instances lists %d in it", study, study, len(inStudy), len(byStudy[study]))
		}
		parts, err := c.srv.retrieve(c.srv.url + "/studies/" + study)
		if err != nil {
			fail("WADO-RS of study %s (%d instances listed): %v", study, len(insts), err)
			// Name the instances that cannot be retrieved.
			for _, o := range insts {
				sop := o["00080018"].str()
				if _, err := c.srv.retrieve(c.srv.url + "/studies/" + study + "/series/" + o["0020000E"].str() + "/instances/" + sop); err != nil {
					fail("instance %s of study %s (%s) is listed by QIDO-RS but WADO-RS fails: %v", sop, study, who(sop), err)
				}
			}
			continue
		}
		back := map[string]bool{}
		for i, p := range parts {
			sum := sha256.Sum256(p)
			stored[sum] = true
			sent, ok := l.bySHA[c.contentKey(p)]
			switch {
			case !ok:
				fail("WADO-RS of study %s: part %d (%d bytes, SHA-256 %x) is not the bytes of any instance sent: a damaged or partial instance", study, i+1, len(p), sum)
			case !inStudy[sent.sop]:
				fail("WADO-RS of study %s returns instance %s (%s), which /studies/%s/instances does not list", study, sent.sop, who(sent.sop), study)
			case back[sent.sop]:
				fail("WADO-RS of study %s returns instance %s (%s) twice", study, sent.sop, who(sent.sop))
			default:
				back[sent.sop] = true
			}
		}
		for sop := range inStudy {
			if !back[sop] {
				fail("instance %s of study %s (%s) is listed by QIDO-RS but WADO-RS does not return it with the bytes sent", sop, study, who(sop))
			}
		}
	}
	for study, sops := range byStudy {
		if !seenStudy[study] {
			fail("QIDO-RS /instances lists %d instances of study %s, which /studies does not list", len(sops), study)
		}
	}

	// The blob folder: whole files under their keys, nothing else but tmp.
	root := filepath.Join(c.data, "blobs")
	orphans := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		// Whatever the fan-out (ab/cd/<key>, abc/<key>…), the folder names spell a prefix of the key.
		prefix := strings.Join(parts[:len(parts)-1], "")
		name := parts[len(parts)-1]
		switch {
		case rel == "." || rel == "tmp":
			return nil
		case parts[0] == "tmp":
			return nil // reported above
		case d.IsDir():
			if !isHex(prefix+name) || len(prefix+name) >= 64 {
				fail("blobs/%s: a folder that is not a fan-out folder (hex prefix of keys)", rel)
				return fs.SkipDir
			}
			return nil
		case !d.Type().IsRegular() || len(name) != 64 || !isHex(name) || !strings.HasPrefix(name, prefix):
			fail("blobs/%s: a file outside blobs/tmp that is not a blob named by its SHA-256 key", rel)
			return nil
		}
		var key [sha256.Size]byte
		hex.Decode(key[:], []byte(name))
		if !stored[key] {
			orphans++ // complete, but no instance uses it: stored, then killed before the index commit
		}
		if c.blobs[path] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			fail("blobs/%s: %v", rel, err)
			return nil
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != name {
			sent := l.bySHA[sum]
			fail("blobs/%s holds %d bytes whose SHA-256 is %x: a partial or damaged blob under a real key (sent instance: %v)", rel, len(b), sum, sent != nil)
			return nil
		}
		c.blobs[path] = true
		return nil
	})
	if err != nil {
		fail("walk %s: %v", root, err)
	}
	got.orphans = orphans
	return got
}

// qidoInstance is one instance as QIDO-RS lists it.
type qidoInstance struct{ sop, study, series string }

// retrieve gets every instance under a WADO-RS URL as stored (transfer-syntax=*).
func (s *crashServer) retrieve(u string) ([][]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		return nil, fmt.Errorf("response is %q, want multipart/related", resp.Header.Get("Content-Type"))
	}
	var parts [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return parts, fmt.Errorf("after %d parts: %w", len(parts), err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return parts, fmt.Errorf("part %d: %w", len(parts)+1, err)
		}
		parts = append(parts, b)
	}
}

// getJSON gets a DICOM JSON answer (QIDO-RS) into v.
func (s *crashServer) getJSON(u string, v any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%v: %.200s", err, b)
	}
	return nil
}

// dicomJSON is one attribute of a DICOM JSON object (PS3.18 F.2).
type dicomJSON struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value"`
}

func (a dicomJSON) str() string {
	var s string
	if len(a.Value) > 0 && json.Unmarshal(a.Value[0], &s) == nil {
		return s
	}
	return ""
}

// num reads an IS or US value, given as a JSON number or string (PS3.18 F.2.3.1 allows both for IS).
func (a dicomJSON) num() (int, error) {
	if len(a.Value) == 0 {
		return 0, fmt.Errorf("no value")
	}
	var s string
	if json.Unmarshal(a.Value[0], &s) == nil {
		return strconv.Atoi(strings.TrimSpace(s))
	}
	var n int
	err := json.Unmarshal(a.Value[0], &n)
	return n, err
}

func (a dicomJSON) raw() string {
	if len(a.Value) == 0 {
		return "absent"
	}
	return string(a.Value[0])
}

func (a dicomJSON) items() []map[string]dicomJSON {
	var out []map[string]dicomJSON
	for _, v := range a.Value {
		var it map[string]dicomJSON
		if json.Unmarshal(v, &it) == nil {
			out = append(out, it)
		}
	}
	return out
}

func isHex(s string) bool {
	return s != "" && !slices.ContainsFunc([]byte(s), func(b byte) bool { return !strings.ContainsRune("0123456789abcdef", rune(b)) })
}
