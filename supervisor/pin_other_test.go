//go:build !linux

package supervisor_test

import "errors"

func pinToCPU(int) error { return errors.ErrUnsupported }
