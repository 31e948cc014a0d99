package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rate is a throughput measurement.
type rate struct {
	Files   int
	Bytes   int64
	Seconds float64
}

func (r rate) filesPerSec() float64 { return float64(r.Files) / r.Seconds }
func (r rate) mbPerSec() float64    { return mb(r.Bytes) / r.Seconds }
func (r rate) String() string {
	return fmt.Sprintf("%.0f files/s, %.0f MB/s (%d files, %.0f MB in %.1f s)", r.filesPerSec(), r.mbPerSec(), r.Files, mb(r.Bytes), r.Seconds)
}

// copyPlain copies the data set with io.Copy and one sync(2) at the end: what the disk takes without per-file
// durability.
func copyPlain(files []file, dst string) (rate, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return rate{}, err
	}
	defer cleanDir(dst)
	start := time.Now()
	var total int64
	for _, f := range files {
		in, err := os.Open(f.Path)
		if err != nil {
			return rate{}, err
		}
		out, err := os.Create(filepath.Join(dst, filepath.Base(f.Path)))
		if err != nil {
			in.Close()
			return rate{}, err
		}
		n, err := io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return rate{}, err
		}
		total += n
	}
	syscall.Sync()
	return rate{Files: len(files), Bytes: total, Seconds: time.Since(start).Seconds()}, nil
}

// copyFsync copies the data set with workers concurrent writers, each file written whole and fsynced before the next:
// the floor for an archive that makes every instance durable before acknowledging it.
func copyFsync(files []file, dst string, workers int) (rate, error) {
	return copyDurable(files, dst, workers, false)
}

// copyDurable is copyFsync; with renameDir each file is committed the way blob/disk commits a blob: written into a
// temporary file, fsynced, renamed into a fan-out folder dst/ab/cd/, and that folder fsynced. The difference from
// copyFsync is the cost of the rename and the folder fsync alone.
func copyDurable(files []file, dst string, workers int, renameDir bool) (rate, error) {
	if err := os.MkdirAll(filepath.Join(dst, "tmp"), 0o755); err != nil {
		return rate{}, err
	}
	defer cleanDir(dst)
	start := time.Now()
	ch := make(chan file)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				b, err := os.ReadFile(f.Path)
				name := filepath.Base(f.Path)
				target := filepath.Join(dst, name)
				if renameDir {
					target = filepath.Join(dst, "tmp", name)
				}
				if err == nil {
					var out *os.File
					out, err = os.Create(target)
					if err == nil {
						_, err = out.Write(b)
						if err == nil {
							err = out.Sync()
						}
						if cerr := out.Close(); err == nil {
							err = cerr
						}
					}
				}
				if err == nil && renameDir {
					h := sha256.Sum256([]byte(name))
					dir := filepath.Join(dst, hex.EncodeToString(h[:1]), hex.EncodeToString(h[1:2]))
					if err = os.MkdirAll(dir, 0o755); err == nil {
						if err = os.Rename(target, filepath.Join(dir, name)); err == nil {
							err = fsyncDir(dir)
						}
					}
				}
				mu.Lock()
				total += int64(len(b))
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		ch <- f
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return rate{}, firstErr
	}
	return rate{Files: len(files), Bytes: total, Seconds: time.Since(start).Seconds()}, nil
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanDir removes a folder and flushes the removal, so that the next phase starts on a quiet disk.
func cleanDir(dir string) {
	os.RemoveAll(dir)
	syscall.Sync()
}

// machineInfo describes the machine for the report.
type machineInfo struct {
	CPUs      int
	CPUModel  string
	MemGiB    float64
	Disk      string
	Kernel    string
	GoVersion string
	Orthanc   string
	Renkei    string
}

func describeMachine(repo, outDir string) machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPUModel = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	if kb := meminfo("MemTotal"); kb > 0 {
		m.MemGiB = float64(kb) / (1 << 20)
	}
	var st syscall.Statfs_t
	if syscall.Statfs(outDir, &st) == nil {
		size := float64(st.Blocks*uint64(st.Bsize)) / (1 << 30)
		dev, fstype := mountOf(outDir)
		m.Disk = fmt.Sprintf("%s %s, %.0f GiB", dev, fstype, size)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("Orthanc", "--version").Output(); err == nil {
		m.Orthanc = strings.SplitN(string(out), "\n", 2)[0]
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "orthanc-dicomweb").Output(); err == nil {
		m.Orthanc += ", orthanc-dicomweb " + string(out)
	}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Renkei = "commit " + strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
			m.Renkei += " + uncommitted changes"
		}
	}
	return m
}

func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			var n int64
			fmt.Sscanf(strings.TrimSpace(l[len(key)+1:]), "%d", &n)
			return n
		}
	}
	return 0
}

// mountOf returns the device and file system type of the longest mount point containing path.
func mountOf(path string) (dev, fstype string) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", ""
	}
	abs, _ := filepath.Abs(path)
	best := -1
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[0], "/dev/") {
			continue
		}
		if (abs == f[1] || strings.HasPrefix(abs, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > best {
			best, dev, fstype = len(f[1]), f[0], f[2]
		}
	}
	return dev, fstype
}
