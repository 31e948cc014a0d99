package dicomsvc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/dicom"
	"renkei/dicomsvc"
	"renkei/dimse"
)

func TestAcceptAE(t *testing.T) {
	needTools(t, "echoscu")
	e := newEnv(t)
	e.register(renkei.AE{Title: "FARAWAY", Host: "192.0.2.7"})           // registered from another address
	e.register(renkei.AE{Title: "BYNAME", Host: "localhost", Port: 104}) // a host name that resolves to the peer
	e.register(renkei.AE{Title: "ANYWHERE"})                             // no host: any address
	tests := []struct {
		aet    string
		accept bool
	}{
		{"ECHOSCU", true},
		{"BYNAME", true},
		{"ANYWHERE", true},
		{"NOBODY", false},
		{"FARAWAY", false},
	}
	for _, tc := range tests {
		t.Run(tc.aet, func(t *testing.T) {
			out, err := runErr("echoscu", "-aet", tc.aet, "-aec", "RENKEI", e.host, e.port)
			if tc.accept && err != nil {
				t.Errorf("rejected: %v\n%s", err, out)
			}
			if !tc.accept && (err == nil || !strings.Contains(out, "Calling AE Title Not Recognized")) {
				t.Errorf("not rejected as calling AE title not recognized: %v\n%s", err, out)
			}
		})
	}
	// --dimse-accept-any lets anyone in, and C-STORE from an unregistered AE still works.
	e = newEnv(t, func(s *dicomsvc.Service) { s.AcceptAny = true })
	run(t, "echoscu", "-aet", "NOBODY", "-aec", "RENKEI", e.host, e.port)
	files := samples(t)
	run(t, "storescu", "-aet", "NOBODY", "-aec", "RENKEI", e.host, e.port, files[0].Path)
	if _, got := e.stored(files[0].SOPInstanceUID); got.file.Meta.String(dicom.SourceApplicationEntityTitle) != "NOBODY" {
		t.Error("not stored from NOBODY")
	}
}

// DICOM TLS (PS3.15 B.1) with client certificates: the certificate must name the calling AE title.
func TestAcceptAETLS(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "renkei test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	e := newEnv(t)
	e.svc.Connections = e.db // set before any association is made
	e.register(renkei.AE{Title: "TLSSCU", Host: "127.0.0.1"})
	run(t, "echoscu", "-aet", "ECHOSCU", "-aec", "RENKEI", e.host, e.port) // the same archive, unencrypted
	srv := &dimse.Server{AETitle: "RENKEI", Handlers: e.svc.Handlers(), AcceptAE: e.svc.AcceptAE, Logger: testLogger(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf(2, "RENKEI", x509.ExtKeyUsageServerAuth)}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	d := dimse.Dialer{TLSConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{leaf(3, "TLSSCU", x509.ExtKeyUsageClientAuth)},
		MinVersion: tls.VersionTLS12}, Logger: testLogger()}
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}}
	a, err := d.Dial(context.Background(), ln.Addr().String(), "TLSSCU", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatal(st, err)
	}
	a.Release(context.Background())
	// The security page learns who came encrypted and who did not.
	conns, err := e.db.AEConnections(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := conns["TLSSCU"]; !c.TLS || !strings.HasPrefix(c.Address, "127.0.0.1:") {
		t.Errorf("TLSSCU's association is recorded as %+v", c)
	}
	if c, ok := conns["ECHOSCU"]; !ok || c.TLS {
		t.Errorf("ECHOSCU's plain association is recorded as %+v", c)
	}
	// GOSCU is registered from this address, but the certificate is TLSSCU's.
	_, err = d.Dial(context.Background(), ln.Addr().String(), "GOSCU", "RENKEI", pcs)
	var rj *dimse.RejectError
	if !errors.As(err, &rj) || rj.Reject.Reason != 3 {
		t.Errorf("GOSCU with TLSSCU's certificate: %v", err)
	}
}
