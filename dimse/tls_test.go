package dimse_test

import (
	"bytes"
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
	"path/filepath"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate whose common name is an AE title.
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
	dir            string // PEM files: ca.pem, server.pem, server.key, client.pem, client.key
}

func newPKI(t testing.TB, clientAE string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	writePEM := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "renkei test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		writePEM(name+".pem", "CERTIFICATE", der)
		writePEM(name+".key", "PRIVATE KEY", kder)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p := &testPKI{pool: x509.NewCertPool(), dir: dir}
	p.pool.AddCert(ca)
	p.server = leaf("server", 2, "RENKEI", x509.ExtKeyUsageServerAuth)
	p.client = leaf("client", 3, clientAE, x509.ExtKeyUsageClientAuth)
	return p
}

// DICOM TLS (PS3.15 B.1): TLS 1.2 at least, client certificates bound to the calling AE title by AcceptAE.
func TestTLS(t *testing.T) {
	pki := newPKI(t, "TLSSCU")
	store := newMemStore()
	srv := &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Store: store},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		AcceptAE: func(p dimse.Peer) (bool, dimse.Reject) {
			if p.TLS == nil || len(p.TLS.PeerCertificates) == 0 || p.TLS.PeerCertificates[0].Subject.CommonName != p.CallingAETitle {
				return false, dimse.RejectCallingAETitle
			}
			return true, 0
		}}
	addr := serve(t, srv)
	d := dimse.Dialer{TLSConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12},
		Logger: testLogger()}
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE()}}
	a, err := d.Dial(context.Background(), addr, "TLSSCU", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	if a.Peer().TLS == nil || a.Peer().TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", a.Peer().TLS)
	}
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatal(st, err)
	}
	body := bytes.Repeat([]byte("renkei"), 200000)
	if st, err := a.Store(context.Background(), ctStorage, "1.2.3", dicom.ExplicitVRLittleEndian, bytes.NewReader(body)); err != nil || !st.IsSuccess() {
		t.Fatal(st, err)
	}
	if !bytes.Equal(store.get("1.2.3"), body) {
		t.Error("stored bytes differ")
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The certificate names TLSSCU: another calling AE title is refused.
	_, err = d.Dial(context.Background(), addr, "OTHER", "RENKEI", pcs)
	var rj *dimse.RejectError
	if err == nil || !isReject(err, &rj) || rj.Reject.Reason != 3 {
		t.Errorf("other AE title with TLSSCU's certificate: %v", err)
	}
	// dcmtk's echoscu over TLS, with the same client certificate.
	if _, err := runErr("echoscu", "--version"); err == nil {
		h, p := hostPort(t, addr)
		run(t, "echoscu", "-aet", "TLSSCU", "-aec", "RENKEI", "+tls", filepath.Join(pki.dir, "client.key"),
			filepath.Join(pki.dir, "client.pem"), "+cf", filepath.Join(pki.dir, "ca.pem"), h, p)
	}
}

func isReject(err error, rj **dimse.RejectError) bool {
	r, ok := err.(*dimse.RejectError)
	*rj = r
	return ok
}
