package jetstream

// PauseFlusher keeps c from sending tasks until release is called: the tasks submitted
// meanwhile go together, in batches of Config.MaxBatch.
func PauseFlusher(c *Client) (release func()) {
	c.pause.Lock()
	return c.pause.Unlock
}
