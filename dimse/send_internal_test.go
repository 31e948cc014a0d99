package dimse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"testing/iotest"
)

// TestSendFragments checks the PDUs of a message sent in batches (several P-DATA-TF per write, the first batch read
// ahead or not): each PDU holds one PDV and fits the peer's maximum length (PS3.8 9.3.5, D.1), the command comes
// first and whole, the data set arrives intact, and only its final fragment carries the last bit (PS3.8 E.2).
func TestSendFragments(t *testing.T) {
	for _, peerMax := range []uint32{16384, 4096, 0} {
		a := newAssociation(false, nil, 0, 0, 0)
		a.peerMax = peerMax
		frag, batch := a.maxPDV(), a.batchSize()
		for _, size := range []int{0, 1, frag - 1, frag, frag + 1, 3 * frag, batch - 1, batch, batch + 1, 2*batch + frag + 7, 3 * batch} {
			for _, how := range []string{"bytes", "one byte at a time", "read ahead"} {
				t.Run(fmt.Sprintf("max %d/%d bytes/%s", peerMax, size, how), func(t *testing.T) {
					data := make([]byte, size)
					for i := range data {
						data[i] = byte(i*7 + i/251)
					}
					var r io.Reader = bytes.NewReader(data)
					switch how {
					case "one byte at a time":
						r = iotest.OneByteReader(r)
					case "read ahead":
						buf := make([]byte, batch)
						n, err := io.ReadFull(r, buf)
						r = &preread{buf: buf, n: n, err: err, r: r}
					}
					cmd, got := sendAndCollect(t, a, r, peerMax)
					if cmd.CommandField != CStoreRQ || cmd.AffectedSOPInstanceUID != "1.2.3.4" {
						t.Errorf("command %+v", cmd)
					}
					if !bytes.Equal(got, data) {
						t.Errorf("data set: %d bytes received, %d sent, or different bytes", len(got), len(data))
					}
				})
			}
		}
	}
}

// sendAndCollect sends a C-STORE-RQ with data on a over a pipe and returns what the peer reassembles.
func sendAndCollect(t *testing.T, a *Association, data io.Reader, peerMax uint32) (*Command, []byte) {
	t.Helper()
	local, remote := net.Pipe()
	defer remote.Close()
	a.conn, a.state = local, Sta6
	a.contexts = map[byte]*PresentationContext{1: {ID: 1, AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2"}}
	errc := make(chan error, 1)
	go func() {
		c := &Command{CommandField: CStoreRQ, MessageID: 1, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", AffectedSOPInstanceUID: "1.2.3.4"}
		err := a.send(context.Background(), 1, c, data)
		local.Close()
		errc <- err
	}()
	limit := peerMax
	if limit == 0 {
		limit = maxSendPDU
	}
	var cmdBytes, got []byte
	cmdDone, dataDone := false, false
	for {
		p, err := ReadPDU(remote, limit)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("PDU: %v", err)
		}
		pd, ok := p.(*PDataTF)
		if !ok || len(pd.PDVs) != 1 {
			t.Fatalf("want one PDV per P-DATA-TF, got %#v", p)
		}
		v := pd.PDVs[0]
		switch {
		case v.PresentationContextID != 1:
			t.Fatalf("PDV on context %d", v.PresentationContextID)
		case dataDone:
			t.Fatalf("a PDV after the last fragment of the data set")
		case v.Command && cmdDone, !v.Command && !cmdDone:
			t.Fatalf("command fragment (%v) after the command's last fragment (%v)", v.Command, cmdDone)
		case v.Command:
			cmdBytes = append(cmdBytes, v.Data...)
			cmdDone = v.Last
		default:
			got = append(got, v.Data...)
			dataDone = v.Last
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("send: %v", err)
	}
	if !cmdDone || !dataDone {
		t.Fatalf("command complete %v, data set complete %v", cmdDone, dataDone)
	}
	cmd, err := ParseCommand(cmdBytes)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, got
}
