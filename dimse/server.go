package dimse

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultMaxAssociations is the number of associations a Server runs at once when MaxAssociations is zero.
const DefaultMaxAssociations = 100

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("dimse: server closed")

// Server accepts associations and performs the services of its Handlers (PS3.7, PS3.8 as acceptor). Set the fields,
// then call Serve; do not change them afterwards.
type Server struct {
	// AETitle is the called AE title we answer to; another is rejected (called-AE-title-not-recognized). Empty
	// accepts any.
	AETitle  string
	Handlers Handlers
	// MaxAssociations bounds the associations negotiated or established at once; past it an A-ASSOCIATE-RQ is
	// answered A-ASSOCIATE-RJ rejected-transient, local-limit-exceeded (PS3.8 Table 9-21). Connections still waiting
	// for their A-ASSOCIATE-RQ are bounded too (twice as many, plus 16), past which they are closed at once.
	MaxAssociations int
	// MaxPDULength is the maximum P-DATA-TF length we announce and accept (PS3.8 D.1); a longer PDU is answered with
	// A-ABORT. Zero means DefaultMaxPDULength.
	MaxPDULength uint32
	// ARTIM bounds the wait for an A-ASSOCIATE-RQ after connect and for the peer to close after a reject, release or
	// abort (PS3.8 9.1.5). Zero means DefaultARTIM.
	ARTIM time.Duration
	// IdleTimeout aborts an established association on which nothing arrives for this long while no operation is in
	// progress. Zero means no limit.
	IdleTimeout time.Duration
	// AcceptAE decides, after the called AE title was checked, whether a peer may associate (for example from an AE
	// registry: known calling AE title, from its registered address, with a client certificate bound to it).
	// Nil accepts every peer.
	AcceptAE func(p Peer) (ok bool, reject Reject)
	// AcceptStorage tells which SOP classes (ts "") and transfer syntaxes the Store handler takes. Nil means
	// IsStorage and StorageTransferSyntax.
	AcceptStorage func(sopClass, transferSyntax string) bool
	// TLSConfig, when set, makes Serve speak DICOM TLS (PS3.15 B.1) on the listener it is given.
	TLSConfig *tls.Config
	// Dialer opens the associations of C-MOVE sub-operations and of storage commitment reports sent on a new
	// association. Nil means a Dialer with this server's limits and logger.
	Dialer *Dialer
	// ClientTLSConfig is used for those associations when MoveDestination answers a "tls://HOST:PORT" address: our
	// certificate (for peers that require one) and the CAs we trust. Nil refuses TLS destinations.
	ClientTLSConfig *tls.Config
	// Logger receives association events: Info for establishment, release and rejection, Warn for aborts and
	// protocol errors, Debug for messages. Nil discards them.
	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	assocs    map[*Association]struct{}
	conns     int // connections being served
	active    int // associations admitted (negotiated or established)
	closing   bool
	wg        sync.WaitGroup
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s.Logger
}

func (s *Server) maxAssociations() int {
	if s.MaxAssociations > 0 {
		return s.MaxAssociations
	}
	return DefaultMaxAssociations
}

// Serve accepts connections on ln and serves each on its own goroutine, until Shutdown or Close (then it returns
// ErrServerClosed) or until Accept fails.
func (s *Server) Serve(ln net.Listener) error {
	if s.TLSConfig != nil {
		ln = tls.NewListener(ln, s.TLSConfig)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.assocs = map[*Association]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	delay := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.closing || s.conns >= 2*s.maxAssociations()+16 {
			s.mu.Unlock()
			s.logger().Warn("dimse connection refused: too many connections", "remote", conn.RemoteAddr())
			conn.Close()
			continue
		}
		s.conns++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// serveConn runs one association as acceptor: Evt5 (transport connection indication), then the reader loop.
func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	a := newAssociation(false, s.logger().With("remote", conn.RemoteAddr().String()), s.ARTIM, s.IdleTimeout, s.MaxPDULength)
	a.conn = conn
	a.br = bufio.NewReaderSize(connReader{a}, 64<<10)
	a.peer.Addr = conn.RemoteAddr()
	a.negotiate = s.negotiate
	a.handlers = &s.Handlers
	a.server = s
	s.mu.Lock()
	s.assocs[a] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.assocs, a)
		s.conns--
		s.mu.Unlock()
	}()
	_ = a.fire(Evt5, &input{})
	a.readLoop()
	a.terminate(nil)
	a.svc.Wait()
}

// admit counts an association against MaxAssociations, and fills the peer's TLS state.
func (s *Server) admit(a *Association) bool {
	if tc, ok := a.conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		a.peer.TLS = &st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.active >= s.maxAssociations() {
		return false
	}
	s.active++
	a.onEnd = func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}
	return true
}

// Shutdown stops accepting connections, closes those that have not associated, and waits for the established
// associations to be released by their peers. When ctx ends first, it aborts them and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for a := range s.assocs {
		if a.State() == Sta2 {
			a.terminate(ErrServerClosed)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting connections and aborts every association at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	all := make([]*Association, 0, len(s.assocs))
	for a := range s.assocs {
		all = append(all, a)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Abort()
		}()
	}
	wg.Wait()
	return nil
}

// dialer returns the Dialer for associations the server opens itself.
func (s *Server) dialer() *Dialer {
	if s.Dialer != nil {
		return s.Dialer
	}
	return &Dialer{MaxPDULength: s.MaxPDULength, ARTIM: s.ARTIM, IdleTimeout: s.IdleTimeout, Logger: s.Logger}
}

// outgoing returns the Dialer and the address for an association the server opens to addr, as MoveDestination
// gave it: "tls://HOST:PORT" speaks DICOM TLS with ClientTLSConfig.
func (a *Association) outgoing(addr string) (*Dialer, string, error) {
	d := &Dialer{Logger: a.log}
	var conf *tls.Config
	if a.server != nil {
		d, conf = a.server.dialer(), a.server.ClientTLSConfig
	}
	rest, isTLS := strings.CutPrefix(addr, "tls://")
	if !isTLS {
		return d, addr, nil
	}
	if conf == nil {
		return nil, "", fmt.Errorf("%s is reached over DICOM TLS, but no TLS configuration is set for associations this server opens", rest)
	}
	dt := *d
	dt.TLSConfig = conf
	return &dt, rest, nil
}
