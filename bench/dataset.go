package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"

	"renkei/internal/dicomtest"
)

// file is one instance of the benchmark data set.
type file struct {
	Path                                           string
	Size                                           int64
	PatientID, StudyUID, SeriesUID, SOPInstanceUID string
	Kind                                           string // "ct", "jpeg-lossless", "jpeg-ls", "multiframe"
	Frames                                         int
}

// dataset is the generated data set and what the queries need to know about it.
type dataset struct {
	Dir   string
	Files []file

	RetrieveStudy string // a ~400-instance CT study: metadata and whole-study retrieve
	MultiFrame    file   // the 200-frame instance: frame retrieval
}

func (d *dataset) bytes() int64 {
	var n int64
	for _, f := range d.Files {
		n += f.Size
	}
	return n
}

// benchPatient is one patient of the data set; Japanese names are written in UTF-8 (ISO_IR 192).
type benchPatient struct{ ID, Name string }

var benchPatients = []benchPatient{
	{"RK0001", "Yamada^Taro=山田^太郎"},
	{"RK0002", "Suzuki^Hanako=鈴木^花子"},
	{"RK0003", "Tanaka^Ichiro=田中^一郎"},
	{"RK0004", "Smith^John"},
}

// studySpec is one generated study: count CT slices of one series, or compressed copies, or the multi-frame.
type studySpec struct {
	seed    int
	patient benchPatient
	kind    string
	count   int
}

func datasetSpec(perStudy, frames int) []studySpec {
	p := benchPatients
	return []studySpec{
		{101, p[0], "ct", perStudy},
		{102, p[0], "ct", perStudy},
		{103, p[1], "ct", perStudy},
		{104, p[2], "ct", perStudy},
		{105, p[3], "ct", perStudy},
		{106, p[1], "compressed", 20},
		{107, p[2], "multiframe", frames},
	}
}

// makeDataset generates the data set into dir, or reuses it when a manifest for the same spec is there.
func makeDataset(dir string, perStudy, frames int) (*dataset, error) {
	spec := datasetSpec(perStudy, frames)
	key := fmt.Sprintf("v1 perStudy=%d frames=%d", perStudy, frames)
	manifest := filepath.Join(dir, "manifest.json")
	var m struct {
		Key string
		DS  dataset
	}
	if b, err := os.ReadFile(manifest); err == nil && json.Unmarshal(b, &m) == nil && m.Key == key {
		ok := true
		for _, f := range m.DS.Files {
			if st, err := os.Stat(f.Path); err != nil || st.Size() != f.Size {
				ok = false
				break
			}
		}
		if ok {
			logf("dataset: reusing %s (%d instances, %.0f MB)", dir, len(m.DS.Files), mb(m.DS.bytes()))
			return &m.DS, nil
		}
	}
	logf("dataset: generating into %s", dir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		return nil, err
	}
	ds := &dataset{Dir: dir}
	type job struct {
		f   file
		opt dicomtest.CTOptions
		out string // compressed: the final path after conversion
	}
	var jobs []job
	for _, s := range spec {
		seed := strconv.Itoa(s.seed)
		study, series := dicomtest.UID("bench/"+seed+"/study"), dicomtest.UID("bench/"+seed+"/series")
		n := s.count
		if s.kind == "multiframe" {
			n = 1
		}
		for i := 1; i <= n; i++ {
			sop := dicomtest.UID("bench/" + seed + "/instance/" + strconv.Itoa(i))
			name := fmt.Sprintf("%d-%04d.dcm", s.seed, i)
			f := file{Path: filepath.Join(dir, name), PatientID: s.patient.ID, StudyUID: study, SeriesUID: series, SOPInstanceUID: sop, Kind: s.kind, Frames: 1}
			o := dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop, PatientID: s.patient.ID,
				PatientName: s.patient.Name, AccessionNumber: "A" + seed, InstanceNumber: i, Seed: int64(s.seed)}
			j := job{f: f, opt: o}
			switch s.kind {
			case "multiframe":
				j.f.Frames, j.opt.Frames = s.count, s.count
			case "compressed":
				j.f.Kind = "jpeg-lossless"
				if i%2 == 0 {
					j.f.Kind = "jpeg-ls"
				}
				j.out = j.f.Path
				j.f.Path = filepath.Join(dir, "src", name)
			}
			jobs = append(jobs, j)
		}
	}
	ds.Files = make([]file, len(jobs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ch := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				j := jobs[i]
				var err error
				if j.f.Kind == "multiframe" {
					err = dicomtest.MultiFrame(j.f.Path, j.opt)
				} else {
					err = dicomtest.CT(j.f.Path, j.opt)
				}
				if err == nil && j.out != "" {
					// Lossless compression keeps the SOP Instance UID (dcmcjpeg/dcmcjpls +ud), so the source is
					// removed: only the compressed object is in the data set.
					tool := "dcmcjpeg"
					if j.f.Kind == "jpeg-ls" {
						tool = "dcmcjpls"
					}
					if out, cerr := exec.Command(tool, j.f.Path, j.out).CombinedOutput(); cerr != nil {
						err = fmt.Errorf("%s: %v: %s", tool, cerr, out)
					}
					os.Remove(j.f.Path)
					j.f.Path = j.out
				}
				if err == nil {
					var st os.FileInfo
					if st, err = os.Stat(j.f.Path); err == nil {
						j.f.Size = st.Size()
					}
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				ds.Files[i] = j.f
				mu.Unlock()
			}
		}()
	}
	for i := range jobs {
		ch <- i
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	os.Remove(filepath.Join(dir, "src"))
	for _, f := range ds.Files {
		if f.Kind == "multiframe" {
			ds.MultiFrame = f
		}
	}
	ds.RetrieveStudy = ds.Files[0].StudyUID
	m.Key, m.DS = key, *ds
	b, _ := json.MarshalIndent(m, "", " ")
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		return nil, err
	}
	logf("dataset: %d instances, %.0f MB", len(ds.Files), mb(ds.bytes()))
	return ds, nil
}

// studyBytes is the size of one study's files.
func (d *dataset) study(uid string) (n int, bytes int64) {
	for _, f := range d.Files {
		if f.StudyUID == uid {
			n++
			bytes += f.Size
		}
	}
	return
}

// warm reads every file once so that later phases read from the page cache, as every measured phase then does.
// countStudies is the number of studies in the data set.
func (d *dataset) countStudies() int {
	seen := map[string]bool{}
	for _, f := range d.Files {
		seen[f.StudyUID] = true
	}
	return len(seen)
}

func (d *dataset) warm() error {
	buf := make([]byte, 1<<20)
	for _, f := range d.Files {
		fh, err := os.Open(f.Path)
		if err != nil {
			return err
		}
		for {
			n, err := fh.Read(buf)
			if n == 0 || err != nil {
				break
			}
		}
		fh.Close()
	}
	return nil
}
