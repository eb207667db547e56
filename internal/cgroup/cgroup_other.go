//go:build !linux

package cgroup

import (
	"errors"
	"os"
	"time"
)

const Off = "SUPERVISE_CGROUP"

var errNotLinux = errors.New("cgroups are Linux's")

// NewPool fails: cgroups are Linux's.
func NewPool() (*Pool, error) { return nil, errNotLinux }

type Pool struct{}

func (p *Pool) Layout() string             { return "" }
func (p *Pool) Dir() string                { return "" }
func (p *Pool) Leaf(string) (*Leaf, error) { return nil, errNotLinux }
func (p *Pool) Enable(Limits) error        { return errNotLinux }
func (p *Pool) V1() map[string]string      { return nil }

// Limits are the kernel's limits on a worker's cgroup (see limits_linux.go).
type Limits struct {
	Memory uint64
	Procs  int
	CPU    float64
}

func (p *Pool) Destroy(time.Duration) error { return nil }

type Leaf struct{}

func (l *Leaf) Dir() string                         { return "" }
func (l *Leaf) Open() (*os.File, error)             { return nil, errNotLinux }
func (l *Leaf) Kill() error                         { return errNotLinux }
func (l *Leaf) Destroy(time.Duration) error         { return nil }
func (l *Leaf) Retire(time.Duration) (Usage, error) { return Usage{}, nil }

type Usage struct {
	CPU      time.Duration
	Peak     uint64
	OOMKills int
}

func (l *Leaf) Procs() ([]int, error)        { return nil, errNotLinux }
func (l *Leaf) CPU() (time.Duration, error)  { return 0, errNotLinux }
func (l *Leaf) Join(int) error               { return nil }
func (l *Leaf) Memory() (uint64, int, error) { return 0, 0, errNotLinux }
func (l *Leaf) MemoryLimited() bool          { return false }

// DestroyDir does nothing: there is no cgroup.
func DestroyDir(string, time.Duration) error { return nil }

// Usable says why not: cgroups are Linux's.
func Usable() error { return errNotLinux }
