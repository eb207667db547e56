//go:build unix && !linux

package child

// groupOthers cannot list a group's members here: the ladder waits the whole grace.
func groupOthers() ([]int, bool) { return nil, false }
