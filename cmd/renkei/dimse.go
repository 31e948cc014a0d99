package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/dicomsvc"
	"renkei/dimse"
	"renkei/sqlstore"
)

// dimseListeners starts the DIMSE server on the plain address and, when configured, a second one speaking DICOM TLS
// (PS3.15 B.1, BCP 195: TLS 1.2 at least). It returns the servers and the addresses they listen on.
func dimseListeners(ctx context.Context, c *serveConfig, arch *archive.Service, db *sqlstore.DB, logger *slog.Logger) ([]*dimse.Server, []net.Listener, error) {
	svc := &dicomsvc.Service{Archive: arch, AEs: db, AcceptAny: c.DIMSEAcceptAny, Logger: logger, Now: time.Now, Auditor: db, Connections: db}
	if c.DIMSEAcceptAny {
		id := c.DIMSEAnyInstitution
		if id == "" && c.Demo {
			id = "kita-clinic"
		}
		if id == "" {
			return nil, nil, fmt.Errorf("--dimse-accept-any needs --dimse-any-institution: the institution that owns what unregistered AEs store")
		}
		in, err := db.Institution(ctx, id)
		if err != nil {
			return nil, nil, fmt.Errorf("--dimse-any-institution: %s", renkei.ErrorMessage(err))
		}
		svc.AnyInstitution = in.PK
	}
	// Associations renkei opens to destinations registered with --tls: its TLS certificate, and the region's CA.
	var clientTLS *tls.Config
	if c.TLSCert != "" && c.TLSKey != "" {
		conf, err := outgoingTLS(c)
		if err != nil {
			return nil, nil, err
		}
		clientTLS = conf
	}
	newServer := func(tlsConf *tls.Config) *dimse.Server {
		return &dimse.Server{
			ClientTLSConfig: clientTLS,
			AETitle:         c.AE,
			Handlers:        svc.Handlers(),
			MaxAssociations: c.DIMSEMaxAssociations,
			IdleTimeout:     c.DIMSEIdle,
			AcceptAE:        svc.AcceptAE,
			TLSConfig:       tlsConf,
			Logger:          logger.With("transport", "dimse"),
		}
	}
	var servers []*dimse.Server
	var lns []net.Listener
	if c.DIMSE != "" && c.DIMSE != "off" {
		ln, err := net.Listen("tcp", c.DIMSE)
		if err != nil {
			return nil, nil, fmt.Errorf("--dimse %s: %w", c.DIMSE, err)
		}
		servers, lns = append(servers, newServer(nil)), append(lns, ln)
	}
	if c.DIMSETLS != "" {
		conf, err := tlsConfig(c)
		if err != nil {
			closeAll(lns)
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", c.DIMSETLS)
		if err != nil {
			closeAll(lns)
			return nil, nil, fmt.Errorf("--dimse-tls %s: %w", c.DIMSETLS, err)
		}
		servers, lns = append(servers, newServer(conf)), append(lns, ln)
	}
	return servers, lns, nil
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// outgoingTLS is the configuration of associations renkei opens over DICOM TLS (to destinations registered with
// --tls): its --tls-cert as the client certificate (issue it for client authentication too), and the destinations'
// certificates checked against --tls-client-ca (the region's CA) or else the system's CAs.
func outgoingTLS(c *serveConfig) (*tls.Config, error) {
	conf, pool, err := baseTLS(c)
	if err != nil {
		return nil, err
	}
	conf.RootCAs = pool
	return conf, nil
}

// baseTLS loads --tls-cert/--tls-key into a BCP 195 configuration, and --tls-client-ca (the region's CA) when given.
func baseTLS(c *serveConfig) (*tls.Config, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: bcp195Ciphers}
	if c.TLSClientCA == "" {
		return conf, nil, nil
	}
	pem, err := os.ReadFile(c.TLSClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", c.TLSClientCA)
	}
	return conf, pool, nil
}

// bcp195Ciphers are the TLS 1.2 cipher suites of BCP 195 (RFC 9325), as PS3.15 B.9 asks: ECDHE with AEAD only (TLS
// 1.3's suites are all AEAD and not configurable). Both sides of DICOM TLS use them, with TLS 1.2 at least.
var bcp195Ciphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsConfig builds the DICOM TLS configuration: the server's certificate, and, with --tls-client-ca, client
// certificates required and checked (the dicomsvc layer binds them to AE titles).
func tlsConfig(c *serveConfig) (*tls.Config, error) {
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, fmt.Errorf("--dimse-tls needs --tls-cert and --tls-key")
	}
	conf, pool, err := baseTLS(c)
	if err != nil {
		return nil, err
	}
	if pool != nil {
		conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
