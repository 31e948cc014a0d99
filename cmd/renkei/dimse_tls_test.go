package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// TestServeDIMSETLS: `renkei serve --dimse-tls` with a client CA, as a hospital runs it across a network (PS3.15
// Annex B). dcmtk's echoscu with a certificate the CA signed for its AE title gets through; with another AE's
// certificate, or none (anonymous TLS), it does not;
// a client that offers only TLS 1.1, or only CBC ciphers under TLS 1.2, is refused at the handshake (BCP 195).
func TestServeDIMSETLS(t *testing.T) {
	if _, err := exec.LookPath("echoscu"); err != nil {
		t.Skip("echoscu is missing: install Debian's dcmtk (scripts/setup does)")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "renkei test region CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage ...x509.ExtKeyUsage) (certPath, keyPath string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
		return certPath, keyPath
	}
	caPath := filepath.Join(dir, "ca.crt")
	os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	srvCert, srvKey := issue("renkei", 2, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth) // it also calls TLS destinations
	scpCert, scpKey := issue("TLSSCP", 5, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := issue("TLSCT", 3, x509.ExtKeyUsageClientAuth)       // a certificate names its AE title
	otherCert, otherKey := issue("OTHERCT", 4, x509.ExtKeyUsageClientAuth) // another modality's

	_, scpPort, _ := net.SplitHostPort(freeAddr(t))
	var out strings.Builder
	for _, args := range [][]string{
		{"admin", "institution", "add", "hosp-tls", "--name", "TLS病院", "--kind", "hospital"},
		{"admin", "ae", "add", "TLSCT", "--host", "127.0.0.1", "--institution", "hosp-tls"},
		{"admin", "ae", "add", "TLSSCP", "--host", "127.0.0.1", "--port", scpPort, "--institution", "hosp-tls", "--tls"},
	} {
		if code := Main(context.Background(), append(args, "--data", data), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	tlsAddr := freeAddr(t)
	_, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn",
		"--dimse-tls", tlsAddr, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", caPath)
	defer stop()
	host, port, _ := net.SplitHostPort(tlsAddr)
	echo := func(args ...string) (string, error) {
		cmd := exec.Command("echoscu", append(args, "-aet", "TLSCT", "-aec", "RENKEI", host, port)...)
		cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if o, err := echo("+tls", cliKey, cliCert, "+cf", caPath); err != nil {
		t.Errorf("C-ECHO over TLS with a client certificate: %v\n%s", err, o)
	}
	if o, err := echo("+tls", otherKey, otherCert, "+cf", caPath); err == nil || !strings.Contains(o, "Calling AE Title Not Recognized") {
		t.Errorf("C-ECHO as TLSCT with OTHERCT's certificate: %v\n%s", err, o)
	}
	if o, err := echo("+tla", "+cf", caPath); err == nil {
		t.Errorf("C-ECHO over TLS without a client certificate succeeded; --tls-client-ca requires one\n%s", o)
	}
	if o, err := echo(); err == nil {
		t.Errorf("C-ECHO in plain TCP to the TLS port succeeded\n%s", o)
	}
	// renkei's own client over TLS: echo, send a CT, find it.
	tlsArgs := []string{"--tls", "--tls-ca", caPath, "--tls-cert", cliCert, "--tls-key", cliKey, "--aet", "TLSCT", "--aec", "RENKEI"}
	var cout, cerr strings.Builder
	if code := Main(context.Background(), append(append([]string{"dicom", "echo"}, tlsArgs...), tlsAddr), &cout, &cerr); code != 0 {
		t.Errorf("renkei dicom echo --tls: exit %d\n%s%s", code, cout.String(), cerr.String())
	}
	ct := filepath.Join(dir, "tls.dcm")
	if err := dicomtest.CT(ct, dicomtest.CTOptions{PatientID: "TLS1", StudyInstanceUID: dicomtest.UID("tls/study"), Rows: 32, Cols: 32, InstanceNumber: 1, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	if code := Main(context.Background(), append(append([]string{"dicom", "send"}, tlsArgs...), tlsAddr, ct), &cout, &cerr); code != 0 {
		t.Errorf("renkei dicom send --tls: exit %d\n%s%s", code, cout.String(), cerr.String())
	}
	cout.Reset()
	if code := Main(context.Background(), append(append([]string{"dicom", "find"}, tlsArgs...), "-k", "PatientID=TLS1", tlsAddr), &cout, &cerr); code != 0 || !strings.Contains(cout.String(), "TLS1") {
		t.Errorf("renkei dicom find --tls: exit %d\n%s%s", code, cout.String(), cerr.String())
	}
	// C-MOVE to a destination registered --tls: renkei opens the sub-association over TLS, with its own certificate,
	// to a dcmtk storescp that requires one.
	received := filepath.Join(dir, "received")
	os.MkdirAll(received, 0o755)
	scp := exec.Command("storescp", "+tls", scpKey, scpCert, "+cf", caPath, "-aet", "TLSSCP", "-od", received, scpPort)
	scp.Env = append(os.Environ(), "TCP_NODELAY=1")
	var scpOut strings.Builder
	scp.Stdout, scp.Stderr = &scpOut, &scpOut
	if err := scp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { scp.Process.Kill(); scp.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", scpPort)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("storescp +tls did not listen:\n%s", scpOut.String())
		}
	}
	// Debian's movescu has no TLS: renkei's own client asks for the move, over TLS.
	capool := x509.NewCertPool()
	capool.AddCert(ca)
	pairTLSCT, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	d := dimse.Dialer{TLSConfig: &tls.Config{RootCAs: capool, Certificates: []tls.Certificate{pairTLSCT}}}
	a, err := d.Dial(context.Background(), tlsAddr, "TLSCT", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	id := &dicom.DataSet{}
	id.SetString(0x00080052, "CS", "STUDY")
	id.SetString(dicom.StudyInstanceUID, "UI", dicomtest.UID("tls/study"))
	res, err := a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "TLSSCP", id)
	a.Release(context.Background())
	if err != nil || res.SubOperations.Completed != 1 {
		t.Errorf("C-MOVE to a TLS destination: %+v %v\nstorescp:\n%s", res, err, scpOut.String())
	}
	if got, _ := filepath.Glob(filepath.Join(received, "*")); len(got) != 1 {
		t.Errorf("the TLS destination received %d files, want 1\nstorescp:\n%s", len(got), scpOut.String())
	}
	// Without the CA, the peer's certificate is not trusted and nothing is sent.
	cerr.Reset()
	if code := Main(context.Background(), []string{"dicom", "echo", "--tls", "--aet", "TLSCT", "--aec", "RENKEI", tlsAddr}, &cout, &cerr); code == 0 {
		t.Errorf("renkei dicom echo --tls without the CA succeeded")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		c.Close()
		t.Errorf("a TLS 1.1 handshake succeeded; BCP 195 asks for TLS 1.2 or later")
	}
	// Under TLS 1.2, a client offering only a cipher without forward secrecy and AEAD (RSA key exchange, CBC) is refused.
	c, err = tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		c.Close()
		t.Errorf("a TLS 1.2 handshake with only CBC ciphers succeeded")
	}
}
