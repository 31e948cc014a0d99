package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"renkei"
	"renkei/access"
	"renkei/archive"
	"renkei/clinical"
	"renkei/dicomweb"
	"renkei/directory"
	"renkei/identity"
	"renkei/metrics"
	"renkei/monitor"
	"renkei/notify"
	"renkei/web"
)

// serveConfig is everything `renkei serve` can be told. Later transports (--dimse) and backends (--db, --blobs) add
// fields here and flags in serveFlags.
type serveConfig struct {
	Data            string
	DB              string
	Blobs           string
	HTTP            string
	CORSOrigins     string
	TrashDays       int
	Issuer          string
	FallbackCharset string
	Demo            bool
	LogFormat       string
	LogLevel        string

	DIMSE                string
	AE                   string
	DIMSETLS             string
	TLSCert, TLSKey      string
	TLSClientCA          string
	DIMSEAcceptAny       bool
	DIMSEAnyInstitution  string
	PublicURL            string
	TrustedProxies       string
	MetricsAllow         string
	BreakGlass           time.Duration
	IdleTimeout          time.Duration
	SessionMax           time.Duration
	DIMSEMaxAssociations int
	DIMSEIdle            time.Duration
	SMTP                 string
	SMTPFrom             string
	SMTPUser             string
	CapacityStale        time.Duration
	GatewaySilent        time.Duration
	GatewayBacklog       time.Duration
	MapTiles             string
	TURN                 string
	TURNUser             string
	MonitorRules         string
	MonitorPoll          time.Duration
	Syslog               string
	SyslogCA             string
	SyslogCert           string
	SyslogKey            string
	AuditSourceID        string
	BackupMarker         string
	DormantDays          int
	TokenMaxDays         int
}

func serveFlags(c *serveConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("renkei serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Data, "data", "./renkei-data", "data folder: the SQLite index (index.db) and the blob store (blobs/) live here")
	fs.StringVar(&c.DB, "db", "", indexUsage)
	fs.StringVar(&c.Blobs, "blobs", "", blobsUsage)
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "address for HTTP: DICOMweb under /dicomweb")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "comma-separated origins allowed to call DICOMweb from a browser (e.g. https://viewer.example.jp), or * for any")
	fs.IntVar(&c.TrashDays, "trash-days", 30, "days a deleted study, series or instance stays restorable before it is purged")
	fs.StringVar(&c.Issuer, "issuer", "", "IssuerOfPatientID given to objects that carry none (patients are keyed by issuer and PatientID)")
	fs.StringVar(&c.FallbackCharset, "fallback-charset", "", "character set assumed when an object declares none or its declared one fails, e.g. CP932 for undeclared Shift_JIS")
	fs.StringVar(&c.DIMSE, "dimse", "127.0.0.1:11112", "address for DICOM (DIMSE: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, storage commitment); \"off\" disables it")
	fs.StringVar(&c.AE, "ae", "RENKEI", "renkei's own AE title: peers must call it by this name")
	fs.StringVar(&c.DIMSETLS, "dimse-tls", "", "address for DICOM over TLS (PS3.15 B.1; port 2762 by convention), with --tls-cert and --tls-key")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) for DICOM TLS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for DICOM TLS")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA certificates: DICOM TLS peers must present a client certificate they signed")
	fs.BoolVar(&c.DIMSEAcceptAny, "dimse-accept-any", false, "accept associations from AE titles that are not registered (renkei admin ae add); for demos only")
	fs.StringVar(&c.DIMSEAnyInstitution, "dimse-any-institution", "", "with --dimse-accept-any: the institution unregistered AEs act for (default with --demo: kita-clinic)")
	fs.DurationVar(&c.CapacityStale, "capacity-stale", 12*time.Hour, "how old an institution's capacity report (beds, emergencies, on call) may be before the directory shows it as stale")
	fs.DurationVar(&c.GatewaySilent, "gateway-silent", web.DefaultGatewaySilent, "a hospital gateway not heard from for this long needs attention (admin page, log, e-mail)")
	fs.DurationVar(&c.GatewayBacklog, "gateway-backlog", web.DefaultGatewayBacklog, "a hospital gateway whose oldest waiting image is this old needs attention")
	fs.StringVar(&c.TURN, "turn", "", "comma-separated STUN/TURN URLs for the voice of live consults (e.g. turn:turn.example.jp:3478); the TURN password comes from RENKEI_TURN_PASSWORD")
	fs.StringVar(&c.TURNUser, "turn-user", "", "user name at the TURN server")
	fs.StringVar(&c.MonitorRules, "monitor-rules", "", "JSON file of the region's thresholds for the security monitoring rules (bulk access, login failures, …); what it leaves out keeps the defaults (see README)")
	fs.DurationVar(&c.MonitorPoll, "monitor-poll", time.Second, "how often the security monitor reads new audit events")
	fs.StringVar(&c.Syslog, "syslog", "", "send the audit trail to a SIEM or syslog server as IHE ATNA audit messages over TLS: tls://HOST:PORT (usually 6514); nothing is lost while it is down")
	fs.StringVar(&c.SyslogCA, "syslog-ca", "", "PEM CA certificates that signed the syslog server's certificate (default: the system's)")
	fs.StringVar(&c.SyslogCert, "syslog-cert", "", "PEM client certificate for the syslog server, if it asks for one (with --syslog-key)")
	fs.StringVar(&c.SyslogKey, "syslog-key", "", "PEM private key of --syslog-cert")
	fs.StringVar(&c.AuditSourceID, "audit-source-id", "", "how exported audit messages name this server (AuditSourceID; default: the host name)")
	fs.StringVar(&c.BackupMarker, "backup-marker", "", "a file your backup job touches after each successful backup: the security page shows how fresh the backup is (without it: unknown)")
	fs.IntVar(&c.DormantDays, "dormant-days", 90, "the security page lists staff accounts without a login for this many days")
	fs.IntVar(&c.TokenMaxDays, "token-max-days", 365, "the security page lists API tokens older than this many days")
	fs.StringVar(&c.MapTiles, "map-tiles", "", "tile URL template for the directory's map, e.g. https://tiles.example.jp/{z}/{x}/{y}.png (none: a list only)")
	fs.StringVar(&c.SMTP, "smtp", "", "mail server (host:port) for telling institutions that a referral waits for them; the password, if any, comes from RENKEI_SMTP_PASSWORD")
	fs.StringVar(&c.SMTPFrom, "smtp-from", "renkei <renkei@localhost>", "sender address of renkei's e-mails")
	fs.StringVar(&c.SMTPUser, "smtp-user", "", "user name at the mail server (PLAIN authentication, over TLS only)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the URL users open renkei at, e.g. https://renkei.example.jp (security keys are bound to its host name; default http://localhost:PORT of --http)")
	fs.StringVar(&c.MetricsAllow, "metrics-allow", "", "comma-separated CIDRs of Prometheus servers allowed to read /metrics (the loopback always may; nobody else sees it)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client (for login limits and the audit trail)")
	fs.DurationVar(&c.BreakGlass, "break-glass-period", 4*time.Hour, "how long an emergency access (break-glass) to a patient lasts")
	fs.DurationVar(&c.IdleTimeout, "session-idle", 30*time.Minute, "a login session unused this long ends")
	fs.DurationVar(&c.SessionMax, "session-max", 12*time.Hour, "a login session ends this long after login, used or not")
	fs.IntVar(&c.DIMSEMaxAssociations, "dimse-max-associations", 100, "associations served at once; more are rejected as temporary congestion")
	fs.DurationVar(&c.DIMSEIdle, "dimse-idle", 5*time.Minute, "an association on which nothing happens for this long is aborted")
	fs.BoolVar(&c.Demo, "demo", false, "create a demo region (institutions, users of every role, studies with Japanese names, a share) and print its logins")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: renkei serve [flags]

Runs the platform with everything in one data folder (SQLite index + file blob store).
--blobs s3://BUCKET?endpoint=HOST:PORT moves the blobs to an S3-compatible object store; its credentials are read
only from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN) or an AWS credentials file (AWS_PROFILE).
Every flag can also be set by an environment variable: --http is RENKEI_HTTP, --trash-days is RENKEI_TRASH_DAYS.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c serveConfig
	fs := serveFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q (see renkei serve --help)", fs.Args())
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	logger, err := newLogger(stderr, c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	if c.TrashDays < 0 {
		return errors.New("--trash-days must not be negative")
	}
	if err := os.MkdirAll(c.Data, 0o750); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	db, err := openIndex(ctx, c.DB, c.Data)
	if err != nil {
		return err
	}
	defer db.Close()
	bus, err := openBus(ctx, c.DB, logger)
	if err != nil {
		return err
	}
	if bus != nil {
		defer bus.Close()
	}
	if db.AuditKey, err = auditKey(filepath.Join(c.Data, auditKeyFile)); err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	blobs, err := openBlobs(ctx, c.Blobs, c.Data, logger)
	if err != nil {
		return err
	}
	// Every transport reads and writes the archive through the access decorator: one place decides who sees what,
	// and records it in the audit chain.
	arch := archive.New(access.New(db, db, db), blobs, logger)
	arch.DefaultIssuer = c.Issuer
	arch.FallbackCharset = c.FallbackCharset
	arch.TrashPeriod = time.Duration(c.TrashDays) * 24 * time.Hour

	ids := identity.New(db)
	ids.Demo, ids.IdleTimeout, ids.AbsoluteTimeout = c.Demo, c.IdleTimeout, c.SessionMax
	if err := enableWebAuthn(ids, c.PublicURL, c.HTTP, logger); err != nil {
		return err
	}
	if c.Demo {
		if err := seedDemo(ctx, db, ids, arch, c.Data, stdout); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}

	dw := dicomweb.New(arch, logger, "/dicomweb")
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			dw.AllowedOrigins = append(dw.AllowedOrigins, o)
		}
	}
	front := web.New(ids, db, dw, logger)
	front.Version, front.Blobs, front.BreakGlassPeriod = version, blobs, c.BreakGlass
	front.UploadDir = filepath.Join(c.Data, "uploads")
	front.UseClinical(clinical.New(db))
	front.Directory = directory.New(db)
	front.UseConsults(db)
	if bus != nil { // several nodes: live events and consults reach the users of the other nodes too
		front.Hub = web.NewRelayedEvents(bus, logger)
		front.Rooms.Connect(bus, logger)
	}
	ice, err := iceServers(c.TURN, c.TURNUser, os.Getenv("RENKEI_TURN_PASSWORD"))
	if err != nil {
		return err
	}
	front.ICEServers = ice
	front.Directory.StaleAfter = c.CapacityStale
	front.MapTiles = c.MapTiles
	front.Gateways, front.GatewaySilent, front.GatewayBacklog = db, c.GatewaySilent, c.GatewayBacklog
	rules, err := monitor.LoadConfig(c.MonitorRules)
	if err != nil {
		return fmt.Errorf("--monitor-rules: %w", err)
	}
	front.Alerts = db
	exporter, err := syslogExporter(ctx, &c, db, logger)
	if err != nil {
		return err
	}
	if c.SMTP != "" {
		front.Mailer = &notify.Mailer{Addr: c.SMTP, From: c.SMTPFrom, User: c.SMTPUser, Password: os.Getenv("RENKEI_SMTP_PASSWORD"), Logger: logger, Retries: 5}
		if err := front.Mailer.Check(); err != nil {
			return fmt.Errorf("--smtp: %w", err)
		}
	}
	os.RemoveAll(front.UploadDir) // unfinished uploads are remembered in memory only: after a restart they start again
	if front.TrustedProxies, err = prefixes("--trusted-proxies", c.TrustedProxies); err != nil {
		return err
	}
	if front.MetricsAllow, err = prefixes("--metrics-allow", c.MetricsAllow); err != nil {
		return err
	}
	// Operations: Prometheus metrics and a readiness check for the load balancer.
	mx := metrics.New()
	arch.Observe = mx.Stored
	mx.Gauge("renkei_index_queue_depth", "Instances and audit events waiting for the index's committer.", func() float64 { return float64(db.QueueDepth()) })
	if strings.HasPrefix(c.DB, "postgres") {
		mx.Counter("renkei_index_round_trips_total", "Statements (and transactions' BEGIN and COMMIT) sent to PostgreSQL.", func() float64 { return float64(db.RoundTrips()) })
	}
	front.Metrics = mx.Handler()
	front.Ready = func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return fmt.Errorf("the index does not answer: %w", err)
		}
		if rb, ok := blobs.(interface{ Ready(context.Context) error }); ok {
			if err := rb.Ready(ctx); err != nil {
				return fmt.Errorf("the blob store does not answer: %w", err)
			}
		}
		return nil
	}

	ln, err := net.Listen("tcp", c.HTTP)
	if err != nil {
		return fmt.Errorf("--http %s: %w", c.HTTP, err)
	}
	front.PublicURL = appURL(c.PublicURL, ln.Addr())
	front.Security = securityPage(ctx, &c, db, front, ln.Addr().String(), exporter)

	dimseServers, dimseLns, err := dimseListeners(ctx, &c, arch, db, logger)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           logRequests(logger, front, func(r *http.Request, status int, took time.Duration) { mx.Request(r, front.Route(r), status, took) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(front.Hub.Close) // live-update streams end, so that shutdown does not wait for them
	purgeCtx, stopPurge := context.WithCancel(ctx)
	defer stopPurge()
	// The trash's purge and the sweep of orphaned blobs (which lists the whole store) run on one node of a region.
	runOnOneNode(purgeCtx, bus, "purge", func(ctx context.Context) { arch.RunPurger(renkei.WithPrincipal(ctx, renkei.System), time.Hour) })
	runOnOneNode(purgeCtx, bus, "gateway-watch", func(ctx context.Context) { front.WatchGateways(ctx, time.Minute) })
	exportCtx, stopExport := context.WithCancel(ctx)
	if exporter != nil { // the export runs on one node; waits for its clean stop, before the index closes
		defer runOnOneNode(exportCtx, bus, "audit-export", func(ctx context.Context) { runExporter(ctx, exporter, logger)() })()
	}
	defer stopExport()
	mon := monitor.New(db)
	mon.Config, mon.Logger, mon.Poll, mon.PublicURL = rules, logger, c.MonitorPoll, front.PublicURL
	if front.Mailer != nil {
		mon.Mailer = front.Mailer
	}
	// One node follows the trail (its cursor is in the index): alerts and the daily summary are raised once.
	runOnOneNode(purgeCtx, bus, "monitor", func(ctx context.Context) {
		if err := mon.Run(ctx); err != nil {
			logger.Error("security monitoring stopped", "err", err)
		}
	})
	go func() {
		// A quiet chain is signed too, so that removing its newest events is detected.
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-purgeCtx.Done():
				return
			case <-t.C:
				if err := db.CheckpointAudit(purgeCtx); err != nil && purgeCtx.Err() == nil {
					logger.Error("audit checkpoint", "err", err)
				}
			}
		}
	}()

	dicomAt := ""
	for i, dl := range dimseLns {
		scheme := "dicom"
		if dimseServers[i].TLSConfig != nil {
			scheme = "dicom+tls"
		}
		dicomAt += fmt.Sprintf(", %s %s@%s", scheme, c.AE, dl.Addr())
	}
	logger.Info("renkei serving", "version", version, "http", ln.Addr().String(), "dicom", dicomAt, "data", c.Data)
	fmt.Fprintf(stdout, "renkei is running: web app %s/ , DICOMweb at http://%s/dicomweb%s (data in %s)\n", appURL(c.PublicURL, ln.Addr()), ln.Addr(), dicomAt, c.Data)
	errc := make(chan error, 1+len(dimseServers))
	go func() { errc <- srv.Serve(ln) }()
	for i, ds := range dimseServers {
		go func() { errc <- ds.Serve(dimseLns[i]) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	for _, ds := range dimseServers {
		if err := ds.Shutdown(shutCtx); err != nil {
			logger.Warn("DIMSE shutdown", "err", err)
		}
	}
	return nil
}

// appURL is where people open the web app: --public-url, else localhost on the HTTP port (a host name, which security
// keys need).
func appURL(public string, addr net.Addr) string {
	if public != "" {
		return strings.TrimSuffix(public, "/")
	}
	if ta, ok := addr.(*net.TCPAddr); ok && (ta.IP.IsLoopback() || ta.IP.IsUnspecified()) {
		return fmt.Sprintf("http://localhost:%d", ta.Port)
	}
	return "http://" + addr.String()
}

// enableWebAuthn binds security keys to the host name users reach renkei by. WebAuthn refuses IP addresses, so a
// server known only by its address offers TOTP alone (and says so).
func enableWebAuthn(ids *identity.Service, public, httpAddr string, logger *slog.Logger) error {
	if public == "" {
		_, port, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return fmt.Errorf("--http %s: %w", httpAddr, err)
		}
		public = "http://localhost:" + port
	}
	u, err := url.Parse(public)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("--public-url %q must be an http(s) URL such as https://renkei.example.jp", public)
	}
	if net.ParseIP(u.Hostname()) != nil {
		logger.Warn("security keys (WebAuthn) are off: they need a host name in --public-url, not an IP address", "public_url", public)
		return nil
	}
	if err := ids.EnableWebAuthn(u.Hostname(), "renkei", []string{u.Scheme + "://" + u.Host}); err != nil {
		return fmt.Errorf("--public-url: %s", renkei.ErrorMessage(err))
	}
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ReadFrom keeps the response's own ReadFrom reachable, which sends files with sendfile.
func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(s.ResponseWriter, r)
	}
	s.n += n
	return n, err
}

func logRequests(logger *slog.Logger, next http.Handler, observe func(r *http.Request, status int, took time.Duration)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		observe(r, sw.status, time.Since(start))
		logger.Debug("http", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.n, "ms", time.Since(start).Milliseconds())
	})
}

// prefixes reads a comma-separated list of addresses and CIDRs (an address alone is one host).
func prefixes(flagName, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			p += map[bool]string{true: "/32", false: "/128"}[strings.Contains(p, ".")]
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an address or CIDR", flagName, p)
		}
		out = append(out, prefix)
	}
	return out, nil
}

// iceServers is the WebRTC configuration the consult pages use for voice: the given STUN/TURN URLs, with the TURN
// credentials. None: browsers connect directly (enough on one network).
func iceServers(urls, user, password string) (json.RawMessage, error) {
	var list []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			return nil, fmt.Errorf("--turn: %q must start with stun:, turn: or turns:", u)
		}
		list = append(list, u)
	}
	if len(list) == 0 {
		return json.RawMessage("[]"), nil
	}
	server := map[string]any{"urls": list}
	if user != "" {
		server["username"], server["credential"] = user, password
	}
	return json.Marshal([]any{server})
}
