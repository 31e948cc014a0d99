package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// Synthetic patients for the QIDO-at-scale measurement. Names are made of syllables, each with a kanji, so that every
// name has an ideographic group like real Japanese names; no syllable makes "Yamada" or 山, so the benchmark's own
// patients stay the only hits for Yamada* and 山田*.
var syllables = []struct{ romaji, kanji string }{
	{"ka", "加"}, {"ki", "木"}, {"ku", "久"}, {"ko", "小"}, {"sa", "佐"}, {"shi", "島"}, {"su", "鈴"}, {"se", "瀬"},
	{"ta", "多"}, {"chi", "千"}, {"to", "藤"}, {"na", "中"}, {"no", "野"}, {"ha", "林"}, {"hi", "平"}, {"mo", "森"},
	{"mu", "村"}, {"ma", "松"}, {"ri", "里"}, {"wa", "和"},
}

const studiesPerSynthPatient = 4

type synthStudy struct {
	PatientID, PatientName string
	StudyUID, SeriesUID    string
	SOPUID                 string
	StudyDate              string
}

func synthName(r *rand.Rand, parts int) (romaji, kanji string) {
	var a, k strings.Builder
	for i := range parts {
		s := syllables[r.IntN(len(syllables))]
		if i == 0 {
			a.WriteString(strings.ToUpper(s.romaji[:1]) + s.romaji[1:])
		} else {
			a.WriteString(s.romaji)
		}
		k.WriteString(s.kanji)
	}
	return a.String(), k.String()
}

// synthStudies returns n deterministic synthetic studies, studiesPerSynthPatient per patient.
func synthStudies(n int) []synthStudy {
	r := rand.New(rand.NewPCG(7, 11))
	out := make([]synthStudy, n)
	var pid, pname string
	for i := range n {
		if i%studiesPerSynthPatient == 0 {
			fr, fk := synthName(r, 2+r.IntN(2))
			gr, gk := synthName(r, 2)
			pid = fmt.Sprintf("SYN%07d", i/studiesPerSynthPatient)
			pname = fr + "^" + gr + "=" + fk + "^" + gk
		}
		day := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(3650))
		k := strconv.Itoa(i)
		out[i] = synthStudy{PatientID: pid, PatientName: pname, StudyDate: day.Format("20060102"),
			StudyUID: dicomtest.UID("synth/study/" + k), SeriesUID: dicomtest.UID("synth/series/" + k), SOPUID: dicomtest.UID("synth/sop/" + k)}
	}
	return out
}

// synthAttrs is a DICOM JSON header of the size and shape the index keeps for a CT instance (~1.5 kB), so that the
// synthetic rows weigh what real ones do.
func synthAttrs(s *synthStudy) []byte {
	fam, giv, _ := strings.Cut(s.PatientName, "^")
	_ = giv
	return []byte(fmt.Sprintf(`{"00080005":{"vr":"CS","Value":["ISO_IR 192"]},"00080008":{"vr":"CS","Value":["ORIGINAL","PRIMARY","AXIAL"]},`+
		`"00080016":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},"00080018":{"vr":"UI","Value":["%s"]},"00080020":{"vr":"DA","Value":["%s"]},`+
		`"00080030":{"vr":"TM","Value":["120000"]},"00080050":{"vr":"SH","Value":["ACC%s"]},"00080060":{"vr":"CS","Value":["CT"]},`+
		`"00080070":{"vr":"LO","Value":["renkei"]},"00080090":{"vr":"PN"},"00081030":{"vr":"LO","Value":["Synthetic %s"]},`+
		`"00100010":{"vr":"PN","Value":[{"Alphabetic":"%s"}]},"00100020":{"vr":"LO","Value":["%s"]},"00100030":{"vr":"DA"},"00100040":{"vr":"CS"},`+
		`"00180050":{"vr":"DS","Value":[1]},"00180060":{"vr":"DS","Value":[120]},"00185100":{"vr":"CS","Value":["HFS"]},`+
		`"0020000D":{"vr":"UI","Value":["%s"]},"0020000E":{"vr":"UI","Value":["%s"]},"00200010":{"vr":"SH","Value":["1"]},`+
		`"00200011":{"vr":"IS","Value":[1]},"00200013":{"vr":"IS","Value":[1]},"00200032":{"vr":"DS","Value":[-179.6,-179.6,1]},`+
		`"00200037":{"vr":"DS","Value":[1,0,0,0,1,0]},"00200052":{"vr":"UI","Value":["%s.1"]},"00201041":{"vr":"DS","Value":[1]},`+
		`"00280002":{"vr":"US","Value":[1]},"00280004":{"vr":"CS","Value":["MONOCHROME2"]},"00280010":{"vr":"US","Value":[512]},`+
		`"00280011":{"vr":"US","Value":[512]},"00280030":{"vr":"DS","Value":[0.7,0.7]},"00280100":{"vr":"US","Value":[16]},`+
		`"00280101":{"vr":"US","Value":[16]},"00280102":{"vr":"US","Value":[15]},"00280103":{"vr":"US","Value":[1]},`+
		`"00281050":{"vr":"DS","Value":[40]},"00281051":{"vr":"DS","Value":[400]},"00281052":{"vr":"DS","Value":[-1024]},`+
		`"00281053":{"vr":"DS","Value":[1]},"00281054":{"vr":"LO","Value":["HU"]}}`,
		s.SOPUID, s.StudyDate, s.PatientID, fam, s.PatientName, s.PatientID, s.StudyUID, s.SeriesUID, s.StudyUID))
}

// insertSynthetic records the studies directly in renkei's SQLite index through sqlstore.DB.Insert (the path STOW-RS
// takes after the blob is written), from many goroutines so that the committer groups them into shared transactions.
// No blob is written: study-level QIDO-RS reads only the index.
func insertSynthetic(indexPath string, studies []synthStudy) (time.Duration, error) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, indexPath)
	if err != nil {
		return 0, err
	}
	inst, err := db.Institution(ctx, benchInstitution)
	if err != nil {
		db.Close()
		return 0, err
	}
	start := time.Now()
	ch := make(chan int, 1024)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	one := 1
	now := time.Now()
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				s := &studies[i]
				in := &renkei.Instance{
					Institution:      inst.PK,
					Patient:          renkei.PatientKey{ID: s.PatientID},
					PatientName:      s.PatientName,
					PatientNameKeys:  archive.NameKeys(s.PatientName),
					StudyInstanceUID: s.StudyUID, StudyDate: s.StudyDate, StudyTime: "120000",
					AccessionNumber: "ACC" + s.PatientID, StudyID: "1", StudyDescription: "Synthetic",
					SeriesInstanceUID: s.SeriesUID, Modality: "CT", SeriesNumber: &one,
					SOPInstanceUID: s.SOPUID, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", InstanceNumber: &one,
					TransferSyntaxUID: "1.2.840.10008.1.2.1", Rows: 512, Columns: 512, NumberOfFrames: 1, BitsAllocated: 16,
					BlobKey: fmt.Sprintf("%064x", i+1), Size: 525000, Attrs: synthAttrs(s), ReceivedAt: now, Source: "bench synthetic",
				}
				_, _, err := db.Insert(ctx, in)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range studies {
		ch <- i
	}
	close(ch)
	wg.Wait()
	d := time.Since(start)
	if err := db.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return d, firstErr
}

// smallFiles writes one 8×8 CT instance per synthetic study (reused across runs), for STOW-RS into Orthanc.
func smallFiles(dir string, studies []synthStudy) ([]file, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := make([]file, len(studies))
	ch := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				s := studies[i]
				p := filepath.Join(dir, fmt.Sprintf("%07d.dcm", i))
				st, err := os.Stat(p)
				if err != nil {
					err = dicomtest.CT(p, dicomtest.CTOptions{StudyInstanceUID: s.StudyUID, SeriesInstanceUID: s.SeriesUID, SOPInstanceUID: s.SOPUID,
						PatientID: s.PatientID, PatientName: s.PatientName, Rows: 8, Cols: 8, InstanceNumber: 1, Seed: int64(i)})
					if err == nil {
						st, err = os.Stat(p)
					}
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					files[i] = file{Path: p, Size: st.Size(), PatientID: s.PatientID, StudyUID: s.StudyUID, SeriesUID: s.SeriesUID, SOPInstanceUID: s.SOPUID, Kind: "small"}
				}
				mu.Unlock()
			}
		}()
	}
	for i := range studies {
		ch <- i
	}
	close(ch)
	wg.Wait()
	return files, firstErr
}
