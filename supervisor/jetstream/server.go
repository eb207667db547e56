package jetstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ServerConfig describes an embedded JetStream server. The zero value is a server in memory
// of this process only (no port, no store): the same code as a cluster, on one machine.
type ServerConfig struct {
	// StoreDir is where JetStream keeps its streams: a server restarted on the same directory
	// has every task and result it had. Empty: in memory, lost with the process.
	StoreDir string
	// Listen is the host:port clients connect to (port 0: any free one; see URL). Empty: no port at all; only Server.Connect
	// reaches the server (in-process). A host other than a loopback address needs Token or
	// NKeys.
	Listen string
	// Token, when set, is the secret every client must present (nats://TOKEN@host:port).
	Token string
	// NKeys are the public keys (U...) of the users allowed in; each signs in with its seed.
	NKeys []string
	// Roles, when set, let submitters and machines in with credentials of their own role,
	// each allowed only what it needs (see Roles). Token and NKeys stay all-powerful.
	Roles Roles
	// TLS, when set, serves TLS (clients connect with tls://). See server.GenTLSConfig.
	TLS *tls.Config
	// MaxPayload is the largest message the server accepts; zero means 8 MiB.
	MaxPayload int32
	// Logger receives the server's log; nil: slog.Default(), warnings and errors only.
	Logger *slog.Logger
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns       *server.Server
	url      string
	tmp      string        // the store of a server without StoreDir, removed at Shutdown
	token    string        // ServerConfig.Token
	observer nkeys.KeyPair // where the server has nkeys: a user that may only watch (ConnectObserver)
}

// ErrNoCredentials: a server asked to listen beyond loopback without a token or nkey.
var ErrNoCredentials = errors.New("a server listening beyond loopback needs credentials (a token or nkeys)")

// StartServer starts an embedded server and waits until it takes connections.
func StartServer(cfg ServerConfig) (*Server, error) {
	roles, err := cfg.Roles.users()
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:         "supervise",
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		MaxPayload:         cfg.MaxPayload,
		NoSigs:             true,
		Authorization:      cfg.Token,
		DontListen:         cfg.Listen == "",
		JetStreamMaxMemory: -1,
		JetStreamMaxStore:  -1,
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 8 << 20
	}
	var tmp string
	if cfg.StoreDir == "" {
		dir, err := os.MkdirTemp("", "supervise-jetstream-")
		if err != nil {
			return nil, err
		}
		tmp, opts.StoreDir = dir, dir
	}
	for _, k := range cfg.NKeys {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: k})
	}
	opts.Nkeys = append(opts.Nkeys, roles...)
	var observer nkeys.KeyPair
	if len(opts.Nkeys) > 0 {
		if observer, err = nkeys.CreateUser(); err != nil {
			return nil, err
		}
		pub, _ := observer.PublicKey()
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Deny: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{Config{Queue: "*"}.statsSubject("*")}},
		}})
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS, opts.TLSVerify = cfg.TLS, true, cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("listen address %q: port %q is not a number", cfg.Listen, port)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT // ":0" means any free port, as in net.Listen
		}
		opts.Host = host
		if !isLoopback(host) && cfg.Token == "" && len(opts.Nkeys) == 0 {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, ErrNoCredentials)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("jetstream server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(serverLog{log: log.With("component", "nats-server"), fatal: fatal}, false, false, false)
	go ns.Start()
	if err := awaitReady(ns, fatal, 30*time.Second); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(tmp)
		return nil, err
	}
	s := &Server{ns: ns, tmp: tmp, token: cfg.Token, observer: observer}
	if cfg.Listen != "" {
		s.url = ns.ClientURL()
	}
	return s, nil
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL is the address clients connect to ("" for a server without a port).
func (s *Server) URL() string { return s.url }

// Connect connects to the server in-process, without a socket.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("", append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("supervise in-process")}, opts...)...)
}

// ConnectObserver connects to the server in-process as an observer: where the server has
// nkeys, as a user of its own that may only subscribe to the machines' stats
// (WatchMachines); else with the server's token, if it has one.
func (s *Server) ConnectObserver(opts ...nats.Option) (*nats.Conn, error) {
	switch {
	case s.observer != nil:
		pub, _ := s.observer.PublicKey()
		opts = append(opts, nats.Nkey(pub, s.observer.Sign))
	case s.token != "":
		opts = append(opts, nats.Token(s.token))
	}
	return s.Connect(append(opts, nats.Name("supervise observer"))...)
}

// Shutdown stops the server; JetStream flushes its store first.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// awaitReady waits until ns takes connections, or reports why it will not: a fatal error it
// logged (a port in use, a store it cannot use: the server does not exit on those), or within.
func awaitReady(ns *server.Server, fatal <-chan string, within time.Duration) error {
	for deadline := time.Now().Add(within); ; {
		if ns.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
		select {
		case msg := <-fatal:
			return fmt.Errorf("jetstream server: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jetstream server: not ready after %v", within)
		}
	}
}

// serverLog writes the server's log as slog records; the first fatal error also goes to fatal.
type serverLog struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l serverLog) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLog) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
