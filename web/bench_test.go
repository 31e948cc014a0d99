package web_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"renkei"
	"renkei/access"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/dicomweb"
	"renkei/identity"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
	"renkei/sqlstore/pgtest"
	"renkei/web"
)

// BenchmarkAccess measures what access control and audit writing cost on QIDO-RS and WADO-RS throughput: the same
// requests through DICOMweb over the bare archive ("unchecked"), through the front's token authentication over the
// bare archive ("authenticated-unchecked": who calls is known, nothing is filtered or recorded), and through the full
// front (token authentication,
// the access decorator's scope, audit events) as deployed ("checked": a study read again by the same caller within
// 10 minutes is not recorded again), with every read recorded ("checked-every-read": the worst case), and with
// authentication and scope but no audit ("checked-no-audit", to show where the cost is); same process, same index.
// RENKEI_BENCH_STUDIES sets the index size (default 10000; the figure is 100000) and RENKEI_BENCH_SHARES the
// shares received by the measured hospital (default 1000); RENKEI_BENCH_PROFILE_DIR=DIR writes a CPU profile of each
// side into DIR. Run with:
//
//	RENKEI_BENCH_STUDIES=100000 go test ./web -run '^$' -bench Access -benchtime 3000x -count 3
func BenchmarkAccess(b *testing.B) {
	env := accessBenchEnv(b)
	for _, tc := range accessCases(env) {
		for _, side := range accessSides(env) {
			b.Run(tc.name+"/"+side.name, func(b *testing.B) {
				if dir := os.Getenv("RENKEI_BENCH_PROFILE_DIR"); dir != "" {
					// A CPU profile of this side alone (the process's own: the server and the clients), without the
					// region's set-up, which dominates a -cpuprofile of the whole run.
					f, err := os.Create(filepath.Join(dir, tc.name+"-"+side.name+".prof"))
					if err != nil {
						b.Fatal(err)
					}
					pprof.StartCPUProfile(f)
					defer func() { pprof.StopCPUProfile(); f.Close() }()
				}
				var n atomic.Int64
				b.SetParallelism(2) // 2 cores × 2 = 4 clients
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := env.get(side.url, tc, int(n.Add(1)), side.auth); err != nil {
							b.Error(err)
							return
						}
					}
				})
				// Its audit events in the chain before the time stops (see BenchmarkAccessRatio).
				if err := env.db.FlushAudit(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkAccessRatio measures the same requests and sides as BenchmarkAccess, interleaved: each iteration is a
// round that sends 200 requests (4 clients) of one kind to every side in turn, the order rotating from round to
// round, so that a change in the machine's load (other programs on the same 2 cores) falls on every side alike
// instead of on whichever ran during it. It reports µs per request of each side and each side's ratio to unchecked
// and to authenticated-unchecked (the same front with the access check and audit alone disabled).
// RENKEI_BENCH_ROUND sets the requests a side gets in a round (default 200): each side's audit events are drained
// into the chain before its time stops, a transaction and its flushes that longer rounds spread thinner. Run with:
//
//	RENKEI_BENCH_STUDIES=100000 go test ./web -run '^$' -bench AccessRatio -benchtime 20x
func BenchmarkAccessRatio(b *testing.B) {
	env := accessBenchEnv(b)
	sides := accessSides(env)
	perRound, clients := envInt("RENKEI_BENCH_ROUND", 200), 4
	for _, tc := range accessCases(env) {
		b.Run(tc.name, func(b *testing.B) {
			spent := make([]time.Duration, len(sides))
			var n atomic.Int64
			round := 0
			for b.Loop() {
				for j := range sides {
					k := (j + round) % len(sides)
					side := sides[k]
					var left atomic.Int64
					left.Store(int64(perRound))
					var wg sync.WaitGroup
					start := time.Now()
					for range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for left.Add(-1) >= 0 {
								if err := env.get(side.url, tc, int(n.Add(1)), side.auth); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					// The side's audit events are in the chain before its time stops: a drain of the audit
					// journal that would run later is charged to the side that wrote the events, not the next.
					if err := env.db.FlushAudit(context.Background()); err != nil {
						b.Fatal(err)
					}
					spent[k] += time.Since(start)
				}
				round++
			}
			per := func(k int) float64 { return float64(spent[k].Microseconds()) / float64(round*perRound) }
			for k, side := range sides {
				b.ReportMetric(per(k), side.name+"-µs/req")
				if k > 0 {
					b.ReportMetric(per(k)/per(0), side.name+"/unchecked")
				}
				if k > 1 {
					b.ReportMetric(per(k)/per(1), side.name+"/authenticated-unchecked")
				}
			}
		})
	}
}

// accessSide is one front end of the benchmark: its URL and whether requests carry the bearer token.
type accessSide struct {
	name string
	url  string
	auth bool
}

// accessSides are the front ends compared, the baseline (unchecked) first and authenticated-unchecked second.
func accessSides(env *accessBench) []accessSide {
	return []accessSide{{"unchecked", env.bare.URL, false}, {"authenticated-unchecked", env.authOnly.URL, true},
		{"checked", env.full.URL, true}, {"checked-every-read", env.everyRead.URL, true}, {"checked-no-audit", env.noAudit.URL, true}}
}

type accessCase struct {
	name   string
	path   func(i int) string
	accept string
}

func accessCases(env *accessBench) []accessCase {
	return []accessCase{
		{"QIDO-PatientID", func(i int) string { return "/dicomweb/studies?PatientID=" + env.ownPatients[i%len(env.ownPatients)] }, ""},
		{"QIDO-name", func(i int) string { return "/dicomweb/studies?PatientName=" + env.ownNames[i%len(env.ownNames)] + "*" }, ""},
		{"QIDO-list50", func(i int) string { return "/dicomweb/studies?limit=50&offset=" + strconv.Itoa(i%20*50) }, ""},
		{"WADO-metadata", func(i int) string { return "/dicomweb/studies/" + env.real[i%len(env.real)] + "/metadata" }, ""},
		{"WADO-study", func(i int) string { return "/dicomweb/studies/" + env.real[i%len(env.real)] },
			`multipart/related; type="application/dicom"; transfer-syntax=*`},
	}
}

// get sends the i-th request of a kind to one side and reads the whole answer, which must be 200.
func (env *accessBench) get(base string, tc accessCase, i int, auth bool) error {
	req, _ := http.NewRequest("GET", base+tc.path(i), nil)
	if tc.accept != "" {
		req.Header.Set("Accept", tc.accept)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+env.token)
	}
	resp, err := env.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	return nil
}

type accessBench struct {
	dir         string
	full, bare  *httptest.Server
	everyRead   *httptest.Server // no de-duplication of read events
	noAudit     *httptest.Server // authentication and scope, audit events dropped: to see where the cost is
	authOnly    *httptest.Server // the token authenticated, then the bare archive: the check alone disabled
	db          *sqlstore.DB
	token       string
	client      *http.Client
	ownPatients []string
	ownNames    []string
	real        []string
}

var (
	accessBenchOnce sync.Once
	accessBenchVal  *accessBench
	accessBenchErr  error
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// accessBenchEnv builds the region once per process: 50 institutions owning the synthetic studies equally, the
// measured hospital among them with some real studies too, and shares of other institutions' patients to it.
func accessBenchEnv(b *testing.B) *accessBench {
	accessBenchOnce.Do(func() {
		accessBenchVal, accessBenchErr = buildAccessBench(envInt("RENKEI_BENCH_STUDIES", 10000), envInt("RENKEI_BENCH_SHARES", 1000))
	})
	if accessBenchErr != nil {
		b.Fatal(accessBenchErr)
	}
	return accessBenchVal
}

func buildAccessBench(studies, shares int) (*accessBench, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "renkei-access-bench-")
	if err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		return nil, err
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	db.AuditKey = &sqlstore.AuditKey{ID: "bench", Private: priv}
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, err
	}
	const institutions = 50
	var pks []int64
	for i := range institutions {
		in := &renkei.Institution{ID: fmt.Sprintf("inst-%02d", i), Name: fmt.Sprintf("施設%02d", i), Kind: renkei.Hospital, Issuer: fmt.Sprintf("I%02d", i)}
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			return nil, err
		}
		pks = append(pks, in.PK)
	}
	hospital := pks[0]
	env := &accessBench{dir: dir, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}

	// Synthetic studies straight into the index (the path STOW-RS takes after the blob), four per patient.
	one := 1
	var wg sync.WaitGroup
	ch := make(chan int, 256)
	errc := make(chan error, 1)
	now := time.Now()
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				inst := pks[(i/4)%institutions]
				pid := fmt.Sprintf("P%07d", i/4)
				name := fmt.Sprintf("Bench%07d^Taro=ベンチ%07d^太郎", i/4, i/4)
				in := &renkei.Instance{Institution: inst, Patient: renkei.PatientKey{Issuer: fmt.Sprintf("I%02d", (i/4)%institutions), ID: pid},
					PatientName: name, PatientNameKeys: archive.NameKeys(name), StudyInstanceUID: fmt.Sprintf("2.25.1%d", i),
					StudyDate: fmt.Sprintf("20%02d%02d%02d", 10+i%15, 1+i%12, 1+i%28), StudyTime: "120000", SeriesInstanceUID: fmt.Sprintf("2.25.2%d", i),
					Modality: "CT", SeriesNumber: &one, SOPInstanceUID: fmt.Sprintf("2.25.3%d", i), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					InstanceNumber: &one, TransferSyntaxUID: "1.2.840.10008.1.2.1", Rows: 512, Columns: 512, NumberOfFrames: 1, BitsAllocated: 16,
					BlobKey: fmt.Sprintf("%064x", i+1), Size: 525000, ReceivedAt: now, Source: "bench"}
				if _, _, err := db.Insert(ctx, in); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
				if inst == hospital && i%4 == 0 && len(env.ownPatients) < 2000 {
					// Written by one goroutine at a time: the producer hands i out in order, but keep it safe.
					benchMu.Lock()
					env.ownPatients = append(env.ownPatients, pid)
					env.ownNames = append(env.ownNames, fmt.Sprintf("ベンチ%07d", i/4))
					benchMu.Unlock()
				}
			}
		}()
	}
	for i := range studies {
		ch <- i
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}

	// Shares of other institutions' patients to the hospital (consent is not the point here).
	for i := 0; i < shares; i++ {
		p := (i*37 + 1) % (studies / 4)
		if p%institutions == 0 {
			p++
		}
		sh := &renkei.Share{FromInstitution: pks[p%institutions], Patient: renkei.PatientKey{Issuer: fmt.Sprintf("I%02d", p%institutions),
			ID: fmt.Sprintf("P%07d", p)}, ToInstitution: hospital, Purpose: renkei.PurposeReferral, ExpiresAt: now.Add(24 * time.Hour),
			WithoutConsent: true}
		if err := db.CreateShare(ctx, sh, nil); err != nil {
			return nil, fmt.Errorf("share %d: %w", i, err)
		}
	}

	// Real studies of the hospital for WADO-RS: 20 studies of 4 small CT instances.
	logger := quietLogger()
	ax := access.New(db, db, db)
	full := archive.New(ax, blobs, logger)
	asHospital := renkei.WithPrincipal(ctx, &renkei.Principal{Kind: renkei.TokenPrincipal, Name: "loader", Institution: hospital, Write: true, Issuer: "I00"})
	for s := range 20 {
		for k := 1; k <= 4; k++ {
			path := filepath.Join(dir, fmt.Sprintf("real-%d-%d.dcm", s, k))
			if err := dicomtest.CT(path, dicomtest.CTOptions{PatientID: fmt.Sprintf("R%03d", s), Rows: 128, Cols: 128, InstanceNumber: k, Seed: int64(9000 + s)}); err != nil {
				return nil, err
			}
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			res := full.Store(asHospital, f, archive.StoreRequest{Source: "bench"})
			f.Close()
			if res.Err != nil {
				return nil, res.Err
			}
		}
	}
	recs, err := full.QueryStudies(asHospital, &renkei.Query{Level: renkei.StudyLevel, Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchWildcard, Value: "R*"}}})
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		env.real = append(env.real, r.StudyInstanceUID)
	}

	ids := identity.New(db)
	env.token, err = ids.CreateToken(ctx, renkei.System, &renkei.APIToken{Institution: hospital, Name: "bench"})
	if err != nil {
		return nil, err
	}
	env.db = db
	front := web.New(ids, db, dicomweb.New(full, logger, "/dicomweb"), logger)
	env.full = httptest.NewServer(front)
	env.bare = httptest.NewServer(dicomweb.New(archive.New(db, blobs, logger), logger, "/dicomweb"))
	env.authOnly = httptest.NewServer(web.New(ids, db, dicomweb.New(archive.New(db, blobs, logger), logger, "/dicomweb"), logger))
	every := access.New(db, db, db)
	every.DedupWindow = 0 // every read writes its event
	env.everyRead = httptest.NewServer(web.New(ids, db, dicomweb.New(archive.New(every, blobs, logger), logger, "/dicomweb"), logger))
	na := access.New(db, db, nopAuditor{})
	na.DedupWindow = 0
	env.noAudit = httptest.NewServer(web.New(ids, db, dicomweb.New(archive.New(na, blobs, logger), logger, "/dicomweb"), logger))
	return env, nil
}

var benchMu sync.Mutex

type nopAuditor struct{}

func (nopAuditor) Audit(context.Context, ...*renkei.AuditEvent) error { return nil }

// TestMain removes the benchmark's region, and stops PostgreSQL if a test started it, when the process ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if accessBenchVal != nil {
		accessBenchVal.full.Close()
		accessBenchVal.bare.Close()
		accessBenchVal.everyRead.Close()
		accessBenchVal.noAudit.Close()
		accessBenchVal.authOnly.Close()
		os.RemoveAll(accessBenchVal.dir)
	}
	pgtest.Stop() // the PostgreSQL cluster of the tests that run on both databases, if one was started
	os.Exit(code)
}
