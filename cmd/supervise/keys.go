package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// serveKeys checks serve's public keys (--nkey, --submitter-nkey, --machine-nkey) and, with
// --keys DIR, adds a key of each role from DIR (issued there the first time). It returns the
// lines that tell where the issued seeds are.
func serveKeys(admins []string, roles *jetstream.Roles, dir string) (issued []string, err error) {
	for _, f := range []struct {
		flag string
		keys []string
	}{{"--nkey", admins}, {"--submitter-nkey", roles.Submitters}, {"--machine-nkey", roles.Machines}} {
		for _, k := range f.keys {
			if !nkeys.IsValidPublicUserKey(k) {
				return nil, fmt.Errorf("%s %q: not an nkey user public key (U followed by 55 characters; nk -gen user -pubout makes a pair)", f.flag, k)
			}
		}
	}
	if dir == "" {
		return nil, nil
	}
	for _, role := range []struct {
		name string
		to   *[]string
	}{{"submitter", &roles.Submitters}, {"machine", &roles.Machines}} {
		pub, seed, err := roleKey(dir, role.name)
		if err != nil {
			return nil, fmt.Errorf("--keys: %w", err)
		}
		*role.to = append(*role.to, pub)
		issued = append(issued, fmt.Sprintf("supervise: %ss sign in with --nkey-seed %s\n", role.name, seed))
	}
	return issued, nil
}

// roleKey returns the public key of the nkey user whose seed is in dir/role.nk, creating the
// pair first (the seed readable by its owner only, the public key beside it in role.pub) when
// there is none: serve --keys issues each role its credentials.
func roleKey(dir, role string) (pub, seedFile string, err error) {
	seedFile = filepath.Join(dir, role+".nk")
	seed, err := os.ReadFile(seedFile)
	if errors.Is(err, fs.ErrNotExist) {
		return newRoleKey(dir, role, seedFile)
	}
	if err != nil {
		return "", "", err
	}
	user, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", "", fmt.Errorf("%s: not an nkey seed: %w", seedFile, err)
	}
	pub, err = user.PublicKey()
	return pub, seedFile, err
}

func newRoleKey(dir, role, seedFile string) (string, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		return "", "", err
	}
	seed, _ := user.Seed()
	pub, _ := user.PublicKey()
	f, err := os.OpenFile(seedFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", err
	}
	_, err = f.Write(seed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, role+".pub"), []byte(pub+"\n"), 0o644)
	}
	return pub, seedFile, err
}
