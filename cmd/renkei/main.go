// Command renkei runs the renkei regional platform. Subcommands:
//
//	renkei serve    the platform: DICOMweb and DIMSE over one data folder
//	renkei admin    institutions, users, API tokens, AE titles, audit verification
//	renkei dicom    a DICOM client (SCU): echo, send, find, get
//	renkei import   imports files, folders (CD-ROMs) and zips into a server
//	renkei gateway  the hospital gateway: modalities → local spool → renkei, nothing lost when the line is down
//	renkei version  prints the version
//
// main only wires: flags and RENKEI_* environment variables → configuration → construction → run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the process exit code. Tests call it directly.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "admin":
		err = admin(ctx, args[1:], stdout, stderr)
	case "dicom":
		err = dicomCmd(ctx, args[1:], stdout, stderr)
	case "import":
		err = importCmd(ctx, args[1:], stdout, stderr)
	case "gateway":
		err = gatewayCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "renkei", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "renkei: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "renkei:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `renkei — regional sharing of medical images and clinical information

Usage:
  renkei serve [flags]   run the platform (see renkei serve --help)
  renkei admin ...       institutions, users, API tokens, AE titles, audit verification (see renkei admin)
  renkei dicom ...       DICOM client: echo, send, find, get (see renkei dicom)
  renkei import PATH...  import files, folders (a CD-ROM) and zips into a server (see renkei import --help)
  renkei gateway ...     the hospital gateway: modalities → local spool → renkei (see renkei gateway --help)
  renkei version         print the version
`)
}

// envFlags fills every flag not given on the command line from RENKEI_<NAME> (dashes become underscores).
func envFlags(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := "RENKEI_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}
