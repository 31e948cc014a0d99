package main

import (
	"fmt"
	"os"
	"strings"
)

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// report renders the results as markdown: the targets table, then the machine's own limits and details.
func report(c *config, r *results) string {
	var b strings.Builder
	R, O := &r.Renkei, &r.Orthanc
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("Run %s UTC (%.0f min), `%s`.\n\n", r.Date.Format("2006-01-02 15:04"), r.Elapsed.Minutes(), c.Command)
	p("Machine: %d CPUs (%s), %.0f GiB memory, disk %s, Linux %s. %s; renkei %s built with %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemGiB, r.Machine.Disk, r.Machine.Kernel, r.Machine.Orthanc, r.Machine.Renkei, r.Machine.GoVersion)
	p("Data set: %d instances, %.0f MB: 5 CT studies of %d slices (512×512, 16-bit) for 4 patients (3 with Japanese names), "+
		"20 compressed instances (10 JPEG lossless by dcmcjpeg, 10 JPEG-LS by dcmcjpls), one %d-frame multi-frame instance. "+
		"Metadata and retrieval use one CT study of %d instances (%.0f MB).\n\n",
		r.Instances, mb(r.Bytes), c.PerStudy, c.Frames, r.StudyFiles, mb(r.StudyBytes))

	p("| Measure | renkei | Orthanc | renkei ÷ Orthanc | Target | Result |\n|---|---|---|---|---|---|\n")
	stowRatio := R.Stow.filesPerSec() / O.Stow.filesPerSec()
	p("| STOW-RS ingest, 4 clients × 10 instances per request | %.0f inst/s, %.0f MB/s | %.0f inst/s, %.0f MB/s | %.2f× | ≥ 2.5× | %s |\n",
		R.Stow.filesPerSec(), R.Stow.mbPerSec(), O.Stow.filesPerSec(), O.Stow.mbPerSec(), stowRatio, verdict(stowRatio >= 2.5))
	fr := R.Stow.filesPerSec() / r.Fsync4.filesPerSec()
	p("| STOW-RS ÷ fsync-each-file copy (4 writers, %.0f files/s) | %.0f%% | %.0f%% | | ≥ 70%% | %s |\n",
		r.Fsync4.filesPerSec(), 100*fr, 100*O.Stow.filesPerSec()/r.Fsync4.filesPerSec(), verdict(fr >= 0.7))
	mem := float64(R.HWM) / float64(O.HWM)
	p("| Peak RSS (VmHWM) over ingest, queries and retrieval | %.0f MiB | %.0f MiB | %.2f× | ≤ 0.5× | %s |\n", mib(R.HWM), mib(O.HWM), mem, verdict(mem <= 0.5))
	qrow := func(name string, rq, oq timed) {
		ratio := rq.p95() / oq.p95()
		p("| %s | %.1f / %.1f ms (%d hits) | %.1f / %.1f ms (%d hits) | %.2f× | p95 ≤ 1/3 Orthanc's | %s |\n",
			name, rq.p50(), rq.p95(), rq.Items, oq.p50(), oq.p95(), oq.Items, ratio, verdict(ratio <= 1.0/3))
	}
	qrow("QIDO-RS studies by PatientID, p50 / p95 (7 studies held)", R.QIDO.ByID, O.QIDO.ByID)
	qrow("QIDO-RS studies by PatientName=Yamada*, p50 / p95 (7 studies)", R.QIDO.ByName, O.QIDO.ByName)
	p("| QIDO-RS studies by PatientName=山田* (kanji), p95 | %.1f ms, %d hits | %.1f ms, %d hits | | finds the patient | %s |\n",
		R.QIDO.ByKanji.p95(), R.QIDO.ByKanji.Items, O.QIDO.ByKanji.p95(), O.QIDO.ByKanji.Items, verdict(R.QIDO.ByKanji.Items == 2))
	if R.QIDOScale != nil {
		rs := R.QIDOScale
		oCell := func(t func(*qidoSet) timed) (string, string) {
			if O.QIDOScale == nil {
				return "not measured", ""
			}
			ot := t(O.QIDOScale)
			return fmt.Sprintf("%.1f / %.1f ms (%d hits) at %d studies", ot.p50(), ot.p95(), ot.Items, O.QIDOScale.Studies),
				fmt.Sprintf("%.2f×", t(rs).p95()/ot.p95())
		}
		for _, q := range []struct {
			name string
			t    func(*qidoSet) timed
			tgt  bool
		}{
			{"PatientID", func(q *qidoSet) timed { return q.ByID }, true},
			{"PatientName=Yamada*", func(q *qidoSet) timed { return q.ByName }, true},
			{"PatientName=山田*", func(q *qidoSet) timed { return q.ByKanji }, true},
			{rs.BroadQuery + " (first page of a broad search)", func(q *qidoSet) timed { return q.Broad }, false},
		} {
			oc, ratio := oCell(q.t)
			t := q.t(rs)
			target, v := "p95 ≤ 10 ms", verdict(t.p95() <= 10)
			if !q.tgt {
				target, v = "(no target)", ""
			}
			p("| QIDO-RS by %s, p50 / p95, renkei at %d studies | %.1f / %.1f ms (%d hits) | %s | %s | %s | %s |\n",
				q.name, rs.Studies, t.p50(), t.p95(), t.Items, oc, ratio, target, v)
		}
	}
	meta := R.Metadata.p50() / O.Metadata.p50()
	p("| WADO-RS study metadata (%d instances), p50 / p95 | %.0f / %.0f ms | %.0f / %.0f ms | %.2f× | ≤ 1/3 Orthanc's time | %s |\n",
		R.Metadata.Items, R.Metadata.p50(), R.Metadata.p95(), O.Metadata.p50(), O.Metadata.p95(), meta, verdict(meta <= 1.0/3))
	ret := R.Retrieve.mbPerSec() / O.Retrieve.mbPerSec()
	p("| WADO-RS whole-study retrieve (%.0f MB), median of 5 | %.0f MB/s | %.0f MB/s | %.2f× | ≥ 1.5× Orthanc's MB/s | %s |\n",
		mb(r.StudyBytes), R.Retrieve.mbPerSec(), O.Retrieve.mbPerSec(), ret, verdict(ret >= 1.5))
	p("| WADO-RS one frame of the %d-frame instance, p50 / p95 | %.1f / %.1f ms | %.1f / %.1f ms | %.2f× | p95 ≤ 20 ms | %s |\n",
		c.Frames, R.Frames.p50(), R.Frames.p95(), O.Frames.p50(), O.Frames.p95(), R.Frames.p95()/O.Frames.p95(), verdict(R.Frames.p95() <= 20))

	p("\nThe disk's limits, measured on the same folder as the servers' data and interleaved with their STOW-RS: the data set "+
		"is sent in %d slices, each slice copied in every way and sent to both servers before the next, the order rotating, "+
		"with a `sync` between steps (source files in the page cache):\n\n", ingestSlices(c))
	p("| Copy of the data set | files/s | MB/s |\n|---|---|---|\n")
	p("| plain copy (io.Copy per file), one `sync` at the end | %.0f | %.0f |\n", r.Plain.filesPerSec(), r.Plain.mbPerSec())
	p("| write + fsync each file, 1 writer | %.0f | %.0f |\n", r.Fsync1.filesPerSec(), r.Fsync1.mbPerSec())
	p("| write + fsync each file, 4 writers | %.0f | %.0f |\n", r.Fsync4.filesPerSec(), r.Fsync4.mbPerSec())
	p("| write + fsync + rename into a fan-out folder + fsync that folder (renkei's blob commit, without the index), 4 writers | %.0f | %.0f |\n", r.Blob4.filesPerSec(), r.Blob4.mbPerSec())
	p("| renkei STOW-RS (blob and index durable before the answer) | %.0f | %.0f |\n", R.Stow.filesPerSec(), R.Stow.mbPerSec())
	p("| Orthanc STOW-RS (fsyncs each file: SyncStorageArea, true by default) | %.0f | %.0f |\n", O.Stow.filesPerSec(), O.Stow.mbPerSec())

	p("\nDetails:\n\n")
	p("- Server CPU during the ingest phase: renkei %.1f s (%.2f ms per instance), Orthanc %.1f s (%.2f ms per instance); the 4 clients share the same 2 cores.\n",
		R.StowCPU, 1000*R.StowCPU/float64(R.Stow.Files), O.StowCPU, 1000*O.StowCPU/float64(O.Stow.Files))
	p("- VmHWM right after ingest: renkei %.0f MiB, Orthanc %.0f MiB.\n", mib(R.HWMAfterStow), mib(O.HWMAfterStow))
	if R.QIDOScale != nil {
		p("- renkei at scale: %s, then renkei restarted on that data folder (VmHWM in that phase %.0f MiB).\n", R.ScaleLoadHow, mib(R.HWMScalePhase))
	}
	if O.QIDOScale != nil {
		p("- Orthanc at scale: %s, on top of the data set.\n", O.ScaleLoadHow)
	} else {
		p("- Orthanc was measured at the data set's 7 studies only (no scale phase in this run).\n")
	}
	p("- Whole-study retrieve asked for `%s` from renkei and `%s` from Orthanc.\n", R.RetrieveAcc, O.RetrieveAcc)
	p("- Latencies are from one client, requests in sequence: QIDO-RS %d per query after 10 warm-up ones; metadata %d after 1; "+
		"frames %d (renkei) and %d (Orthanc, capped at about a minute) random frames of %d after 3.\n",
		c.Reps, len(R.Metadata.Lat), len(R.Frames.Lat), len(O.Frames.Lat), c.Frames)
	return b.String()
}

const (
	beginMark = "<!-- bench:begin (generated by bench/run.sh; edit outside these markers) -->"
	endMark   = "<!-- bench:end -->"
)

// writeDocs replaces the generated part of the docs page, keeping what people wrote around it.
func writeDocs(path, table string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	block := beginMark + "\n" + table + endMark
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMark):]
	case s == "":
		s = "# Benchmarks: renkei and Orthanc\n\n" + block + "\n"
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
