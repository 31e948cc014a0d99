package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// The DIMSE phase (-dimse): renkei and Orthanc side by side over DICOM, measured with dcmtk (storescu, storescp,
// getscu) and renkei's own DIMSE client (C-ECHO, C-FIND, C-MOVE requests on an open association).

const (
	benchSCU = "BENCHSCU" // calling AE of storescu, getscu and the dimse client
	benchSCP = "BENCHSCP" // the dcmtk storescp that C-MOVE sends to
)

// dimseSide is one server's DIMSE results.
type dimseSide struct {
	Name, AE, Addr string
	srv            *server
	Store1, Store4 rate
	HWM1, HWM4     int64 // kB, VmHWM of a fresh process right after each ingest
	HWMEnd         int64 // kB, at the end of the phase
	Echo, Find     timed
	Move, Get      rate
	MoveN, GetN    int
	// C-FIND at scale (renkei only): by PatientID and by PatientName wildcard, at smallStudies and at the scale.
	FindSmall, FindScale timed
	NameSmall, NameScale timed
	HWMScale             int64 // kB, VmHWM after the measurement at scale
}

type dimseResults struct {
	Machine            machineInfo
	Date               time.Time
	Instances          int
	Bytes              int64
	StudyFiles         int
	StudyBytes         int64
	Fsync4             rate
	R, O               dimseSide
	EchoReps, FindReps int
	RetrieveReps       int
	ScaleStudies       int           // studies held for C-FIND at scale (0: skipped)
	DataStudies        int           // of them, the data set's
	ScaleLoad          time.Duration // indexing the synthetic studies
	Elapsed            time.Duration
}

// smallStudies is the size of the index C-FIND at scale is compared with: the data set's studies and synthetic
// ones up to this count (issue 3: C-FIND p95 at 100,000 studies ≤ 1.5× its p95 at 100 studies).
const smallStudies = 100

func runDIMSE(c *config) error {
	for _, d := range []string{c.Out, filepath.Join(c.Out, "bin"), filepath.Join(c.Out, "logs"), filepath.Join(c.Out, "_data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, tool := range []string{"storescu", "storescp", "getscu"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: install Debian's dcmtk", tool)
		}
	}
	res := &dimseResults{Date: time.Now().UTC(), Machine: describeMachine(c.Repo, c.Out), EchoReps: 1000, FindReps: c.Reps, RetrieveReps: 5}
	if c.Quick {
		res.EchoReps = 200
	}
	bin := filepath.Join(c.Out, "bin", "renkei")
	logf("building renkei")
	if err := buildRenkei(c.Repo, bin); err != nil {
		return err
	}
	dsName := "dataset"
	if c.Quick {
		dsName = "dataset-quick"
	}
	ds, err := makeDataset(filepath.Join(c.Out, "_data", dsName), c.PerStudy, c.Frames)
	if err != nil {
		return err
	}
	if err := ds.warm(); err != nil {
		return err
	}
	res.Instances, res.Bytes = len(ds.Files), ds.bytes()
	res.StudyFiles, res.StudyBytes = ds.study(ds.RetrieveStudy)

	scpPort, err := freePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(c.Out, "bin", "storescu-bench.cfg")
	if err := os.WriteFile(cfg, []byte(storescuConfig), 0o644); err != nil {
		return err
	}
	storescuArgs = []string{"-xf", cfg, "Bench", "-aet", benchSCU}
	rdata, odir := filepath.Join(c.Out, "_data", "renkei-dimse"), filepath.Join(c.Out, "_data", "orthanc-dimse")
	recv := filepath.Join(c.Out, "_data", "dimse-recv")
	if !c.Keep {
		defer cleanDir(rdata)
		defer cleanDir(odir)
		defer cleanDir(recv)
	}
	R, O := &res.R, &res.O
	R.Name, R.AE, O.Name, O.AE = "renkei", "RENKEI", "Orthanc", "ORTHANC"
	stopBoth := func() {
		for _, s := range []*dimseSide{R, O} {
			if s.srv != nil {
				s.srv.stop()
				s.srv = nil
			}
		}
	}
	defer stopBoth()
	startBoth := func(round string) error {
		stopBoth()
		cleanDir(rdata)
		cleanDir(odir)
		var err error
		if R.srv, R.Addr, err = startRenkeiDIMSE(bin, rdata, filepath.Join(c.Out, "logs", "renkei-dimse-"+round+".log"), scpPort); err != nil {
			return err
		}
		O.srv, O.Addr, err = startOrthancDIMSE(odir, filepath.Join(c.Out, "logs", "orthanc-dimse-"+round+".log"), scpPort)
		return err
	}

	// Ingest over 1 association, then over 4, each on fresh servers; the fsync-each-file copy next to the second.
	cp := filepath.Join(c.Out, "_data", "copy")
	for _, round := range []struct {
		assocs int
		order  []*dimseSide
	}{{1, []*dimseSide{R, O}}, {4, []*dimseSide{O, R}}} {
		if err := startBoth(fmt.Sprintf("%d", round.assocs)); err != nil {
			return err
		}
		if round.assocs == 4 {
			cleanDir(cp)
			syscallSyncPause()
			if res.Fsync4, err = copyFsync(ds.Files, cp, 4); err != nil {
				return err
			}
			cleanDir(cp)
			logf("fsync-each-file copy, 4 writers: %v", res.Fsync4)
		}
		for _, s := range round.order {
			syscallSyncPause()
			r, err := storescu(s, ds.Files, round.assocs)
			if err != nil {
				return err
			}
			n, err := countInstances(s.srv)
			if err != nil {
				return err
			}
			if n != len(ds.Files) {
				return fmt.Errorf("%s holds %d instances after storescu of %d", s.Name, n, len(ds.Files))
			}
			hwm := procStatusKB(s.srv.pid(), "VmHWM")
			if round.assocs == 1 {
				s.Store1, s.HWM1 = r, hwm
			} else {
				s.Store4, s.HWM4 = r, hwm
			}
			logf("%s storescu, %d association(s): %v; VmHWM %.0f MiB", s.Name, round.assocs, r, mib(hwm))
		}
	}
	syscallSyncPause()

	// C-ECHO and C-FIND on one open association each.
	for _, s := range []*dimseSide{R, O} {
		if err := echoFind(s, res.EchoReps, res.FindReps); err != nil {
			return err
		}
	}

	// C-MOVE to a dcmtk storescp and C-GET by getscu, alternating between the servers.
	cleanDir(recv)
	os.MkdirAll(recv, 0o755)
	scp := exec.Command("storescp", "-aet", benchSCP, "--ignore", "+xa", strconv.Itoa(scpPort))
	scp.Env = append(os.Environ(), "TCP_NODELAY=1")
	scp.Dir = recv
	lf, _ := os.Create(filepath.Join(c.Out, "logs", "storescp.log"))
	scp.Stdout, scp.Stderr = lf, lf
	if err := startProcess(scp); err != nil {
		return err
	}
	defer func() {
		scp.Process.Kill()
		scp.Wait()
		forgetProcess(scp)
		lf.Close()
	}()
	time.Sleep(300 * time.Millisecond)
	moves, gets := map[*dimseSide][]rate{}, map[*dimseSide][]rate{}
	for i := range res.RetrieveReps {
		for _, s := range []*dimseSide{R, O} {
			r, n, err := cmove(s, ds.RetrieveStudy, res.StudyFiles, res.StudyBytes)
			if err != nil {
				return err
			}
			moves[s], s.MoveN = append(moves[s], r), n
			logf("%s C-MOVE %d: %d instances, %.0f MB/s", s.Name, i+1, n, r.mbPerSec())
			r, n, err = getscu(s, ds.RetrieveStudy, res.StudyFiles, res.StudyBytes, recv)
			if err != nil {
				return err
			}
			gets[s], s.GetN = append(gets[s], r), n
			logf("%s C-GET %d: %d instances, %.0f MB/s", s.Name, i+1, n, r.mbPerSec())
		}
	}
	for _, s := range []*dimseSide{R, O} {
		s.Move, s.Get = medianRate(moves[s]), medianRate(gets[s])
		s.HWMEnd = procStatusKB(s.srv.pid(), "VmHWM")
	}
	if c.FindStudies > 0 {
		O.srv.stop()
		O.srv = nil
		if err := findAtScale(c, bin, rdata, res, ds.countStudies()); err != nil {
			return err
		}
	}
	res.Elapsed = time.Since(t0)

	table := dimseReport(c, res)
	fmt.Println(table)
	if c.Docs != "" {
		if err := writeDocsBetween(c.Docs, dimseBegin, dimseEnd, table); err != nil {
			return err
		}
		logf("results written to %s", c.Docs)
	}
	return os.WriteFile(filepath.Join(c.Out, "results-dimse.md"), []byte(table), 0o644)
}

// startRenkeiDIMSE registers the benchmark's AEs in a fresh data folder (renkei admin ae add; no --dimse-accept-any)
// and starts renkei with DIMSE on a free loopback port.
func startRenkeiDIMSE(bin, data, logPath string, scpPort int) (*server, string, error) {
	token, err := provisionRenkei(bin, data)
	if err != nil {
		return nil, "", err
	}
	for _, args := range [][]string{
		{"admin", "ae", "add", benchSCU, "--host", "127.0.0.1", "--institution", benchInstitution, "--data", data},
		{"admin", "ae", "add", benchSCP, "--host", "127.0.0.1", "--port", strconv.Itoa(scpPort), "--institution", benchInstitution, "--data", data},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("renkei %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return serveRenkeiDIMSE(bin, data, logPath, token)
}

// serveRenkeiDIMSE starts renkei on a provisioned data folder (token is its API token) with DIMSE on a free
// loopback port.
func serveRenkeiDIMSE(bin, data, logPath, token string) (*server, string, error) {
	hp, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dp, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr, daddr := fmt.Sprintf("127.0.0.1:%d", hp), fmt.Sprintf("127.0.0.1:%d", dp)
	if token != "" {
		tokens.Store(addr, token)
	}
	cmd := exec.Command(bin, "serve", "--data", data, "--http", addr, "--dimse", daddr, "--ae", "RENKEI", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	s := &server{Name: "renkei", Base: "http://" + addr + "/dicomweb", cmd: cmd}
	if err := s.start(logPath, "http://"+addr+"/healthz"); err != nil {
		return nil, "", err
	}
	return s, daddr, nil
}

// startOrthancDIMSE starts Orthanc with its DICOM server as ORTHANC and the benchmark's AEs as modalities.
func startOrthancDIMSE(dir, logPath string, scpPort int) (*server, string, error) {
	dp, err := freePort()
	if err != nil {
		return nil, "", err
	}
	scuPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	s, err := startOrthancWith(dir, logPath, map[string]any{
		"DicomAet":  "ORTHANC",
		"DicomPort": dp,
		"DicomModalities": map[string]any{
			benchSCU: []any{benchSCU, "127.0.0.1", scuPort},
			benchSCP: []any{benchSCP, "127.0.0.1", scpPort},
		},
	})
	if err != nil {
		return nil, "", err
	}
	return s, fmt.Sprintf("127.0.0.1:%d", dp), nil
}

// storescuConfig proposes each of the data set's SOP classes with each of its transfer syntaxes in a context of its
// own, so that a server that prefers Explicit VR Little Endian cannot make storescu decompress: every file goes as
// stored.
const storescuConfig = `[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
[JPEGLossless]
TransferSyntax1 = JPEGLossless:Non-hierarchical-1stOrderPrediction
[JPEGLS]
TransferSyntax1 = JPEGLSLossless

[[PresentationContexts]]
[Bench]
PresentationContext1 = CTImageStorage\Uncompressed
PresentationContext2 = CTImageStorage\JPEGLossless
PresentationContext3 = CTImageStorage\JPEGLS
PresentationContext4 = MultiframeGrayscaleWordSecondaryCaptureImageStorage\Uncompressed

[[Profiles]]
[Bench]
PresentationContexts = Bench
`

// storescuArgs is set by runDIMSE to -xf CONFIG Bench -aet BENCHSCU.
var storescuArgs []string

// storescu sends files to s over assocs parallel storescu processes (one association each), the file list dealt out
// in turn.
func storescu(s *dimseSide, files []file, assocs int) (rate, error) {
	host, port, _ := strings.Cut(s.Addr, ":")
	lists := make([][]string, assocs)
	var total int64
	for i, f := range files {
		lists[i%assocs] = append(lists[i%assocs], f.Path)
		total += f.Size
	}
	cmds := make([]*exec.Cmd, assocs)
	outs := make([]*strings.Builder, assocs)
	start := time.Now()
	for i := range cmds {
		args := append(slices.Clone(storescuArgs), "-aec", s.AE, host, port)
		cmds[i] = exec.Command("storescu", append(args, lists[i]...)...)
		cmds[i].Env = append(os.Environ(), "TCP_NODELAY=1")
		outs[i] = &strings.Builder{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := startProcess(cmds[i]); err != nil {
			return rate{}, err
		}
	}
	var firstErr error
	for i, cmd := range cmds {
		err := cmd.Wait()
		forgetProcess(cmd)
		if err == nil && strings.Contains(outs[i].String(), "E: ") {
			err = fmt.Errorf("errors reported")
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("storescu to %s: %v\n%.2000s", s.Name, err, outs[i].String())
		}
	}
	d := time.Since(start)
	if firstErr != nil {
		return rate{}, firstErr
	}
	return rate{Files: len(files), Bytes: total, Seconds: d.Seconds()}, nil
}

// countInstances sums NumberOfStudyRelatedInstances over all studies by QIDO-RS.
func countInstances(s *server) (int, error) {
	req := s.Base + "/studies?includefield=00201208&limit=1000"
	resp, err := client.Get(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var arr []map[string]struct {
		Value []any
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&arr); err != nil {
		return 0, fmt.Errorf("%s QIDO-RS count: %v", s.Name, err)
	}
	n := 0
	for _, st := range arr {
		if v := st["00201208"].Value; len(v) > 0 {
			if num, ok := v[0].(json.Number); ok {
				k, _ := num.Int64()
				n += int(k)
			}
		}
	}
	return n, nil
}

var dimseContexts = []dimse.PresentationContext{
	{AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}},
	{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}},
	{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}},
}

// echoFind measures C-ECHO and a study-level C-FIND by PatientID, each repeated on one open association.
func echoFind(s *dimseSide, echoReps, findReps int) error {
	ctx := context.Background()
	a, err := dimse.Dial(ctx, s.Addr, benchSCU, s.AE, dimseContexts)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", s.Name, err)
	}
	defer a.Release(ctx)
	for i := range 20 + echoReps {
		t := time.Now()
		st, err := a.Echo(ctx)
		d := time.Since(t)
		if err == nil {
			err = st.Err()
		}
		if err != nil {
			return fmt.Errorf("%s C-ECHO: %w", s.Name, err)
		}
		if i >= 20 {
			s.Echo.Lat = append(s.Echo.Lat, d)
		}
	}
	s.Find, err = findLatency(a, s.Name, byPatientID(), 10, findReps)
	if err != nil {
		return err
	}
	logf("%s C-ECHO p50 %.2f p95 %.2f ms; C-FIND by PatientID p50 %.2f p95 %.2f ms (%d hits)",
		s.Name, s.Echo.p50(), s.Echo.p95(), s.Find.p50(), s.Find.p95(), s.Find.Items)
	return nil
}

// byPatientID is a study-level C-FIND identifier for the first benchmark patient (2 studies).
func byPatientID() *dicom.DataSet {
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.PatientID, "LO", benchPatients[0].ID)
	q.SetString(dicom.PatientName, "PN", "")
	q.SetString(dicom.StudyInstanceUID, "UI", "")
	return q
}

// byPatientName is a study-level C-FIND identifier with a wildcard on the family name of the first benchmark
// patient: no synthetic name starts with it (see syllables), so it finds the same 2 studies at every scale.
func byPatientName() *dicom.DataSet {
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.PatientName, "PN", "Yamada*")
	q.SetString(dicom.PatientID, "LO", "")
	q.SetString(dicom.StudyInstanceUID, "UI", "")
	q.SetString(dicom.StudyDate, "DA", "")
	return q
}

// findLatency sends the same C-FIND warm+n times in sequence on a and records the last n round trips (request to
// final response) and the number of matches.
func findLatency(a *dimse.Association, name string, q *dicom.DataSet, warm, n int) (timed, error) {
	ctx := context.Background()
	var t timed
	for i := range warm + n {
		start := time.Now()
		hits := 0
		for _, err := range a.Find(ctx, dimse.StudyRootQueryRetrieveInformationModelFind, q) {
			if err != nil {
				return t, fmt.Errorf("%s C-FIND: %w", name, err)
			}
			hits++
		}
		d := time.Since(start)
		if i >= warm {
			t.Lat = append(t.Lat, d)
		}
		t.Items = hits
	}
	return t, nil
}

// findAtScale measures renkei's C-FIND on an open association with smallStudies studies indexed and with
// c.FindStudies more, side by side: synthetic studies are added to the index of the stopped server with
// sqlstore.DB.Insert (as in QIDO-RS at scale), up to smallStudies first; that index is copied into a second data
// folder (blobs shared by a link: C-FIND reads only the index), the rest is added to the first, and both are served
// at once. Each query alternates between the two servers, so that the load other programs put on the machine falls
// on both sizes alike.
func findAtScale(c *config, bin, rdata string, res *dimseResults, have int) error {
	R := &res.R
	res.DataStudies = have
	synth := synthStudies(c.FindStudies)
	small := max(0, smallStudies-have)
	R.srv.stop()
	R.srv = nil
	sdata := rdata + "-small"
	cleanDir(sdata)
	if !c.Keep {
		defer cleanDir(sdata)
	}
	for k, add := range [][]synthStudy{synth[:small], synth[small:]} {
		logf("renkei: indexing %d synthetic studies through sqlstore.DB.Insert", len(add))
		d, err := insertSynthetic(filepath.Join(rdata, "index.db"), add)
		if err != nil {
			return fmt.Errorf("synthetic studies: %w", err)
		}
		res.ScaleLoad += d
		if k == 0 {
			if err := copyIndexFolder(rdata, sdata); err != nil {
				return err
			}
		}
	}
	res.ScaleStudies = have + len(synth)
	ssrv, saddr, err := serveRenkeiDIMSE(bin, sdata, filepath.Join(c.Out, "logs", "renkei-dimse-find-small.log"), "")
	if err != nil {
		return err
	}
	defer ssrv.stop()
	if R.srv, R.Addr, err = serveRenkeiDIMSE(bin, rdata, filepath.Join(c.Out, "logs", "renkei-dimse-find-scale.log"), ""); err != nil {
		return err
	}
	ctx := context.Background()
	as, err := dimse.Dial(ctx, saddr, benchSCU, R.AE, dimseContexts)
	if err != nil {
		return fmt.Errorf("renkei (%d studies): dial: %w", smallStudies, err)
	}
	defer as.Release(ctx)
	ab, err := dimse.Dial(ctx, R.Addr, benchSCU, R.AE, dimseContexts)
	if err != nil {
		return fmt.Errorf("renkei (%d studies): dial: %w", res.ScaleStudies, err)
	}
	defer ab.Release(ctx)
	type leg struct {
		a *dimse.Association
		q *dicom.DataSet
		t *timed
	}
	legs := []leg{{as, byPatientID(), &R.FindSmall}, {ab, byPatientID(), &R.FindScale}, {as, byPatientName(), &R.NameSmall}, {ab, byPatientName(), &R.NameScale}}
	for i := range 10 + res.FindReps {
		for k := range legs {
			l := legs[(k+i)%len(legs)] // the order rotates too
			t, err := findLatency(l.a, R.Name, l.q, 0, 1)
			if err != nil {
				return err
			}
			if i >= 10 {
				l.t.Lat = append(l.t.Lat, t.Lat...)
			}
			l.t.Items = t.Items
		}
	}
	for _, x := range []struct {
		n      int
		id, nm *timed
	}{{smallStudies, &R.FindSmall, &R.NameSmall}, {res.ScaleStudies, &R.FindScale, &R.NameScale}} {
		logf("renkei C-FIND at %d studies: by PatientID p50 %.2f p95 %.2f ms (%d hits); PatientName=Yamada* p50 %.2f p95 %.2f ms (%d hits)",
			x.n, x.id.p50(), x.id.p95(), x.id.Items, x.nm.p50(), x.nm.p95(), x.nm.Items)
	}
	R.HWMScale = procStatusKB(R.srv.pid(), "VmHWM")
	return nil
}

// copyIndexFolder makes dst a copy of the data folder src for reading its index: files are copied, folders (the
// blobs) linked.
func copyIndexFolder(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			if err := os.Symlink(from, to); err != nil {
				return err
			}
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func studyIdentifier(study string) *dicom.DataSet {
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.StudyInstanceUID, "UI", study)
	return q
}

// cmove asks s, on a fresh association, to send the study to the dcmtk storescp (BENCHSCP).
func cmove(s *dimseSide, study string, files int, bytes int64) (rate, int, error) {
	ctx := context.Background()
	a, err := dimse.Dial(ctx, s.Addr, benchSCU, s.AE, dimseContexts)
	if err != nil {
		return rate{}, 0, fmt.Errorf("%s: dial: %w", s.Name, err)
	}
	defer a.Release(ctx)
	t := time.Now()
	r, err := a.Move(ctx, dimse.StudyRootQueryRetrieveInformationModelMove, benchSCP, studyIdentifier(study))
	d := time.Since(t)
	if err != nil {
		return rate{}, 0, fmt.Errorf("%s C-MOVE: %w", s.Name, err)
	}
	n := int(r.SubOperations.Completed) + int(r.SubOperations.Warning)
	if n != files {
		return rate{}, n, fmt.Errorf("%s C-MOVE: %d of %d instances sent (%+v)", s.Name, n, files, r.SubOperations)
	}
	return rate{Files: files, Bytes: bytes, Seconds: d.Seconds()}, n, nil
}

var getscuArgs = []string{"-S", "--ignore", "-v", "-aet", benchSCU}

// getscu retrieves the study from s with dcmtk's getscu (C-GET, C-STORE sub-operations on the same association).
func getscu(s *dimseSide, study string, files int, bytes int64, dir string) (rate, int, error) {
	host, port, _ := strings.Cut(s.Addr, ":")
	args := append(slices.Clone(getscuArgs), "-aec", s.AE, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, host, port)
	cmd := exec.Command("getscu", args...)
	cmd.Env, cmd.Dir = append(os.Environ(), "TCP_NODELAY=1"), dir
	t := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t)
	if err != nil {
		return rate{}, 0, fmt.Errorf("getscu from %s: %v\n%.2000s", s.Name, err, out)
	}
	n := len(regexp.MustCompile(`Received C-STORE Request`).FindAll(out, -1))
	if n == 0 {
		n = strings.Count(string(out), "C-STORE")
	}
	if n < files {
		return rate{}, n, fmt.Errorf("getscu from %s: %d of %d instances\n%.2000s", s.Name, n, files, out)
	}
	return rate{Files: files, Bytes: bytes, Seconds: d.Seconds()}, files, nil
}

func medianRate(rs []rate) rate {
	if len(rs) == 0 {
		return rate{}
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b rate) int {
		if a.mbPerSec() < b.mbPerSec() {
			return -1
		}
		return 1
	})
	return s[len(s)/2]
}

func dimseReport(c *config, r *dimseResults) string {
	var b strings.Builder
	R, O := &r.R, &r.O
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### DIMSE\n\n")
	p("DIMSE run %s UTC (%.0f min), `%s`.\n\n", r.Date.Format("2006-01-02 15:04"), r.Elapsed.Minutes(), c.Command)
	p("Machine: %d CPUs (%s), %.0f GiB memory, disk %s, Linux %s. %s; renkei %s built with %s; dcmtk %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemGiB, r.Machine.Disk, r.Machine.Kernel, r.Machine.Orthanc, r.Machine.Renkei, r.Machine.GoVersion, dcmtkVersion())
	p("Data set: the same %d instances (%.0f MB) as above; C-MOVE and C-GET fetch one CT study of %d instances (%.0f MB).\n\n",
		r.Instances, mb(r.Bytes), r.StudyFiles, mb(r.StudyBytes))
	p("| Measure | renkei | Orthanc | renkei ÷ Orthanc | Target | Result |\n|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		r, o rate
	}{{"storescu ingest, 1 association", R.Store1, O.Store1}, {"storescu ingest, 4 parallel associations", R.Store4, O.Store4}} {
		ratio := x.r.filesPerSec() / x.o.filesPerSec()
		p("| %s | %.0f inst/s, %.0f MB/s | %.0f inst/s, %.0f MB/s | %.2f× | ≥ 2× | %s |\n",
			x.name, x.r.filesPerSec(), x.r.mbPerSec(), x.o.filesPerSec(), x.o.mbPerSec(), ratio, verdict(ratio >= 2))
	}
	fr := R.Store4.filesPerSec() / r.Fsync4.filesPerSec()
	p("| storescu, 4 associations ÷ fsync-each-file copy (4 writers, %.0f files/s) | %.0f%% | %.0f%% | | ≥ 70%% | %s |\n",
		r.Fsync4.filesPerSec(), 100*fr, 100*O.Store4.filesPerSec()/r.Fsync4.filesPerSec(), verdict(fr >= 0.7))
	rh, oh := max(R.HWM1, R.HWM4), max(O.HWM1, O.HWM4)
	mem := float64(rh) / float64(oh)
	p("| Peak RSS (VmHWM) during storescu ingest | %.0f MiB | %.0f MiB | %.2f× | ≤ 0.5× | %s |\n", mib(rh), mib(oh), mem, verdict(mem <= 0.5))
	p("| C-ECHO round trip on an open association, p50 / p95 | %.2f / %.2f ms | %.2f / %.2f ms | %.2f× | (no target) | |\n",
		R.Echo.p50(), R.Echo.p95(), O.Echo.p50(), O.Echo.p95(), R.Echo.p95()/O.Echo.p95())
	p("| C-FIND studies by PatientID on an open association, p50 / p95 (7 studies held) | %.2f / %.2f ms (%d hits) | %.2f / %.2f ms (%d hits) | %.2f× | p95 ≤ 10 ms | %s |\n",
		R.Find.p50(), R.Find.p95(), R.Find.Items, O.Find.p50(), O.Find.p95(), O.Find.Items, R.Find.p95()/O.Find.p95(), verdict(R.Find.p95() <= 10 && R.Find.Items == 2))
	for _, x := range []struct {
		name string
		r, o rate
	}{{"C-MOVE of the study to a dcmtk storescp", R.Move, O.Move}, {"C-GET of the study by dcmtk getscu", R.Get, O.Get}} {
		ratio := x.r.mbPerSec() / x.o.mbPerSec()
		p("| %s, median of %d | %.0f MB/s (%.2f s) | %.0f MB/s (%.2f s) | %.2f× | ≥ 1.5× | %s |\n",
			x.name, r.RetrieveReps, x.r.mbPerSec(), x.r.Seconds, x.o.mbPerSec(), x.o.Seconds, ratio, verdict(ratio >= 1.5))
	}
	if r.ScaleStudies > 0 {
		for _, x := range []struct {
			name         string
			small, scale timed
		}{{"by PatientID", R.FindSmall, R.FindScale}, {"by PatientName=Yamada*", R.NameSmall, R.NameScale}} {
			growth := x.scale.p95() / x.small.p95()
			ok := x.scale.p95() <= 10 && growth <= 1.5 && x.scale.Items == 2 && x.small.Items == 2
			p("| C-FIND studies %s on an open association at %d studies, p50 / p95 (and at %d) | %.2f / %.2f ms (%d hits; at %d: %.2f / %.2f ms) | not measured | %.2f× its p95 at %d | p95 ≤ 10 ms and ≤ 1.5× at %d | %s |\n",
				x.name, r.ScaleStudies, smallStudies, x.scale.p50(), x.scale.p95(), x.scale.Items, smallStudies, x.small.p50(), x.small.p95(),
				growth, smallStudies, smallStudies, verdict(ok))
		}
	} else {
		p("| C-FIND at 100,000 studies | not measured | not measured | | p95 ≤ 10 ms | skipped |\n")
	}
	p("\nHow:\n\n")
	p("- renkei: `renkei serve --dimse 127.0.0.1:PORT --ae RENKEI` on a fresh data folder in which `%s` (storescu, getscu and the client) and `%s` (the storescp, with its port) were first registered with `renkei admin ae add … --host 127.0.0.1`; no `--dimse-accept-any`. "+
		"Orthanc: the configuration above plus `DicomAet` ORTHANC, `DicomPort` and both AEs in `DicomModalities`. `TCP_NODELAY=1` in both servers' and dcmtk's environment; maximum PDU lengths are each program's default.\n", benchSCU, benchSCP)
	p("- Ingest: `storescu -xf storescu-bench.cfg Bench -aet %s -aec AE HOST PORT FILES…` (the configuration, written by the program, proposes CT Image Storage with Explicit VR Little Endian, JPEG Lossless SV1 and JPEG-LS lossless each in a context of its own, and the multi-frame's SOP class, so the 20 compressed instances go as stored), "+
		"once with all %d files on 1 association, then on fresh servers with the list dealt out to 4 storescu processes at once (1 association each); timed from the first start to the last exit, "+
		"and checked by counting the instances by QIDO-RS. renkei goes first over 1 association, Orthanc first over 4, with a `sync` before each. "+
		"The fsync-each-file copy (4 writers) runs on the same disk just before the 4-association ingest.\n",
		benchSCU, r.Instances)
	p("- Peak memory is VmHWM of each freshly started server right after each ingest (the larger of the two): 1 association renkei %.0f, Orthanc %.0f MiB; 4 associations renkei %.0f, Orthanc %.0f MiB; at the end of the phase renkei %.0f, Orthanc %.0f MiB.\n",
		mib(R.HWM1), mib(O.HWM1), mib(R.HWM4), mib(O.HWM4), mib(R.HWMEnd), mib(O.HWMEnd))
	p("- C-ECHO (%d after 20 warm-up) and C-FIND (study level, PatientID=%s, %d after 10 warm-up) are sent in sequence on one association by renkei's own client (`dimse.Dial`, `Echo`, `Find`).\n",
		r.EchoReps, benchPatients[0].ID, r.FindReps)
	p("- C-MOVE: renkei's client sends C-MOVE-RQ (destination %s) on a new association and waits for the final response (%d completed); the server opens its own association to `storescp --ignore +xa` (receives and discards). "+
		"C-GET: `getscu %s -aec AE -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=…` (discards what it receives), timed as a whole process. Each %d times, alternating between the servers.\n",
		benchSCP, R.MoveN, strings.Join(getscuArgs, " "), r.RetrieveReps)
	if r.ScaleStudies > 0 {
		p("- C-FIND at scale (renkei only): after the retrieves, renkei is stopped and %d synthetic studies are added to its index with `sqlstore.DB.Insert` (as for QIDO-RS at scale above; no blobs) to hold %d; that index is copied to a second data folder, the rest is added to the first to hold %d studies (%.0f s of indexing in all), and both folders are served at once. "+
			"On one association to each, the two C-FINDs are sent %d times (after 10 warm-up) to both servers in turn, the order rotating, so that both sizes see the same load from the rest of the machine. "+
			"Both queries find the same 2 studies at every size (no synthetic name starts with Yamada). VmHWM of the server at scale after it: %.0f MiB. "+
			"Orthanc is not measured at this size: filling it with 100,000 studies by STOW-RS takes minutes on top of the rest (`-dimse-find-studies 0` skips this part).\n",
			smallStudies-r.DataStudies, smallStudies, r.ScaleStudies, r.ScaleLoad.Seconds(), r.FindReps, mib(R.HWMScale))
	} else {
		p("- C-FIND at 100,000 studies was skipped (`-dimse-find-studies 0`).\n")
	}
	return b.String()
}

func dcmtkVersion() string {
	out, _ := exec.Command("storescu", "--version").CombinedOutput()
	if m := regexp.MustCompile(`v(\d+\.\d+\.\d+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "(unknown)"
}

const (
	dimseBegin = "<!-- bench-dimse:begin (generated by bash bench/run.sh --dimse; edit outside these markers) -->"
	dimseEnd   = "<!-- bench-dimse:end -->"
)

// writeDocsBetween replaces the text between begin and end; without them it adds them right after the main
// generated section (or at the end).
func writeDocsBetween(path, begin, end, table string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(old)
	block := begin + "\n" + table + end
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(end):]
	case strings.Contains(s, endMark):
		k := strings.Index(s, endMark) + len(endMark)
		s = s[:k] + "\n\n" + block + s[k:]
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
