package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"renkei"
	"renkei/identity"
)

const adminUsage = `Usage:
  renkei admin institution add ID --name NAME --kind KIND [--name-en NAME] [--code CODE] [--functions F,F] [--issuer ISSUER] [--email ADDR]
  renkei admin institution list
  renkei admin user add LOGIN --institution ID --role ROLE [--name NAME] [--person LABEL]
  renkei admin user list [--institution ID]
  renkei admin user reset LOGIN          new one-time password; second factor to be enrolled again
  renkei admin user disable LOGIN       logs them out everywhere; also what "lock the user" on an alert does
  renkei admin user enable LOGIN        lets a disabled (or alert-locked) user log in again with their password and second factor
  renkei admin user totp-code LOGIN      the current authenticator code of a demo account (demo accounts only)
  renkei admin token add NAME --institution ID [--write] [--days N]
  renkei admin token list [--institution ID]
  renkei admin token revoke ID
  renkei admin ae add TITLE --institution ID [--host H] [--port P] [--issuer ISSUER] [--charset CS] [--tls]
  renkei admin ae list
  renkei admin ae remove TITLE
  renkei admin audit verify [--key FILE]
  renkei admin verify [--blobs s3://…] [--quick] [--remove-orphans]   index and blobs agree, every SHA-256
  renkei admin migrate --from sqlite://PATH --to postgres://… [--blobs-to s3://…]   move a stopped region to PostgreSQL and S3 (renkei admin migrate -h)
  renkei admin backup --to BACKUPDIR [--backup-marker FILE]   a consistent, incremental copy while serve runs (renkei admin backup -h)
  renkei admin restore --from BACKUPDIR --data EMPTYDIR      bring a backup back, every SHA-256 checked

Every command takes --data DIR (RENKEI_DATA), and --db postgres://… (RENKEI_DB) where the index is on
PostgreSQL (the audit key stays in --data). They work while renkei serve runs, and are meant for shell scripts:
they never prompt. Every change is recorded in the audit trail as done by the admin shell and the OS user.

KIND is hospital, clinic, care-home, pharmacy, imaging-centre or region (the region's operator, home of region
admins). ROLE is physician, radiologist, nurse, clerk, institution-admin, region-admin or patient. CODE is the
10-digit 医療機関コード; F are care functions: 高度急性期, 急性期, 回復期, 慢性期, 在宅, 介護.

user add and user reset print a one-time password: hand it over on paper; it must be changed at first login, where
staff also enrol an authenticator app. token add prints the token once; renkei keeps only its hash.

AE titles say which DICOM peers may associate (and from which host), where C-MOVE may send (host and port), which
institution owns what they store, and what to assume of what they send: the issuer of their patient IDs and the
character set of their text when they declare none (e.g. CP932 for older Japanese modalities).
`

// adminPrincipal is who the audit trail names for a change made from the shell.
func adminPrincipal() *renkei.Principal {
	name := "admin shell"
	if u, err := user.Current(); err == nil {
		name += " (" + u.Username + ")"
	}
	return &renkei.Principal{Kind: renkei.SystemPrincipal, Name: name, Write: true, Source: "shell"}
}

func admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "migrate":
		return adminMigrate(ctx, args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "backup":
		return adminBackup(ctx, args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "restore":
		return adminRestore(ctx, args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "verify":
		return adminVerify(ctx, args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, adminUsage)
		return flag.ErrHelp
	}
	noun, verb, rest := args[0], args[1], args[2:]
	fs := flag.NewFlagSet("renkei admin "+noun+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	data := fs.String("data", "./renkei-data", "data folder")
	index := fs.String("db", "", indexUsage)
	var (
		ae        renkei.AE
		inst      renkei.Institution
		functions string
		instID    string
		role      string
		name      string
		write     bool
		days      int
		keyFile   string
		person    string
	)
	switch noun + " " + verb {
	case "ae add":
		fs.StringVar(&ae.Host, "host", "", "host name or address the AE connects from and listens on (empty: any address; required for C-MOVE)")
		fs.IntVar(&ae.Port, "port", 0, "port where it listens for C-STORE (C-MOVE destination)")
		fs.StringVar(&ae.Institution, "institution", "", "ID of the institution the AE belongs to (required)")
		fs.StringVar(&ae.Issuer, "issuer", "", "IssuerOfPatientID for objects it sends without one (default: its institution's)")
		fs.StringVar(&ae.Charset, "charset", "", "character set assumed when its objects declare none, e.g. CP932")
		fs.BoolVar(&ae.TLS, "tls", false, "reach it over DICOM TLS (--port is its TLS port): C-MOVE sub-operations and storage-commitment reports")
	case "institution add":
		fs.StringVar(&inst.Name, "name", "", "name in Japanese, e.g. 中央病院 (required)")
		fs.StringVar(&inst.NameEn, "name-en", "", "name in English")
		fs.StringVar((*string)(&inst.Kind), "kind", "", "hospital, clinic, care-home, pharmacy, imaging-centre or region (required)")
		fs.StringVar(&inst.Code, "code", "", "10-digit 医療機関コード")
		fs.StringVar(&inst.Email, "email", "", "the 地域連携室's e-mail address, told when a referral waits (no patient data)")
		fs.StringVar(&functions, "functions", "", "comma-separated care functions")
		fs.StringVar(&inst.Issuer, "issuer", "", "IssuerOfPatientID of its local patient IDs (default: its ID)")
	case "user add":
		fs.StringVar(&instID, "institution", "", "ID of the user's institution (required)")
		fs.StringVar(&role, "role", "", "the user's role (required)")
		fs.StringVar(&name, "name", "", "the user's name as colleagues know it")
		fs.StringVar(&person, "person", "", "links this account with the same person's accounts at other institutions (any shared label)")
	case "user list", "token list":
		fs.StringVar(&instID, "institution", "", "only this institution's")
	case "token add":
		fs.StringVar(&instID, "institution", "", "ID of the institution the token acts for (required)")
		fs.BoolVar(&write, "write", false, "allow storing (STOW-RS) as well as reading")
		fs.IntVar(&days, "days", 0, "expire after this many days (default: never; revoke with token revoke)")
	case "audit verify":
		fs.StringVar(&keyFile, "key", "", "the audit key file whose public key checks the signed checkpoints (default: DATA/audit-key)")
	}
	// The object comes first (renkei admin ae add CT1 --port 104); flags may also come before it.
	var object string
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		object, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if object == "" && fs.NArg() > 0 {
		object = fs.Arg(0)
	}
	if err := envFlags(fs); err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o750); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	db, err := openIndex(ctx, *index, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	if noun+" "+verb != "audit verify" {
		// Admin actions extend the audit chain like the server's, signed by the same key (made here if the server
		// has not run yet).
		if db.AuditKey, err = auditKey(filepath.Join(*data, auditKeyFile)); err != nil {
			return fmt.Errorf("audit key: %w", err)
		}
		defer db.CheckpointAudit(ctx) // sign the head, so that removing these events is detected too
	}
	need := func(what string) error {
		if object == "" {
			return fmt.Errorf("renkei admin %s %s needs %s", noun, verb, what)
		}
		return nil
	}
	by := adminPrincipal()
	event := func(detail string) *renkei.AuditEvent {
		e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
		e.Detail = detail
		return &e
	}
	msg := func(err error) error { return fmt.Errorf("%s", renkei.ErrorMessage(err)) }
	institution := func(id string) (renkei.Institution, error) {
		if id == "" {
			return renkei.Institution{}, fmt.Errorf("--institution is required")
		}
		in, err := db.Institution(ctx, id)
		if err != nil {
			return in, msg(err)
		}
		return in, nil
	}
	// optionalInstitution is the index key of --institution, or 0 (every institution) when it is not given.
	optionalInstitution := func(id string) (int64, error) {
		if id == "" {
			return 0, nil
		}
		in, err := institution(id)
		return in.PK, err
	}
	ids := identity.New(db)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)

	switch noun + " " + verb {
	case "institution add":
		if err := need("an institution ID, e.g. chuo-hospital"); err != nil {
			return err
		}
		inst.ID = object
		if err := checkInstitution(&inst, functions); err != nil {
			return err
		}
		if err := db.PutInstitution(ctx, &inst, event("added or updated institution "+inst.ID)); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "institution %s (%s) saved\n", inst.ID, inst.Name)
	case "institution list":
		list, err := db.Institutions(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tNAME\tKIND\tCODE\tISSUER\tFUNCTIONS")
		for _, in := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Name, in.Kind, in.Code, in.Issuer, strings.Join(in.CareFunctions, ","))
		}
		return tw.Flush()

	case "user add":
		if err := need("a login, e.g. yamada@chuo-hospital"); err != nil {
			return err
		}
		in, err := institution(instID)
		if err != nil {
			return err
		}
		u := renkei.User{Login: object, Name: name, Institution: in, Role: renkei.Role(role), Person: person}
		pw, err := ids.CreateUser(ctx, by, &u)
		if err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "user %s (%s at %s) created\none-time password: %s\n", u.Login, u.Role, in.Name, pw)
		fmt.Fprintln(stdout, "It must be changed at the first login, where the user also enrols an authenticator app or a security key.")
	case "user list":
		pk, err := optionalInstitution(instID)
		if err != nil {
			return err
		}
		list, err := db.Users(ctx, pk)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "LOGIN\tNAME\tROLE\tINSTITUTION\tSECOND FACTOR\tSTATE")
		for _, u := range list {
			state := "active"
			switch {
			case u.Disabled:
				state = "disabled"
			case u.MustChangePassword:
				state = "one-time password"
			}
			tf := "none"
			if u.HasTOTP {
				tf = "totp"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Login, u.Name, u.Role, u.Institution.ID, tf, state)
		}
		return tw.Flush()
	case "user reset":
		if err := need("a login"); err != nil {
			return err
		}
		u, _, err := db.UserByLogin(ctx, object)
		if err != nil {
			return msg(err)
		}
		pw, err := ids.ResetUser(ctx, by, u.PK)
		if err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "user %s reset: every session ended, second factor to be enrolled again\none-time password: %s\n", u.Login, pw)
	case "user disable":
		if err := need("a login"); err != nil {
			return err
		}
		u, _, err := db.UserByLogin(ctx, object)
		if err != nil {
			return msg(err)
		}
		t := true
		if err := db.UpdateUser(ctx, u.PK, renkei.UserUpdate{Disabled: &t, EndSessions: true}, event("disabled user "+u.Login)); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "user %s disabled and logged out everywhere\n", u.Login)

	case "user enable":
		if err := need("a login"); err != nil {
			return err
		}
		u, _, err := db.UserByLogin(ctx, object)
		if err != nil {
			return msg(err)
		}
		f := false
		if err := db.UpdateUser(ctx, u.PK, renkei.UserUpdate{Disabled: &f}, event("enabled user "+u.Login)); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "user %s enabled: they log in with their password and second factor as before (if either may have been stolen, use user reset instead)\n", u.Login)

	case "user totp-code":
		if err := need("a demo login"); err != nil {
			return err
		}
		if !strings.HasPrefix(object, identity.DemoPrefix) {
			return fmt.Errorf("totp-code works for demo accounts only; a real user's code comes from their own authenticator")
		}
		_, c, err := db.UserByLogin(ctx, object)
		if err != nil {
			return msg(err)
		}
		code, err := demoTOTPCode(c.TOTPSecret)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, code)

	case "token add":
		if err := need("a name saying what uses the token, e.g. gateway-ct-room"); err != nil {
			return err
		}
		in, err := institution(instID)
		if err != nil {
			return err
		}
		t := renkei.APIToken{Institution: in.PK, Name: object, Write: write}
		if days > 0 {
			exp := time.Now().Add(time.Duration(days) * 24 * time.Hour)
			t.ExpiresAt = &exp
		}
		secret, err := ids.CreateToken(ctx, by, &t)
		if err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "token %d (%s) for %s created; it is shown only now:\n%s\n", t.PK, t.Name, in.Name, secret)
	case "token list":
		pk, err := optionalInstitution(instID)
		if err != nil {
			return err
		}
		list, err := db.Tokens(ctx, pk)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tNAME\tINSTITUTION\tACCESS\tCREATED\tSTATE")
		for _, t := range list {
			in, _ := db.InstitutionByPK(ctx, t.Institution)
			access, state := "read", "active"
			if t.Write {
				access = "read-write"
			}
			if t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.Format("2006-01-02")
			} else if t.ExpiresAt != nil {
				state = "expires " + t.ExpiresAt.Format("2006-01-02")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.PK, t.Name, in.ID, access, t.CreatedAt.Format("2006-01-02"), state)
		}
		return tw.Flush()
	case "token revoke":
		if err := need("a token ID (see token list)"); err != nil {
			return err
		}
		pk, err := strconv.ParseInt(object, 10, 64)
		if err != nil {
			return fmt.Errorf("token ID %q is not a number (see token list)", object)
		}
		if err := db.RevokeToken(ctx, pk, 0, event("revoked API token "+object)); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "token %d revoked\n", pk)

	case "ae add":
		if err := need("an AE title"); err != nil {
			return err
		}
		ae.Title = object
		if ae.Institution == "" {
			return fmt.Errorf("--institution is required: an AE belongs to the institution that owns what it stores")
		}
		if err := db.PutAE(ctx, ae, event(fmt.Sprintf("registered AE %s of %s (host %q, port %d)", ae.Title, ae.Institution, ae.Host, ae.Port))); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "AE %s registered\n", object)
	case "ae list":
		aes, err := db.ListAEs(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "TITLE\tHOST\tPORT\tINSTITUTION\tISSUER\tCHARSET\tTLS")
		for _, a := range aes {
			tlsCol := ""
			if a.TLS {
				tlsCol = "tls"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.Title, a.Host, a.Port, a.Institution, a.Issuer, a.Charset, tlsCol)
		}
		return tw.Flush()
	case "ae remove":
		if err := need("an AE title"); err != nil {
			return err
		}
		if err := db.DeleteAE(ctx, object, event("removed AE "+object)); err != nil {
			return msg(err)
		}
		fmt.Fprintf(stdout, "AE %s removed\n", object)

	case "audit verify":
		if keyFile == "" {
			keyFile = filepath.Join(*data, auditKeyFile)
		}
		key, err := readAuditKey(keyFile)
		if err != nil {
			return fmt.Errorf("audit key: %w", err)
		}
		// The result is kept for the security status page (the time of the last check and what it found).
		rep, err := db.VerifyAndRecordAudit(ctx, map[string]ed25519.PublicKey{key.ID: key.Private.Public().(ed25519.PublicKey)}, by.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d events, %d signed checkpoints, last event %d\n", rep.Events, rep.Checkpoints, rep.LastSeq)
		if len(rep.Problems) == 0 {
			fmt.Fprintln(stdout, "the audit trail is intact")
			return nil
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "event %d: %s\n", p.Seq, p.Problem)
		}
		return fmt.Errorf("the audit trail was altered: %d problem(s) found", len(rep.Problems))
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("unknown command: admin %s %s", noun, verb)
	}
	return nil
}

func checkInstitution(in *renkei.Institution, functions string) error {
	for _, c := range in.ID {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') || len(in.ID) > 64 {
			return fmt.Errorf("institution ID %q must be up to 64 lower-case letters, digits and dashes, e.g. chuo-hospital", in.ID)
		}
	}
	if strings.TrimSpace(in.Name) == "" {
		return fmt.Errorf("--name is required")
	}
	if !slices.Contains(renkei.InstitutionKinds, in.Kind) {
		return fmt.Errorf("--kind must be one of hospital, clinic, care-home, pharmacy, imaging-centre, region")
	}
	if in.Code != "" && !renkei.ValidInstitutionCode(in.Code) {
		return fmt.Errorf("--code %q is not a 医療機関コード (10 digits, starting with a prefecture number 01–47)", in.Code)
	}
	for _, f := range strings.Split(functions, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !slices.Contains(renkei.CareFunctions, f) {
			return fmt.Errorf("care function %q is not one of %s", f, strings.Join(renkei.CareFunctions, ", "))
		}
		in.CareFunctions = append(in.CareFunctions, f)
	}
	if in.Issuer == "" {
		in.Issuer = in.ID
	}
	return nil
}
