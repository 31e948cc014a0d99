package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"renkei/gateway"
)

const gatewayUsage = `Usage: renkei gateway --server URL --token-file F [flags]
       renkei gateway status [--spool DIR] [--json]
       renkei gateway parked [--spool DIR] [--study UID] [--json]
       renkei gateway retry [--spool DIR] (--study UID | --all)
       renkei gateway discard [--spool DIR] --study UID

Runs the hospital gateway: a DICOM Storage SCP for the local modalities and PACS, a spool on this computer's disk,
and an uploader that sends everything to renkei over HTTPS (STOW-RS), compressed, retrying until renkei has it.
A modality is told an image is stored only once it is on the spool's disk; an image leaves the spool only once
renkei acknowledged it. All connections go out from the hospital: nothing needs to reach in.

Storage commitment: a modality that asks (N-ACTION) is told an image is committed only once renkei has it. The
answer comes on the modality's association when renkei acknowledges within --commit-wait; otherwise it is kept on
disk and sent later on a new association to the address given with --modality.

The other direction: with --deliver-to, what other institutions share with the hospital (referral images, reading
reports and reply letters filed as DICOM) is fetched over HTTPS and C-STOREd to the hospital's PACS, with the
patient's ID set to the hospital's own (renkei's patient link) and the sender's kept in OtherPatientIDsSequence.
With --fetch-from, renkei's requests for a patient's earlier studies (made in the web app) are answered from the
hospital's PACS: C-FIND, then C-MOVE to this gateway, which sends the images to renkei; each request is audited in
renkei and in the spool's audit.log.

The token is a read-write API token of this hospital's institution, made by renkei's admin:
  renkei admin token add gateway-1 --institution ID --write
Keep it in a file only the gateway's user can read (--token-file).

"renkei gateway status" reads the spool and says what waits, since when, and what failed, in plain words; the running
gateway shows the same on its local status page (--status).

Parked images: an image renkei refuses for a reason that sending it again cannot mend (renkei already holds another
image under its UID, its data are wrong or unreadable, or renkei refused it 5 times) is parked: it stays in the spool,
is no longer sent, and no longer counts as waiting (renkei's backlog alert). "renkei gateway parked" lists them by
study with renkei's reason; once renkei's admin fixed the cause, "renkei gateway retry" sends them again; "renkei
gateway discard --study UID" deletes one study's parked images from the spool. Both work while the gateway runs, and
are written to the spool's audit.log. A busy or unreachable renkei (5xx, 0xA7xx, no answer) never parks anything.

Every flag can also be set by an environment variable: --server is RENKEI_SERVER, --token-file is RENKEI_TOKEN_FILE.

Flags:
`

type gatewayConfig struct {
	Server, TokenFile, CAFile, DIMSE, AE, Spool, Status, Encoding, Name, Modalities, DeliverTo, FetchFrom string
	ReserveMB, Parallel                                                                                   int
	Heartbeat, CommitWait, InboxPoll                                                                      time.Duration
	LogFormat, LogLevel                                                                                   string
}

func gatewayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "status":
			return gatewayStatus(args[1:], stdout, stderr)
		case "parked":
			return gatewayParked(args[1:], stdout, stderr)
		case "retry", "discard":
			return gatewayAct(args[0], args[1:], stdout, stderr)
		}
	}
	var c gatewayConfig
	fs := flag.NewFlagSet("renkei gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), gatewayUsage); fs.PrintDefaults() }
	fs.StringVar(&c.Server, "server", "", "renkei's URL, e.g. https://renkei.example.jp")
	fs.StringVar(&c.TokenFile, "token-file", "", "a file holding the gateway's read-write API token")
	fs.StringVar(&c.CAFile, "ca-file", "", "PEM CA certificates that renkei's HTTPS certificate is checked against (default: the system's)")
	fs.StringVar(&c.DIMSE, "dimse", ":11112", "address the local modalities and PACS send DICOM to")
	fs.StringVar(&c.AE, "ae", "RENKEI_GW", "the gateway's AE title: the modalities call it by this name")
	fs.StringVar(&c.Spool, "spool", "./renkei-gateway-spool", "folder for images waiting to be sent (on a local disk, not a network share)")
	fs.IntVar(&c.ReserveMB, "reserve-mb", 2048, "free disk space (MiB) the spool keeps: below it modalities are told to try later (C-STORE 0xA700)")
	fs.StringVar(&c.Status, "status", "127.0.0.1:8081", "address of the local status page (\"off\": none)")
	fs.StringVar(&c.Encoding, "encoding", "zstd", "compression of uploads: zstd, gzip or none (renkei stores the modality's bytes either way)")
	fs.IntVar(&c.Parallel, "parallel", 4, "uploads in flight at once")
	fs.DurationVar(&c.Heartbeat, "heartbeat", time.Minute, "how often the gateway reports its queue to renkei (renkei's admin page shows it)")
	fs.StringVar(&c.Modalities, "modality", "", "where modalities receive storage commitment results sent later: AE=host:port, comma-separated (e.g. CT_ROOM1=192.168.10.21:104)")
	fs.DurationVar(&c.CommitWait, "commit-wait", 10*time.Second, "how long a storage commitment answer waits on the modality's association for renkei to have the images; after that it is sent later to --modality")
	fs.StringVar(&c.DeliverTo, "deliver-to", "", "the hospital's PACS: what other institutions share with the hospital is C-STOREd there, under the hospital's patient ID: AE=host:port, comma-separated (none: nothing is fetched)")
	fs.StringVar(&c.FetchFrom, "fetch-from", "", "the hospital's PACS that renkei's requests for a patient's earlier studies are answered from (C-FIND, then C-MOVE to this gateway's AE, which the PACS must know): AE=host:port (none: such requests wait)")
	fs.DurationVar(&c.InboxPoll, "inbox-poll", time.Minute, "how often renkei is asked for newly shared images (--deliver-to) and for fetch requests (--fetch-from)")
	fs.StringVar(&c.Name, "name", "", "the gateway's name on renkei's admin page (default: this computer's name)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gateway takes no arguments, got %q (see renkei gateway --help)", fs.Args())
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	logger, err := newLogger(stderr, c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	if c.Server == "" {
		return errors.New("--server is needed: renkei's URL")
	}
	if err := serverURLSafe(c.Server); err != nil {
		return err
	}
	if c.TokenFile == "" {
		return errors.New("--token-file is needed: a file holding a read-write API token of this hospital (renkei admin token add NAME --institution ID --write)")
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return fmt.Errorf("--token-file %s is empty", c.TokenFile)
	}
	modalities, err := gateway.ParseModalities(c.Modalities)
	if err != nil {
		return fmt.Errorf("--modality: %w", err)
	}
	destinations, err := gateway.ParseModalities(c.DeliverTo)
	if err != nil {
		return fmt.Errorf("--deliver-to: %w", err)
	}
	fetch, err := gateway.ParseModalities(c.FetchFrom)
	if err != nil || len(fetch) > 1 {
		return fmt.Errorf("--fetch-from: name one PACS as AE=host:port")
	}
	var fetchAE, fetchAddr string
	for ae, addr := range fetch {
		fetchAE, fetchAddr = ae, addr
	}
	client := &http.Client{Timeout: 10 * time.Minute}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file %s holds no PEM certificate", c.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.Transport = tr
	}
	err = gateway.Run(ctx, gateway.Config{Server: c.Server, Token: token, Client: client, DIMSE: c.DIMSE, AE: c.AE, Spool: c.Spool,
		Reserve: int64(c.ReserveMB) << 20, Status: c.Status, Encoding: c.Encoding, Parallel: c.Parallel, Heartbeat: c.Heartbeat,
		Name: c.Name, Version: version, Logger: logger, Modalities: modalities, CommitWait: c.CommitWait,
		Destinations: destinations, InboxPoll: c.InboxPoll, FetchFromAE: fetchAE, FetchFromAddr: fetchAddr})
	if errors.Is(err, gateway.ErrTokenRefused) || errors.Is(err, gateway.ErrTokenReadOnly) {
		return fmt.Errorf("the gateway stopped: %w. Images already received stay in %s and are sent once it runs with a valid token", err, c.Spool)
	}
	return err
}

func gatewayStatus(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renkei gateway status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spool := fs.String("spool", "./renkei-gateway-spool", "the gateway's spool folder")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	st, err := gateway.ReadStatus(*spool)
	if err != nil {
		return err
	}
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	gateway.WriteText(stdout, st, time.Now())
	return nil
}

// gatewayParked lists the parked images of a spool: `renkei gateway parked`. It only reads, as status does.
func gatewayParked(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renkei gateway parked", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spool := fs.String("spool", "./renkei-gateway-spool", "the gateway's spool folder")
	study := fs.String("study", "", "only this study (Study Instance UID)")
	asJSON := fs.Bool("json", false, "print the parked images as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	if _, err := os.Stat(*spool + "/objects"); err != nil {
		return fmt.Errorf("%s is not a gateway spool: %w", *spool, err)
	}
	parked, err := (&gateway.Spool{Dir: *spool}).Parked(*study)
	if err != nil {
		return err
	}
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(gateway.ActionResult{Entries: parked})
	}
	gateway.ParkedText(stdout, parked, time.Now())
	return nil
}

// gatewayAct queues a study's parked images again (retry) or deletes them (discard), through the running gateway
// when there is one (gateway.Act).
func gatewayAct(action string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renkei gateway "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	spool := fs.String("spool", "./renkei-gateway-spool", "the gateway's spool folder")
	study := fs.String("study", "", "the study whose parked images to "+map[string]string{"retry": "send again", "discard": "delete"}[action]+" (Study Instance UID)")
	var all *bool
	if action == "retry" {
		all = fs.Bool("all", false, "send every parked image again")
	}
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for a running gateway to carry the request out")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("renkei gateway %s takes no arguments, got %q", action, fs.Args())
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	a := gateway.Action{Action: action, Study: *study, All: all != nil && *all, By: osUser()}
	logger, err := newLogger(stderr, "text", "info")
	if err != nil {
		return err
	}
	res, err := gateway.Act(*spool, a, *wait, logger)
	if err != nil {
		return fmt.Errorf("renkei gateway %s: %w", action, err)
	}
	who := "no gateway runs with this spool; done here"
	if res.Gateway {
		who = "done by the running gateway"
	}
	if len(res.Entries) == 0 {
		fmt.Fprintf(stdout, "送信を止めた画像はありません: nothing to %s (%s).\n", action, who)
		return nil
	}
	var bytes int64
	for _, e := range res.Entries {
		bytes += e.Size
	}
	if action == "retry" {
		fmt.Fprintf(stdout, "%d 件を送信待ちに戻しました. %d parked image(s) are queued again and sent now (%s):\n", len(res.Entries), len(res.Entries), who)
	} else {
		fmt.Fprintf(stdout, "%d 件 (%d bytes) を削除しました. Deleted %d parked image(s), %d bytes, from the spool (%s):\n", len(res.Entries), bytes, len(res.Entries), bytes, who)
	}
	for _, e := range res.Entries {
		fmt.Fprintf(stdout, "  study %s  instance %s  file %s.dcm  (%s)\n", e.StudyInstanceUID, e.SOPInstanceUID, e.Key, e.LastError)
	}
	return nil
}

// osUser names who ran a command, for the gateway's log.
func osUser() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// serverURLSafe refuses a renkei URL over which patients' images would cross a network unencrypted: https://, or
// http:// to this machine only (a renkei on the same host, or a local TLS-terminating proxy).
func serverURLSafe(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("--server %q: give renkei's URL, https://renkei.example.jp", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
		return nil
	}
	return fmt.Errorf("--server %s is not https: patients' images would cross the network unencrypted (http:// is accepted only to this machine)", raw)
}
