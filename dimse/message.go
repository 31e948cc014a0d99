package dimse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"renkei/dicom"
)

// message is one DIMSE message (PS3.7 6.3): a command set and, when it announces one, a data set that arrives as a
// stream while the message is being handled.
type message struct {
	pc   *PresentationContext
	cmd  *Command
	data *dataPipe // nil when no data set follows
}

// dimse is the message layer state of an association.
type dimse struct {
	// Owned by the reader goroutine.
	cmdBuf []byte   // command fragments received so far
	cmdPC  byte     // their presentation context
	inData *message // the message whose data set is arriving
	broken bool     // a P-DATA-TF broke the protocol: the stream is abandoned

	pipeMu  sync.Mutex
	ended   bool
	curPipe *dataPipe

	msgID   atomic.Uint32
	pmu     sync.Mutex
	waiters map[uint16]chan *message // operations we invoked, by message ID

	reqs      chan *message // requests for the service goroutine
	busy      atomic.Bool   // a request is being performed
	releaseCh chan struct{}

	opMu     sync.Mutex
	opID     uint16             // message ID of the request being performed
	opCancel context.CancelFunc // cancels it (C-CANCEL-RQ)
	getStore StoreHandler       // receives the C-STORE sub-operations of our C-GET

	// Guarded by msgSem: the data set buffer, the PDU headers and the writev buffers of sendStream.
	sendBuf []byte
	sendHdr []byte
	sendIov [][]byte
}

func (d *dimse) init() {
	d.waiters = map[uint16]chan *message{}
	d.reqs = make(chan *message, 1)
	d.releaseCh = make(chan struct{}, 1)
}

// active reports whether an operation is in progress in either direction; the idle timeout waits for it.
func (d *dimse) active() bool {
	if d.busy.Load() || d.inData != nil {
		return true
	}
	d.pmu.Lock()
	defer d.pmu.Unlock()
	return len(d.waiters) > 0
}

// abortPipes fails the data set being received, and any created later.
func (d *dimse) abortPipes(err error) {
	d.pipeMu.Lock()
	defer d.pipeMu.Unlock()
	d.ended = true
	if d.curPipe != nil {
		d.curPipe.abort(err)
	}
}

// dataPipe carries a data set from the reader goroutine to the goroutine handling its message. Each fragment is
// handed over synchronously, so the association holds at most one PDU of it in memory.
type dataPipe struct {
	pr      *io.PipeReader
	pw      *io.PipeWriter
	mu      sync.Mutex
	done    bool
	discard bool // reader goroutine only: the consumer stopped reading; drop the rest
}

func (a *Association) newDataPipe() *dataPipe {
	pr, pw := io.Pipe()
	p := &dataPipe{pr: pr, pw: pw}
	a.pipeMu.Lock()
	defer a.pipeMu.Unlock()
	if a.ended {
		p.abort(a.ctx.Err())
	} else {
		a.curPipe = p
	}
	return p
}

// write hands a fragment to the consumer, or drops it once the consumer has closed its end.
func (p *dataPipe) write(b []byte) {
	if p.discard || len(b) == 0 {
		return
	}
	if _, err := p.pw.Write(b); err != nil {
		p.discard = true
	}
}

func (p *dataPipe) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		p.pw.Close()
	}
}

func (p *dataPipe) abort(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		if err == nil {
			err = ErrReleased
		}
		p.pw.CloseWithError(fmt.Errorf("dimse: data set incomplete: %w", err))
	}
}

// drain reads the rest of the data set, so that a response follows the whole request (PS3.7 9.1.1.1).
func (p *dataPipe) drain() error {
	_, err := io.Copy(io.Discard, p.pr)
	if errors.Is(err, io.ErrClosedPipe) {
		return nil // the consumer closed it: the reader goroutine drops the rest
	}
	return err
}

// close stops reading: the rest of the data set is dropped as it arrives.
func (p *dataPipe) close() { p.pr.Close() }

// pdataIndication is DT-2 and AR-6: the PDVs of a P-DATA-TF become messages (PS3.7 6.3.1, PS3.8 Annex E).
func (a *Association) pdataIndication(in *input) {
	if err := eachPDV(in.pdata[0], a.receivePDV); err != nil {
		a.log.Warn("dimse invalid P-DATA-TF", "err", err)
		a.broken = true
		_ = a.fire(Evt19, &input{err: err})
	}
}

func (a *Association) receivePDV(v PDV) error {
	id := v.PresentationContextID
	pc := a.contexts[id]
	if pc == nil {
		return pduErrorf(AbortInvalidParameter, "PDV on presentation context %d, which was not accepted (PS3.8 9.3.5.1)", id)
	}
	if v.Command {
		if a.inData != nil {
			return pduErrorf(AbortUnexpectedParameter, "command fragment while a data set is incomplete (PS3.7 6.3.1)")
		}
		if len(a.cmdBuf) > 0 && a.cmdPC != id {
			return pduErrorf(AbortUnexpectedParameter, "command fragments on presentation contexts %d and %d", a.cmdPC, id)
		}
		if len(a.cmdBuf)+len(v.Data) > MaxCommandLength {
			return pduErrorf(AbortInvalidParameter, "command set longer than %d bytes", MaxCommandLength)
		}
		a.cmdPC = id
		a.cmdBuf = append(a.cmdBuf, v.Data...)
		if !v.Last {
			return nil
		}
		cmd, err := ParseCommand(a.cmdBuf)
		a.cmdBuf = a.cmdBuf[:0]
		if cap(a.cmdBuf) > 4<<10 {
			a.cmdBuf = nil
		}
		if err != nil {
			return pduErrorf(AbortInvalidParameter, "%v", err)
		}
		m := &message{pc: pc, cmd: cmd}
		if cmd.HasDataSet() {
			m.data = a.newDataPipe()
			a.inData = m
		}
		a.log.Debug("dimse received", "command", commandName(cmd.CommandField), "context", id, "data", cmd.HasDataSet())
		return a.dispatch(m)
	}
	m := a.inData
	if m == nil {
		return pduErrorf(AbortUnexpectedParameter, "data set fragment without a command announcing one (PS3.7 6.3.1)")
	}
	if m.pc.ID != id {
		return pduErrorf(AbortUnexpectedParameter, "data set fragment on context %d for a command on context %d", id, m.pc.ID)
	}
	m.data.write(v.Data)
	if v.Last {
		m.data.finish()
		a.inData = nil
		a.pipeMu.Lock()
		a.curPipe = nil
		a.pipeMu.Unlock()
	}
	return nil
}

// dispatch routes a message: a response to the operation that waits for it, a C-CANCEL to the operation it cancels,
// a request to the service goroutine.
func (a *Association) dispatch(m *message) error {
	c := m.cmd
	switch {
	case c.IsResponse():
		a.pmu.Lock()
		ch := a.waiters[c.MessageIDBeingRespondedTo]
		a.pmu.Unlock()
		if ch == nil {
			a.log.Warn("dimse response to no outstanding request", "command", commandName(c.CommandField), "id", c.MessageIDBeingRespondedTo)
			if m.data != nil {
				m.data.close()
			}
			return nil
		}
		select {
		case ch <- m:
		case <-a.ctx.Done():
		}
		return nil
	case c.CommandField == CCancelRQ:
		a.opMu.Lock()
		if a.opCancel != nil && a.opID == c.MessageIDBeingRespondedTo {
			a.opCancel()
		}
		a.opMu.Unlock()
		if m.data != nil {
			m.data.close()
		}
		return nil
	}
	if !a.busy.CompareAndSwap(false, true) {
		// The window of PS3.7 D.3.3.3 is one outstanding operation: we never negotiate more.
		return pduErrorf(AbortUnexpectedPDU, "%s while another operation is outstanding (asynchronous operations window 1, PS3.7 D.3.3.3)", commandName(c.CommandField))
	}
	a.reqs <- m
	return nil
}

// serve is the service goroutine: it performs the peer's requests one after another and answers its release.
func (a *Association) serve() {
	for {
		select {
		case m := <-a.reqs:
			a.handleRequest(m)
		case <-a.releaseCh:
			select {
			case m := <-a.reqs:
				a.handleRequest(m)
			default:
			}
			a.releaseResponse()
		case <-a.ctx.Done():
			return
		}
	}
}

// register reserves a message ID for an operation we invoke and the channel its responses arrive on.
func (a *Association) register() (uint16, chan *message) {
	id := uint16(a.msgID.Add(1))
	if id == 0 {
		id = uint16(a.msgID.Add(1))
	}
	ch := make(chan *message, 1)
	a.pmu.Lock()
	a.waiters[id] = ch
	a.pmu.Unlock()
	return id, ch
}

func (a *Association) unregister(id uint16) {
	a.pmu.Lock()
	delete(a.waiters, id)
	a.pmu.Unlock()
}

// await returns the next response on ch.
func (a *Association) await(ctx context.Context, ch chan *message) (*message, error) {
	select {
	case m := <-ch:
		return m, nil
	case <-a.done:
		select {
		case m := <-ch:
			return m, nil
		default:
		}
		return nil, a.endedErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send sends one DIMSE message: the command set, then the data set read from data, each fragmented to the peer's
// maximum PDU length (PS3.8 9.3.5, D.1). A data set that fails to read half-way aborts the association: a message
// cannot be taken back.
func (a *Association) send(ctx context.Context, pcID byte, cmd *Command, data io.Reader) error {
	if data != nil {
		cmd.CommandDataSetType = DataSetPresent
	} else {
		cmd.CommandDataSetType = NoDataSet
	}
	b, err := cmd.Encode()
	if err != nil {
		return err
	}
	select {
	case a.msgSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.done:
		return a.endedErr()
	}
	defer func() { <-a.msgSem }()
	a.log.Debug("dimse send", "command", commandName(cmd.CommandField), "context", pcID, "data", data != nil)
	max := a.maxPDV()
	// The command PDUs go out with the first PDUs of the data set, in one write.
	hdrs := make([]byte, 0, 12*((len(b)+max-1)/max))
	var bufs [][]byte
	for len(b) > 0 {
		n := min(len(b), max)
		hdrs = appendPDataHeader(hdrs, pcID, true, n == len(b), n)
		bufs = append(bufs, hdrs[len(hdrs)-12:], b[:n])
		b = b[n:]
	}
	if data == nil {
		return a.writePData(bufs)
	}
	if err := a.sendStream(pcID, bufs, data, max); err != nil {
		a.Abort()
		return err
	}
	return nil
}

// sendBatch is how much of a data set one write carries. A peer that announces a small maximum PDU length (dcmtk's
// tools announce 16 KB) gets many P-DATA-TF PDUs per write: a 525 KB CT instance costs one read of the blob and one
// writev, not 33 of each. The buffer is the association's, grown only for a data set longer than one fragment, and
// bounded by max(sendBatch, the peer's maximum PDU length).
const sendBatch = 1 << 20

// maxBatchPDUs bounds the PDUs of one write for a peer with a tiny maximum PDU length.
const maxBatchPDUs = 512

// sendStream sends a data set read from r as data PDVs, one per P-DATA-TF PDU, after the buffers of head (the
// command PDUs). It reads up to sendBatch bytes at a time into one buffer and writes the PDUs of a batch with one
// writev, their 12-byte headers (PDU and PDV, PS3.8 9.3.5) between slices of that buffer: the data set is not
// copied again. After a full buffer it reads one byte ahead to know whether the batch ends the data set, whose
// last PDV carries the last-fragment bit (PS3.8 E.2).
func (a *Association) sendStream(pcID byte, head [][]byte, r io.Reader, frag int) error {
	frags := min(maxBatchPDUs, max(1, sendBatch/frag))
	var buf []byte
	pre, _ := r.(*preread)
	if pre != nil && len(pre.buf) == frags*frag {
		buf, r = pre.buf, pre.r // its first batch is in its own buffer already
	} else {
		pre = nil
		// A small data set (a C-FIND identifier) needs one fragment: the buffer grows to a batch only when one is
		// full.
		if len(a.sendBuf) < frag {
			a.sendBuf = make([]byte, frag)
		}
		buf = a.sendBuf[:min(len(a.sendBuf)/frag, frags)*frag]
	}
	have := 0 // a byte read ahead, at the front of buf
	bufs := head
	var next [1]byte
	for {
		var n int
		var err error
		if pre != nil {
			n, err, pre = pre.n, pre.err, nil
		} else {
			n, err = io.ReadFull(r, buf[have:])
			n += have
		}
		eof := false
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			eof = true
		case err != nil:
			return fmt.Errorf("dimse: read data set: %w", err)
		}
		if !eof && len(buf) < frags*frag {
			grown := make([]byte, frags*frag)
			copy(grown, buf[:n])
			buf, have, a.sendBuf = grown, n, grown
			continue
		}
		if !eof {
			m, err := io.ReadFull(r, next[:])
			switch {
			case m == 0 && err == io.EOF:
				eof = true
			case err != nil:
				return fmt.Errorf("dimse: read data set: %w", err)
			}
		}
		if cap(a.sendHdr) < 12*frags {
			a.sendHdr = make([]byte, 0, 12*frags)
		}
		hdrs := a.sendHdr[:0]
		for off := 0; off < n || off == 0; {
			k := min(frag, n-off)
			hdrs = appendPDataHeader(hdrs, pcID, false, eof && off+k == n, k)
			bufs = append(bufs, hdrs[len(hdrs)-12:], buf[off:off+k])
			off += k
			if k == 0 {
				break // an empty data set: one empty last fragment
			}
		}
		if err := a.writePData(bufs); err != nil {
			return err
		}
		if eof {
			return nil
		}
		buf[0], have = next[0], 1
		bufs = a.sendIov[:0]
	}
}

// preread is a data set whose first batch was read into buf, a buffer of its own, while the previous message was
// being sent (the sub-operations of a retrieve, see storeTarget.open); sendStream sends from that buffer, then reads
// the rest from r.
type preread struct {
	buf []byte // a whole batch for the association (batchSize)
	n   int    // bytes read into buf
	err error  // the error of that read: nil when buf is full, io.EOF or io.ErrUnexpectedEOF when the data set is shorter
	r   io.Reader
}

// Read serves buf[:n], then r, for a reader other than sendStream.
func (p *preread) Read(b []byte) (int, error) {
	switch {
	case p.n > 0:
		k := copy(b, p.buf[:p.n])
		p.buf, p.n = p.buf[k:], p.n-k
		return k, nil
	case p.err == io.ErrUnexpectedEOF:
		return 0, io.EOF
	case p.err != nil:
		return 0, p.err
	}
	return p.r.Read(b)
}

// batchSize is the size of the buffer sendStream fills before each write on this association.
func (a *Association) batchSize() int {
	frag := a.maxPDV()
	return min(maxBatchPDUs, max(1, sendBatch/frag)) * frag
}

// appendPDataHeader appends the header of a P-DATA-TF PDU that holds one PDV of n bytes, and the PDV's item header
// (PS3.8 9.3.5, 9.3.5.1): 12 bytes.
func appendPDataHeader(dst []byte, pcID byte, command, last bool, n int) []byte {
	dst = append(dst, pduPDataTF, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(6+n))
	return appendPDVHeader(dst, pcID, command, last, n)
}

// maxPDV is the largest fragment that fits the peer's maximum P-DATA-TF length with its 6-byte PDV header.
func (a *Association) maxPDV() int {
	n := uint32(maxSendPDU)
	if a.peerMax != 0 && a.peerMax < n {
		n = a.peerMax
	}
	return int(max(n, 8) - 6)
}

// writePData sends P-DATA-TF PDUs, given as buffers, with one writev (Evt9, DT-1). The buffers hold whole PDUs only,
// so that an A-ABORT written by another goroutine between two calls falls on a PDU boundary.
func (a *Association) writePData(bufs [][]byte) error {
	a.wmu.Lock()
	in := &input{pdata: bufs, locked: true}
	err := a.fire(Evt9, in)
	a.wmu.Unlock()
	if cap(bufs) > cap(a.sendIov) {
		a.sendIov = bufs[:0]
	}
	if err != nil {
		return a.endedErr()
	}
	return in.err
}

// readDataSet parses a small data set (an identifier, an event report) from a message, within the limit.
func (a *Association) readDataSet(m *message, limit int) (*dicom.DataSet, error) {
	if m.data == nil {
		return nil, errors.New("dimse: no data set")
	}
	defer m.data.close()
	lr := &io.LimitedReader{R: m.data.pr, N: int64(limit) + 1}
	br := bufio.NewReader(lr)
	ds, err := parseDataSet(br, m.pc.TransferSyntaxes[0], limit)
	if lr.N <= 0 {
		return nil, fmt.Errorf("dimse: data set longer than %d bytes", limit)
	}
	if err != nil {
		return nil, err
	}
	return ds, nil
}
