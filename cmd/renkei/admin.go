package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"renkei"
	"renkei/sqlstore"
)

const adminUsage = `Usage:
  renkei admin ae add TITLE [--host H] [--port P] [--institution NAME] [--issuer ISSUER] [--charset CS] [--data DIR]
  renkei admin ae list [--data DIR]
  renkei admin ae remove TITLE [--data DIR]

The AE registry says which DICOM peers may associate with renkei (by AE title, and from which host), where C-MOVE
may send (host and port), and what to assume of what each one sends: the issuer of its patient IDs and the
character set of its text when it declares none (e.g. CP932 for older Japanese modalities).
--data is RENKEI_DATA too. It works while renkei serve runs.
`

func admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "ae" {
		fmt.Fprint(stderr, adminUsage)
		return flag.ErrHelp
	}
	verb, rest := args[1], args[2:]
	fs := flag.NewFlagSet("renkei admin ae "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	data := fs.String("data", "./renkei-data", "data folder")
	var ae renkei.AE
	if verb == "add" {
		fs.StringVar(&ae.Host, "host", "", "host name or address the AE connects from and listens on (empty: any address; required for C-MOVE)")
		fs.IntVar(&ae.Port, "port", 0, "port where it listens for C-STORE (C-MOVE destination)")
		fs.StringVar(&ae.Institution, "institution", "", "institution the AE belongs to")
		fs.StringVar(&ae.Issuer, "issuer", "", "IssuerOfPatientID for objects it sends without one")
		fs.StringVar(&ae.Charset, "charset", "", "character set assumed when its objects declare none, e.g. CP932")
	}
	// The title comes first (renkei admin ae add CT1 --port 104); flags may also come before it.
	var title string
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		title, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if title == "" && fs.NArg() > 0 {
		title = fs.Arg(0)
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o750); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(*data, "index.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	switch verb {
	case "add":
		if title == "" {
			return fmt.Errorf("renkei admin ae add needs an AE title")
		}
		ae.Title = title
		if err := db.PutAE(ctx, ae); err != nil {
			return fmt.Errorf("%s", renkei.ErrorMessage(err))
		}
		fmt.Fprintf(stdout, "AE %s registered\n", title)
	case "list":
		aes, err := db.ListAEs(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TITLE\tHOST\tPORT\tINSTITUTION\tISSUER\tCHARSET")
		for _, a := range aes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", a.Title, a.Host, a.Port, a.Institution, a.Issuer, a.Charset)
		}
		return tw.Flush()
	case "remove":
		if title == "" {
			return fmt.Errorf("renkei admin ae remove needs an AE title")
		}
		if err := db.DeleteAE(ctx, title); err != nil {
			return fmt.Errorf("%s", renkei.ErrorMessage(err))
		}
		fmt.Fprintf(stdout, "AE %s removed\n", title)
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("unknown verb %q", verb)
	}
	return nil
}
