package dicomsvc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei"
	"renkei/access"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/dicom"
	"renkei/dicomsvc"
	"renkei/dimse"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// Tests run the archive on a real SQLite file and a real blob folder behind an in-process dimse.Server on
// 127.0.0.1:0, and drive it with dcmtk's tools (Debian package dcmtk), as a modality or workstation would.

// registry is an AE registry in a map.
type registry struct {
	mu  sync.Mutex
	aes map[string]renkei.AE
}

func (r *registry) LookupAE(ctx context.Context, title string) (renkei.AE, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ae, ok := r.aes[strings.TrimSpace(title)]
	if !ok {
		return ae, renkei.Errorf("test.LookupAE", renkei.NotFound, "AE title %q is not registered", title)
	}
	return ae, nil
}

func (r *registry) put(ae renkei.AE) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aes[ae.Title] = ae
}

// env is a running archive with its DIMSE service.
type env struct {
	t          *testing.T
	dir        string
	db         *sqlstore.DB
	archive    *archive.Service
	svc        *dicomsvc.Service
	aes        *registry
	addr       string
	host, port string
	clinic     int64 // the institution of the registered AEs
}

// ctx is a context acting as an administrator of the clinic, for the tests' own reads and writes through the archive.
func (e *env) ctx() context.Context {
	return renkei.WithPrincipal(context.Background(), &renkei.Principal{Kind: renkei.UserPrincipal, ID: 1, Name: "admin@clinic",
		Institution: e.clinic, Role: renkei.InstitutionAdmin, Write: true})
}

// studyKeys is a study-level retrieve identifier: QueryRetrieveLevel STUDY and the Study Instance UID (a list with \).
func studyKeys(uid string) *dicom.DataSet {
	id := &dicom.DataSet{}
	id.SetString(0x00080052, "CS", "STUDY")
	id.SetString(dicom.StudyInstanceUID, "UI", uid)
	return id
}

// storePeer starts a Storage SCP with ae's title on loopback, receiving with store, registers ae with its port (as
// register does), and stops it when the test ends.
func (e *env) storePeer(t testing.TB, ae renkei.AE, store dimse.StoreHandler) {
	t.Helper()
	srv := &dimse.Server{AETitle: ae.Title, Handlers: dimse.Handlers{Store: store}, Logger: testLogger()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ae.Host, ae.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	e.register(ae)
}

// register adds an AE to the registry, as one of the clinic's unless it names another institution.
func (e *env) register(ae renkei.AE) {
	if ae.InstitutionPK == 0 {
		ae.Institution, ae.InstitutionPK = "clinic", e.clinic
	}
	e.aes.put(ae)
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts an archive with the AE titles dcmtk's tools call with by default registered from 127.0.0.1.
func newEnv(t *testing.T, configure ...func(*dicomsvc.Service)) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	logger := testLogger()
	// The archive behind DIMSE is the one serve runs: behind the access decorator, so that every association acts
	// for its AE's institution and is audited.
	a := archive.New(access.New(db, db, db), blobs, logger)
	clinic := &renkei.Institution{ID: "clinic", Name: "診療所", Kind: renkei.Clinic}
	if err := db.PutInstitution(ctx, clinic, nil); err != nil {
		t.Fatal(err)
	}
	reg := &registry{aes: map[string]renkei.AE{}}
	for _, title := range []string{"STORESCU", "FINDSCU", "MOVESCU", "GETSCU", "ECHOSCU", "GOSCU"} {
		reg.put(renkei.AE{Title: title, Host: "127.0.0.1", Institution: "clinic", InstitutionPK: clinic.PK, Issuer: "ISSUER_" + title})
	}
	svc := &dicomsvc.Service{Archive: a, AEs: reg, Logger: logger, Now: time.Now}
	for _, c := range configure {
		c(svc)
	}
	if svc.AcceptAny && svc.AnyInstitution == 0 {
		svc.AnyInstitution = clinic.PK
	}
	srv := &dimse.Server{AETitle: "RENKEI", Handlers: svc.Handlers(), AcceptAE: svc.AcceptAE, Logger: logger}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	e := &env{t: t, dir: dir, db: db, archive: a, svc: svc, aes: reg, addr: ln.Addr().String(), clinic: clinic.PK}
	e.host, e.port, _ = net.SplitHostPort(e.addr)
	return e
}

var (
	datasetOnce    sync.Once
	datasetSamples []dicomtest.Sample
	datasetErr     error
	datasetDir     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if datasetDir != "" {
		os.RemoveAll(datasetDir)
	}
	os.Exit(code)
}

// samples returns dicomtest.Dataset's 33 files (five studies, four patients, every transfer syntax), written once
// per test binary.
func samples(t *testing.T) []dicomtest.Sample {
	t.Helper()
	needTools(t, "storescu", "findscu", "movescu", "getscu", "storescp", "echoscu", "dump2dcm")
	datasetOnce.Do(func() {
		datasetDir, datasetErr = os.MkdirTemp("", "dicomsvc-")
		if datasetErr == nil {
			datasetSamples, datasetErr = dicomtest.Dataset(datasetDir)
		}
	})
	if datasetErr != nil {
		t.Skipf("dicomtest.Dataset needs dcmtk and libgdcm-tools: %v", datasetErr)
	}
	return datasetSamples
}

// sample is the sample file of that name.
func sample(t *testing.T, name string) dicomtest.Sample {
	t.Helper()
	for _, s := range samples(t) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no sample %q", name)
	return dicomtest.Sample{}
}

var (
	needTools = dicomtest.NeedTools
	run       = dicomtest.Run
	runErr    = dicomtest.RunErr
)

// store puts files into the archive directly (the ingest C-STORE uses too), for query and retrieve tests.
func (e *env) store(files ...dicomtest.Sample) {
	e.t.Helper()
	for _, s := range files {
		f, err := os.Open(s.Path)
		if err != nil {
			e.t.Fatal(err)
		}
		res := e.archive.Store(e.ctx(), f, archive.StoreRequest{Source: "test", Issuer: "CLINIC_X"})
		f.Close()
		if res.Failure != 0 {
			e.t.Fatalf("store %s: %#x %v", s.Name, res.Failure, res.Err)
		}
	}
}

// parsed is a Part 10 file with the bytes of its data set.
type parsed struct {
	file    *dicom.File
	dataSet []byte
}

func parseFile(t testing.TB, b []byte) parsed {
	t.Helper()
	f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
	if err != nil {
		t.Fatal(err)
	}
	return parsed{file: f, dataSet: b[f.DataSetOffset:]}
}

func readFile(t testing.TB, path string) parsed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseFile(t, b)
}

// stored returns the record and the stored bytes of an instance, read back through the archive as WADO-RS reads
// them.
func (e *env) stored(uid string) (renkei.InstanceRecord, parsed) {
	e.t.Helper()
	recs, err := e.archive.Instances(e.ctx(), "", "", uid)
	if err != nil {
		e.t.Fatalf("instance %s: %v", uid, err)
	}
	var buf bytes.Buffer
	if err := e.archive.WriteObject(e.ctx(), &buf, recs[0], "*"); err != nil {
		e.t.Fatal(err)
	}
	return recs[0], parseFile(e.t, buf.Bytes())
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// freePort returns a TCP port nothing listens on now.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// receivedFiles reads the files a dcmtk tool wrote into a folder, by SOP Instance UID.
func receivedFiles(t testing.TB, dir string) map[string]parsed {
	t.Helper()
	out := map[string]parsed{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		p := readFile(t, filepath.Join(dir, e.Name()))
		out[p.file.DataSet.String(dicom.SOPInstanceUID)] = p
	}
	return out
}
