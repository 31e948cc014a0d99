package atna_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rsyslog is a real rsyslogd (Debian rsyslog + rsyslog-gnutls) receiving syslog over TLS (imtcp, gtls driver) on a
// port of its own and writing each message's structured data and body as one line of a file.
type rsyslog struct {
	t        *testing.T
	bin      string
	dir      string
	conf     string
	Port     int
	Out      string
	CAPool   *x509.CertPool
	cmd      *exec.Cmd
	exited   chan struct{}
	stderr   bytes.Buffer
	restarts int
}

// findRsyslogd returns the rsyslogd binary, or skips the test saying what to install (on CI, where scripts/setup
// installs it, its absence fails the test).
func findRsyslogd(t *testing.T) string {
	t.Helper()
	missing := t.Skip
	if os.Getenv("CI") != "" {
		missing = t.Fatal
	}
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, err := os.Stat(bin); err != nil {
			missing("rsyslogd is not installed: apt-get install rsyslog rsyslog-gnutls (scripts/setup does)")
		}
	}
	mods, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so")
	if len(mods) == 0 {
		missing("rsyslog's TLS driver is not installed: apt-get install rsyslog-gnutls (scripts/setup does)")
	}
	return bin
}

// startRsyslog writes a test CA and a server certificate for 127.0.0.1 and starts rsyslogd with its own config.
func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	bin := findRsyslogd(t)
	dir := t.TempDir()
	caPool := writeTestPKI(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &rsyslog{t: t, bin: bin, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), Port: port, Out: filepath.Join(dir, "audit.log"), CAPool: caPool}
	conf := fmt.Sprintf(`global(
  workDirectory="%[1]s"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="%[1]s/ca.pem"
  defaultNetstreamDriverCertFile="%[1]s/server.pem"
  defaultNetstreamDriverKeyFile="%[1]s/server.key"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="%[2]d")
template(name="atna" type="string" string="%%structured-data%% %%msg%%\n")
action(type="omfile" file="%[3]s" template="atna")
`, dir, port, r.Out)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start runs rsyslogd in the foreground and returns once it accepts TLS connections.
func (r *rsyslog) Start() {
	r.t.Helper()
	r.stderr.Reset()
	r.cmd = exec.Command(r.bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, fmt.Sprintf("rsyslogd.%d.pid", r.restarts)))
	r.restarts++
	r.cmd.Stdout, r.cmd.Stderr = &r.stderr, &r.stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start rsyslogd: %v", err)
	}
	r.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(r.cmd, r.exited)
	conf := &tls.Config{RootCAs: r.CAPool, ServerName: "127.0.0.1"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-r.exited:
			r.t.Fatalf("rsyslogd exited at start: %s", r.stderr.String())
		default:
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", r.Port), conf)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not accept TLS on port %d: %v\n%s", r.Port, err, r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends rsyslogd (SIGTERM: it writes what it has received and exits) and waits for it.
func (r *rsyslog) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// Lines returns the lines written so far.
func (r *rsyslog) Lines() []string {
	b, err := os.ReadFile(r.Out)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if sc.Text() != "" {
			out = append(out, sc.Text())
		}
	}
	return out
}

// received maps each sequenceId received to the message bodies that carried it.
func received(lines []string) map[int64][]string {
	out := map[int64][]string{}
	for _, l := range lines {
		sd, body, ok := strings.Cut(l, "] ")
		if !ok || !strings.HasPrefix(sd, `[meta sequenceId="`) {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(sd, `[meta sequenceId="`), `"`), 10, 64)
		if err != nil {
			continue
		}
		out[n] = append(out[n], strings.TrimPrefix(body, "\uFEFF"))
	}
	return out
}

// writeTestPKI writes ca.pem, server.pem and server.key (for 127.0.0.1) into dir and returns the CA as a pool.
func writeTestPKI(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "renkei test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: der},
		"server.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}
