package jetstream

// PauseFlusher keeps c from sending tasks until release is called: the tasks submitted
// meanwhile go together, in batches of Config.MaxBatch.
func PauseFlusher(c *Client) (release func()) {
	c.pause.Lock()
	return c.pause.Unlock
}

// DiedNoted reports whether a machine's note that a worker died under task id reached c.
func DiedNoted(c *Client, id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[id]
	return p != nil && p.died != nil
}
