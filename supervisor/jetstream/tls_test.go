package jetstream_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// selfSigned makes a certificate for 127.0.0.1 and writes it, as the CA a client trusts, to a
// file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca
}

// A server with TLS and nkey users: a client that trusts its CA and signs with a user's seed
// gets in over tls://; a plain-text client and one without the seed do not.
func TestServerTLSAndNKeys(t *testing.T) {
	cert, ca := selfSigned(t)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{Listen: "127.0.0.1:0", NKeys: []string{pub},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	addr := u.Host
	seedOpt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("tls://"+addr, nats.RootCAs(ca), seedOpt)
	if err != nil {
		t.Fatalf("TLS client with the seed: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connected without TLS")
	}
	nc.Close()
	if nc, err := nats.Connect("tls://"+addr, nats.RootCAs(ca)); err == nil {
		nc.Close()
		t.Error("a TLS client without the seed got in")
	}
	if nc, err := nats.Connect("nats://"+addr, seedOpt, nats.Secure(&tls.Config{InsecureSkipVerify: false, RootCAs: x509.NewCertPool()})); err == nil {
		nc.Close()
		t.Error("a client that does not trust the server's certificate got in")
	}
}
