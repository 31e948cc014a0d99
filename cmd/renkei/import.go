package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"renkei/dicom"
)

const importUsage = `Usage: renkei import [--server URL] [--token TOKEN | --token-file FILE] PATH...

Imports DICOM images into renkei, as the web app's import page does: files, folders (a CD-ROM or USB stick: every
file is looked at, whether its DICOMDIR lists it or not, and files the DICOMDIR lists but that cannot be read are
reported) and zip files (their unsafe entries are refused, never extracted). Each image is sent to the server's
POST /api/upload with a read-write API token (renkei admin token add … --write).

Prints a progress line and, at the end, what was stored, what was already there and what was refused and why.
Exits 1 if any image was refused; files that are not DICOM images (a CD's viewer program, DICOMDIR itself) are
listed as skipped and do not count.

Flags (also RENKEI_SERVER, RENKEI_TOKEN, RENKEI_TOKEN_FILE):
`

// importItem is one file to send: a name as the user sees it and its bytes.
type importItem struct {
	name string
	size int64
	open func() (io.ReadCloser, error)
}

// importResult is the server's answer for one file (web.uploadResult), or a local refusal.
type importResult struct {
	File    string `json:"file"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

var reasonWords = map[string]string{
	"not-dicom": "not a DICOM image", "truncated": "the file is cut short (perhaps the CD could not be read)",
	"incomplete": "a required item such as the patient ID or study number is missing", "conflict": "an image with the same number but other content is already stored",
	"no-space": "the server is out of space", "too-large": "the file is too large", "unsafe-path": "an unsafe path inside the zip (not opened)",
	"symlink": "a link inside the zip (not opened)", "zip-bomb": "a zip entry that would expand enormously (not opened)", "bad-zip": "a damaged or unsupported zip",
	"unlisted": "listed in the CD's DICOMDIR but missing or unreadable", "dicomdir": "the CD's index, not an image", "failed": "could not be stored", "unreadable": "the file could not be read",
}

func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renkei import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	server := fs.String("server", "http://localhost:8080", "renkei's URL")
	token := fs.String("token", "", "a read-write API token")
	tokenFile := fs.String("token-file", "", "a file holding the token (keeps it out of the shell's history)")
	workers := fs.Int("parallel", 4, "files sent at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		*token = strings.TrimSpace(string(b))
	}
	if *token == "" {
		return errors.New("an API token is needed: --token, --token-file or RENKEI_TOKEN (renkei admin token add NAME --institution ID --write)")
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("name at least one file, folder or zip to import")
	}
	client := &http.Client{Timeout: 30 * time.Minute}
	if err := checkToken(ctx, client, *server, *token); err != nil {
		return err
	}
	var items []importItem
	var local []importResult // refused or skipped before sending
	for _, p := range fs.Args() {
		if err := collect(p, &items, &local); err != nil {
			return err
		}
	}
	var total int64
	for _, it := range items {
		total += it.size
	}
	results := make([]importResult, len(items))
	var mu sync.Mutex
	var sent, done int64
	progress := func() {
		mu.Lock()
		defer mu.Unlock()
		pct := 100.0
		if total > 0 {
			pct = float64(sent) * 100 / float64(total)
		}
		bar := strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5))
		fmt.Fprintf(stderr, "\r[%s] %3.0f%%  %d/%d files  %.1f MB", bar, pct, done, len(items), float64(sent)/1e6)
	}
	queue := make(chan int)
	var wg sync.WaitGroup
	for range max(1, *workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range queue {
				results[i] = send(ctx, client, *server, *token, items[i])
				mu.Lock()
				sent += items[i].size
				done++
				mu.Unlock()
				progress()
			}
		}()
	}
	progress()
	for i := range items {
		if ctx.Err() != nil {
			break
		}
		queue <- i
	}
	close(queue)
	wg.Wait()
	fmt.Fprintln(stderr)
	counts := map[string]int{}
	var refused []importResult
	for _, r := range append(results, local...) {
		counts[r.Outcome]++
		if r.Outcome == "refused" || r.Outcome == "skipped" {
			refused = append(refused, r)
		}
	}
	sort.Slice(refused, func(i, j int) bool { return refused[i].File < refused[j].File })
	fmt.Fprintf(stdout, "%d stored, %d already stored, %d refused, %d skipped (not images)\n", counts["stored"], counts["duplicate"], counts["refused"], counts["skipped"])
	for _, r := range refused {
		words := reasonWords[r.Reason]
		if words == "" {
			words = r.Reason
		}
		fmt.Fprintf(stdout, "%s %s: %s", r.Outcome, r.File, words)
		if r.Detail != "" {
			fmt.Fprintf(stdout, " (%s)", r.Detail)
		}
		fmt.Fprintln(stdout)
	}
	if counts["refused"] > 0 {
		return fmt.Errorf("%d image(s) were not imported", counts["refused"])
	}
	return nil
}

// checkToken asks the server who the token is before anything is read from the disc: a wrong server or token fails
// at once, not after walking a CD.
func checkToken(ctx context.Context, client *http.Client, server, token string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(server, "/")+"/api/me", nil)
	if err != nil {
		return fmt.Errorf("--server %q: %w", server, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach renkei at %s: %w", server, err)
	}
	defer resp.Body.Close()
	var me struct {
		Write  bool
		Detail string
	}
	json.NewDecoder(resp.Body).Decode(&me)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("the server refused the token (401: %s)", me.Detail)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s answered %s: %s", server, resp.Status, me.Detail)
	case !me.Write:
		return errors.New("the token may only read: create one with renkei admin token add NAME --institution ID --write")
	}
	return nil
}

func send(ctx context.Context, client *http.Client, server, token string, it importItem) importResult {
	refuse := func(reason, detail string) importResult {
		return importResult{File: it.name, Outcome: "refused", Reason: reason, Detail: detail}
	}
	rc, err := it.open()
	if err != nil {
		return refuse("unreadable", err.Error())
	}
	defer rc.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(server, "/")+"/api/upload?name="+url.QueryEscape(it.name), rc)
	if err != nil {
		return refuse("failed", err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/dicom")
	if it.size >= 0 {
		req.ContentLength = it.size
	}
	resp, err := client.Do(req)
	if err != nil {
		return refuse("failed", err.Error())
	}
	defer resp.Body.Close()
	var res importResult
	if resp.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		json.NewDecoder(resp.Body).Decode(&p)
		return refuse("failed", fmt.Sprintf("%s: %s", resp.Status, p.Detail))
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return refuse("failed", err.Error())
	}
	res.File = it.name
	return res
}

// collect adds what path holds: a zip's entries, a folder's files (and checks its DICOMDIR), or the file.
func collect(path string, items *[]importItem, local *[]importResult) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		addFile(path, path, info.Size(), items, local)
		return nil
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			*local = append(*local, importResult{File: p, Outcome: "refused", Reason: "unreadable", Detail: err.Error()})
			return nil
		}
		if d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		seen[strings.ToUpper(filepath.ToSlash(p))] = true
		addFile(p, p, fi.Size(), items, local)
		return nil
	})
	if err != nil {
		return err
	}
	// What the CD's index lists but the folder does not hold: a disc that could not be read to the end.
	for _, ref := range dicomdirFiles(filepath.Join(path, "DICOMDIR")) {
		full := filepath.Join(path, filepath.FromSlash(ref))
		if !seen[strings.ToUpper(filepath.ToSlash(full))] {
			*local = append(*local, importResult{File: full, Outcome: "refused", Reason: "unlisted"})
		}
	}
	return nil
}

func addFile(name, path string, size int64, items *[]importItem, local *[]importResult) {
	if strings.EqualFold(filepath.Base(path), "DICOMDIR") {
		*local = append(*local, importResult{File: name, Outcome: "skipped", Reason: "dicomdir"})
		return
	}
	if strings.EqualFold(filepath.Ext(path), ".zip") {
		addZip(path, local, items)
		return
	}
	if !looksDICOM(path) {
		*local = append(*local, importResult{File: name, Outcome: "skipped", Reason: "not-dicom"})
		return
	}
	*items = append(*items, importItem{name: name, size: size, open: func() (io.ReadCloser, error) { return os.Open(path) }})
}

func looksDICOM(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true // let the send report why it cannot be read
	}
	defer f.Close()
	var head [132]byte
	n, _ := io.ReadFull(f, head[:])
	return n == 132 && string(head[128:]) == "DICM"
}

// Limits for zip entries: what the whole zip may expand to, and how much one entry may expand.
const (
	maxZipTotal = 20 << 30
	maxZipRatio = 200
)

func addZip(path string, local *[]importResult, items *[]importItem) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		*local = append(*local, importResult{File: path, Outcome: "refused", Reason: "bad-zip", Detail: err.Error()})
		return
	}
	// The reader stays open until the process ends: its entries are read by the senders.
	var total uint64
	for _, f := range zr.File {
		name := path + "/" + f.Name
		refuse := func(reason string) {
			*local = append(*local, importResult{File: name, Outcome: "refused", Reason: reason})
		}
		switch {
		case f.FileInfo().IsDir():
			continue
		case strings.HasPrefix(f.Name, "/") || strings.Contains("/"+strings.ReplaceAll(f.Name, "\\", "/")+"/", "/../"):
			refuse("unsafe-path")
			continue
		case f.Mode()&fs.ModeSymlink != 0:
			refuse("symlink")
			continue
		}
		total += f.UncompressedSize64
		if total > maxZipTotal || (f.CompressedSize64 > 0 && f.UncompressedSize64 > 1<<20 && f.UncompressedSize64/f.CompressedSize64 > maxZipRatio) {
			refuse("zip-bomb")
			continue
		}
		f := f
		head := make([]byte, 132)
		if rc, err := f.Open(); err == nil {
			n, _ := io.ReadFull(rc, head)
			rc.Close()
			if strings.EqualFold(filepath.Base(f.Name), "DICOMDIR") {
				*local = append(*local, importResult{File: name, Outcome: "skipped", Reason: "dicomdir"})
				continue
			}
			if n < 132 || string(head[128:]) != "DICM" {
				*local = append(*local, importResult{File: name, Outcome: "skipped", Reason: "not-dicom"})
				continue
			}
		}
		limit := int64(f.UncompressedSize64)
		*items = append(*items, importItem{name: name, size: limit, open: func() (io.ReadCloser, error) {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			// An entry is read no further than it said it was (a lying header is a bomb).
			return struct {
				io.Reader
				io.Closer
			}{io.LimitReader(rc, limit), rc}, nil
		}})
	}
}

// dicomdirFiles lists the files a DICOMDIR refers to, relative to its folder.
func dicomdirFiles(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
	if err != nil {
		return nil
	}
	return dicom.DirectoryFiles(f.DataSet)
}
