package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

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
