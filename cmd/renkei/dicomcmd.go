package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"renkei/dicom"
	"renkei/dicom/charset"
	"renkei/dimse"
)

const dicomUsage = `Usage:
  renkei dicom echo [--aet A] [--aec B] HOST:PORT
  renkei dicom send [--aet A] [--aec B] HOST:PORT FILE|FOLDER...
  renkei dicom find [--aet A] [--aec B] [--level STUDY] [--patient-root] [-k KEY=VALUE]... HOST:PORT
  renkei dicom get  [--aet A] [--aec B] [--level STUDY] [--patient-root] [-k KEY=VALUE]... [--out DIR] HOST:PORT

renkei as a DICOM client (SCU): verify a peer, send files to it, search it, and fetch from it with C-GET (no port
needs to be opened on this side). KEY is a PS3.6 keyword or 8 hex digits; an empty value asks for the attribute back.
--aet is our AE title (default RENKEI), --aec the peer's (default ANY-SCP).
Over DICOM TLS (the peer's TLS port, often 2762): --tls, with --tls-ca CA.pem when the peer's certificate is not from
a CA the system trusts, and --tls-cert/--tls-key when the peer requires a client certificate (it names --aet).
`

// storageClasses are proposed (with the SCP role) for C-GET: the peer can only send what we proposed, and an
// association carries at most 128 contexts, so these are the common ones.
var storageClasses = []string{
	"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.3",
	"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.4",
	"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.7",
	"1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",
	"1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.2", "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.128",
	"1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.481.1", "1.2.840.10008.5.1.4.1.1.481.2", "1.2.840.10008.5.1.4.1.1.481.3",
	"1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
	"1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.77.1.5.1",
	"1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.2.2",
}

// getSyntaxes are the transfer syntaxes we take in C-GET: as stored, compressed or not.
var getSyntaxes = []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian, dicom.JPEGLosslessSV1, dicom.JPEGLossless,
	dicom.JPEGLSLossless, dicom.JPEG2000Lossless, dicom.RLELossless, dicom.JPEGBaseline8Bit, dicom.JPEGExtended12Bit,
	dicom.JPEGLSNearLossless, dicom.JPEG2000}

type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, ",") }
func (k *keyList) Set(v string) error { *k = append(*k, v); return nil }

func dicomCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dicomUsage)
		return flag.ErrHelp
	}
	verb := args[0]
	fs := flag.NewFlagSet("renkei dicom "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dicomUsage) }
	aet := fs.String("aet", "RENKEI", "our AE title")
	aec := fs.String("aec", "ANY-SCP", "the peer's AE title")
	level := fs.String("level", "STUDY", "query/retrieve level: PATIENT, STUDY, SERIES or IMAGE")
	patientRoot := fs.Bool("patient-root", false, "use the Patient Root information model (default Study Root)")
	out := fs.String("out", ".", "folder for files received by get")
	var keys keyList
	fs.Var(&keys, "k", "query key KEY=VALUE (repeatable)")
	useTLS := fs.Bool("tls", false, "speak DICOM TLS (PS3.15 B.1) to the peer's TLS port")
	tlsCA := fs.String("tls-ca", "", "with --tls: PEM file of the CA that signed the peer's certificate (default: the system's)")
	tlsCert := fs.String("tls-cert", "", "with --tls: our certificate (PEM), for peers that require one; it names our AE title")
	tlsKey := fs.String("tls-key", "", "with --tls: the private key of --tls-cert")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fmt.Fprint(stderr, dicomUsage)
		return fmt.Errorf("renkei dicom %s needs the peer's HOST:PORT", verb)
	}
	addr := fs.Arg(0)
	var d dimse.Dialer
	if *useTLS {
		conf, err := clientTLS(addr, *tlsCA, *tlsCert, *tlsKey)
		if err != nil {
			return err
		}
		d.TLSConfig = conf
	} else if *tlsCA != "" || *tlsCert != "" || *tlsKey != "" {
		return errors.New("--tls-ca, --tls-cert and --tls-key go with --tls")
	}
	model := func(find, patient string) string {
		if *patientRoot {
			return patient
		}
		return find
	}
	switch verb {
	case "echo":
		a, err := d.Dial(ctx, addr, *aet, *aec, []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}})
		if err != nil {
			return err
		}
		defer a.Release(ctx)
		st, err := a.Echo(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "C-ECHO %s@%s: status 0x%04X\n", *aec, addr, st.Code)
		if !st.IsSuccess() {
			return fmt.Errorf("C-ECHO failed with status 0x%04X", st.Code)
		}
		return nil
	case "send":
		return dicomSend(ctx, &d, addr, *aet, *aec, fs.Args()[1:], stdout)
	case "find", "get":
		id, err := identifier(*level, keys)
		if err != nil {
			return err
		}
		if verb == "find" {
			m := model(dimse.StudyRootQueryRetrieveInformationModelFind, dimse.PatientRootQueryRetrieveInformationModelFind)
			a, err := d.Dial(ctx, addr, *aet, *aec, []dimse.PresentationContext{{AbstractSyntax: m, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}}})
			if err != nil {
				return err
			}
			defer a.Release(ctx)
			n := 0
			for ds, err := range a.Find(ctx, m, id) {
				if err != nil {
					return err
				}
				n++
				out := dicom.AppendJSON(nil, ds, &dicom.JSONOptions{Decoder: func(terms []string) dicom.TextDecoder { return charset.New(terms, "") }})
				fmt.Fprintf(stdout, "%s\n", out)
			}
			fmt.Fprintf(stderr, "%d match(es)\n", n)
			return nil
		}
		m := model(dimse.StudyRootQueryRetrieveInformationModelGet, dimse.PatientRootQueryRetrieveInformationModelGet)
		pcs := []dimse.PresentationContext{{AbstractSyntax: m, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}}}
		for _, sc := range storageClasses {
			pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: sc, TransferSyntaxes: getSyntaxes, SCPRole: true})
		}
		if err := os.MkdirAll(*out, 0o750); err != nil {
			return err
		}
		a, err := d.Dial(ctx, addr, *aet, *aec, pcs)
		if err != nil {
			return err
		}
		defer a.Release(ctx)
		res, err := a.Get(ctx, m, id, dimse.StoreFunc(func(ctx context.Context, _ *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
			if err := writePart10(filepath.Join(*out, req.SOPInstanceUID+".dcm"), req, data); err != nil {
				return dimse.Failure(0xA700, err.Error())
			}
			return dimse.Success()
		}))
		if err != nil {
			return err
		}
		s := res.SubOperations
		fmt.Fprintf(stdout, "C-GET: %d received, %d failed, %d warnings; status 0x%04X\n", s.Completed, s.Failed, s.Warning, res.Status.Code)
		if s.Failed > 0 || res.Status.IsFailure() {
			return errors.New("some instances could not be retrieved")
		}
		return nil
	}
	fmt.Fprint(stderr, dicomUsage)
	return fmt.Errorf("unknown verb %q", verb)
}

// clientTLS is the DICOM TLS configuration of renkei dicom: the peer's certificate checked against caFile (or the
// system's CAs) for the host of addr, our certificate when given, BCP 195's versions and ciphers.
func clientTLS(addr, caFile, certFile, keyFile string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: give HOST:PORT", addr)
	}
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, CipherSuites: bcp195Ciphers}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// identifier builds a C-FIND/C-GET identifier from KEY=VALUE pairs, in UTF-8 (ISO_IR 192).
func identifier(level string, keys []string) (*dicom.DataSet, error) {
	ds := &dicom.DataSet{}
	ds.SetString(dicom.SpecificCharacterSet, "CS", "ISO_IR 192")
	ds.SetString(dicom.NewTag(0x0008, 0x0052), "CS", strings.ToUpper(level))
	for _, kv := range keys {
		k, v, _ := strings.Cut(kv, "=")
		t, err := dicom.ParseTag(k)
		if err != nil {
			return nil, err
		}
		ds.SetString(t, dicom.VR(t), v)
	}
	return ds, nil
}

// writePart10 stores a received data set as a Part 10 file (preamble, meta information, then the bytes as received).
func writePart10(path string, req *dimse.StoreRequest, data io.Reader) error {
	meta := &dicom.DataSet{}
	meta.Set(&dicom.Element{Tag: dicom.FileMetaInformationVersion, VR: "OB", Value: []byte{0, 1}})
	meta.SetString(dicom.MediaStorageSOPClassUID, "UI", req.SOPClassUID)
	meta.SetString(dicom.MediaStorageSOPInstanceUID, "UI", req.SOPInstanceUID)
	meta.SetString(dicom.TransferSyntaxUID, "UI", req.TransferSyntaxUID)
	meta.SetString(dicom.ImplementationClassUID, "UI", dicom.RenkeiImplementationClassUID)
	meta.SetString(dicom.ImplementationVersionName, "SH", dicom.RenkeiImplementationVersion)
	var head bytes.Buffer
	if err := dicom.WriteFile(&head, meta, &dicom.DataSet{}, nil, nil); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(head.Bytes())
	if err == nil {
		_, err = io.Copy(f, data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dicomSend C-STOREs files (folders are walked), each in its own transfer syntax.
func dicomSend(ctx context.Context, d *dimse.Dialer, addr, aet, aec string, paths []string, stdout io.Writer) error {
	type item struct {
		path, class, inst, ts string
		offset                int64
	}
	var items []item
	seen := map[[2]string]bool{}
	var pcs []dimse.PresentationContext
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			opt := dicom.DefaultReadOptions
			opt.StopAtPixelData = true
			pf, err := dicom.Parse(f, opt)
			if err != nil {
				fmt.Fprintf(stdout, "skipped %s: %v\n", path, err)
				return nil
			}
			it := item{path: path, class: pf.Meta.String(dicom.MediaStorageSOPClassUID), inst: pf.Meta.String(dicom.MediaStorageSOPInstanceUID), ts: pf.TransferSyntaxUID, offset: pf.DataSetOffset}
			items = append(items, it)
			if k := [2]string{it.class, it.ts}; !seen[k] {
				seen[k] = true
				pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: it.class, TransferSyntaxes: []string{it.ts}})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(items) == 0 {
		return errors.New("no DICOM files to send")
	}
	if len(pcs) > 128 {
		return fmt.Errorf("the files need %d presentation contexts; one association carries 128: send fewer kinds at a time", len(pcs))
	}
	a, err := d.Dial(ctx, addr, aet, aec, pcs)
	if err != nil {
		return err
	}
	defer a.Release(ctx)
	failed := 0
	for _, it := range items {
		f, err := os.Open(it.path)
		if err != nil {
			return err
		}
		f.Seek(it.offset, io.SeekStart)
		st, err := a.Store(ctx, it.class, it.inst, it.ts, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", it.path, err)
		}
		if st.IsFailure() {
			failed++
			fmt.Fprintf(stdout, "refused %s: status 0x%04X %s\n", it.path, st.Code, st.ErrorComment)
		}
	}
	fmt.Fprintf(stdout, "sent %d file(s), %d refused\n", len(items)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d file(s) refused", failed)
	}
	return nil
}
