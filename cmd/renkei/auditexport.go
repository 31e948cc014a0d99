package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"renkei"
	"renkei/atna"
	"renkei/security"
	"renkei/sqlstore"
	"renkei/web"
)

// syslogExporter builds the audit export from --syslog tls://HOST:PORT, --syslog-ca and the optional client
// certificate; nil when --syslog is not set. It does no I/O beyond reading the certificate files.
func syslogExporter(ctx context.Context, c *serveConfig, db *sqlstore.DB, logger *slog.Logger) (*atna.Exporter, error) {
	if c.Syslog == "" {
		if c.SyslogCA != "" || c.SyslogCert != "" {
			return nil, fmt.Errorf("--syslog-ca and --syslog-cert need --syslog tls://HOST:PORT")
		}
		return nil, nil
	}
	u, err := url.Parse(c.Syslog)
	if err != nil || u.Scheme != "tls" || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("--syslog %q must be tls://HOST:PORT (syslog over TLS, RFC 5425; the usual port is 6514)", c.Syslog)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "6514")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.SyslogCA != "" {
		pem, err := os.ReadFile(c.SyslogCA)
		if err != nil {
			return nil, fmt.Errorf("--syslog-ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--syslog-ca %s holds no PEM certificate", c.SyslogCA)
		}
	}
	if (c.SyslogCert == "") != (c.SyslogKey == "") {
		return nil, fmt.Errorf("--syslog-cert and --syslog-key go together (a client certificate for the collector)")
	}
	if c.SyslogCert != "" {
		cert, err := tls.LoadX509KeyPair(c.SyslogCert, c.SyslogKey)
		if err != nil {
			return nil, fmt.Errorf("--syslog-cert/--syslog-key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	host, _ := os.Hostname()
	src := atna.Source{ID: c.AuditSourceID, Host: host, AE: c.AE}
	if src.ID == "" {
		src.ID = host
	}
	src.Site = regionSite(ctx, db)
	return &atna.Exporter{Store: db, Addr: addr, TLS: conf, Header: atna.Header{Hostname: host, ProcID: strconv.Itoa(os.Getpid())},
		Source: src, Logger: logger.With("part", "audit-export")}, nil
}

// regionSite is the AuditEnterpriseSiteID: the ID of the region's operator institution, if there is one.
func regionSite(ctx context.Context, db *sqlstore.DB) string {
	insts, err := db.Institutions(ctx)
	if err != nil {
		return ""
	}
	for _, in := range insts {
		if in.Kind == renkei.RegionOperator {
			return in.ID
		}
	}
	return ""
}

// runExporter runs the audit export until ctx ends; the returned function waits for its clean stop (the last
// cursor saved), and must run before the index closes.
func runExporter(ctx context.Context, x *atna.Exporter, logger *slog.Logger) (wait func()) {
	if x == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := x.Run(ctx); err != nil {
			logger.Error("audit export stopped", "err", err)
		}
	}()
	return func() { <-done }
}

// securityPage gives the web front what the region's security status page needs: the flags that shape security,
// the audit export's state, and a way to verify the audit chain now.
func securityPage(ctx context.Context, c *serveConfig, db *sqlstore.DB, front *web.Server, httpAddr string, x *atna.Exporter) *web.SecurityPage {
	conf := security.Config{PublicURL: front.PublicURL, HTTP: httpAddr, TrustedProxies: len(front.TrustedProxies), DIMSETLS: c.DIMSETLS,
		DIMSEClientCA: c.TLSClientCA != "", BackupMarker: c.BackupMarker,
		Policy: security.Policy{DormantAfter: time.Duration(c.DormantDays) * 24 * time.Hour, TokenMaxAge: time.Duration(c.TokenMaxDays) * 24 * time.Hour}}
	if c.DIMSE != "off" {
		conf.DIMSE = c.DIMSE
	}
	page := &web.SecurityPage{Store: db, Config: conf}
	if x != nil {
		page.Config.Export = x.Status
		page.Source = x.Source
	} else {
		host, _ := os.Hostname()
		page.Source = atna.Source{ID: c.AuditSourceID, Host: host, AE: c.AE, Site: regionSite(ctx, db)}
		if page.Source.ID == "" {
			page.Source.ID = host
		}
	}
	if db.AuditKey != nil {
		keys := map[string]ed25519.PublicKey{db.AuditKey.ID: db.AuditKey.Private.Public().(ed25519.PublicKey)}
		page.Verify = func(ctx context.Context, by string) (renkei.AuditVerification, error) {
			if _, err := db.VerifyAndRecordAudit(ctx, keys, by); err != nil {
				return renkei.AuditVerification{}, err
			}
			return db.LastAuditVerification(ctx)
		}
	}
	return page
}
