package dimse

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"renkei/dicom"
)

// acceptorSeed is an association as a peer would open it: A-ASSOCIATE-RQ, then each message, then A-RELEASE-RQ.
func acceptorSeed(msgs ...[]byte) []byte {
	rq := &AAssociateRQ{ProtocolVersion: 1, CalledAETitle: "RENKEI", CallingAETitle: "FUZZ",
		PresentationContexts: []PresentationContext{
			{ID: 1, AbstractSyntax: Verification, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
			{ID: 3, AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
			{ID: 5, AbstractSyntax: StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
		},
		UserInformation: UserInformation{MaximumLength: 16384}}
	b, _ := EncodePDU(rq)
	for _, m := range msgs {
		b = append(b, m...)
	}
	rel, _ := EncodePDU(&AReleaseRQ{})
	return append(b, rel...)
}

// pdata wraps a command (and a data set) in P-DATA-TF PDUs.
func pdata(pcID byte, c *Command, data []byte) []byte {
	if data != nil {
		c.CommandDataSetType = DataSetPresent
	} else {
		c.CommandDataSetType = NoDataSet
	}
	cb, _ := c.Encode()
	b, _ := EncodePDU(&PDataTF{PDVs: []PDV{{PresentationContextID: pcID, Command: true, Last: true, Data: cb}}})
	if data != nil {
		d, _ := EncodePDU(&PDataTF{PDVs: []PDV{{PresentationContextID: pcID, Last: true, Data: data}}})
		b = append(b, d...)
	}
	return b
}

// FuzzAcceptor plays any bytes as the peer of a Server association: upper layer state machine, message assembly and
// the services together. It must not panic or hang: every association ends once the peer closes.
//
//	go test -run XXX -fuzz FuzzAcceptor -fuzztime 60s ./dimse
func FuzzAcceptor(f *testing.F) {
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.PatientName, "PN", "")
	qb, _ := EncodeDataSet(q, dicom.ImplicitVRLittleEndian)
	f.Add(acceptorSeed(pdata(1, &Command{CommandField: CEchoRQ, AffectedSOPClassUID: Verification, MessageID: 1}, nil)))
	f.Add(acceptorSeed(pdata(3, &Command{CommandField: CStoreRQ, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
		AffectedSOPInstanceUID: "1.2.3", MessageID: 2}, []byte{0x08, 0x00, 0x18, 0x00, 'U', 'I', 2, 0, '1', 0})))
	f.Add(acceptorSeed(pdata(5, &Command{CommandField: CFindRQ, AffectedSOPClassUID: StudyRootQueryRetrieveInformationModelFind, MessageID: 3}, qb),
		pdata(5, &Command{CommandField: CCancelRQ, MessageIDBeingRespondedTo: 3}, nil)))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{ARTIM: 50 * time.Millisecond, MaxPDULength: 64 << 10, Handlers: Handlers{
			Store: StoreFunc(func(ctx context.Context, a *Association, req *StoreRequest, data io.Reader) Status {
				io.Copy(io.Discard, data)
				return Success()
			}),
			Find: FindFunc(func(ctx context.Context, a *Association, req *FindRequest, emit func(*dicom.DataSet) error) Status {
				for i := 0; i < 3; i++ {
					if emit(req.Identifier) != nil {
						break
					}
				}
				return Success()
			}),
		}}
		s.assocs = map[*Association]struct{}{}
		ours, peer := net.Pipe()
		go io.Copy(io.Discard, peer)
		s.wg.Add(1)
		go s.serveConn(ours)
		go func() {
			peer.Write(in)
			peer.Close()
		}()
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the association did not end (input %x)", in[:min(len(in), 256)])
		}
		if s.active != 0 {
			t.Fatalf("%d associations still counted", s.active)
		}
	})
}

func TestAcceptorSeedsRun(t *testing.T) {
	// The seeds themselves must give the expected answers: a quick check that they exercise the services.
	var got bytes.Buffer
	s := &Server{Handlers: Handlers{}}
	s.assocs = map[*Association]struct{}{}
	ours, peer := net.Pipe()
	s.wg.Add(1)
	go s.serveConn(ours)
	go func() {
		peer.Write(acceptorSeed(pdata(1, &Command{CommandField: CEchoRQ, AffectedSOPClassUID: Verification, MessageID: 1}, nil)))
	}()
	for {
		p, err := ReadPDU(peer, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := EncodePDU(p)
		got.Write(b)
		if _, ok := p.(*AReleaseRP); ok {
			break
		}
	}
	peer.Close()
	s.wg.Wait()
	if !bytes.Contains(got.Bytes(), []byte{0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x80}) {
		t.Errorf("no C-ECHO-RSP in %x", got.Bytes())
	}
}
