package supervisor

// Held is the number of calls the pool's workers hold (sent, not answered): a test waits on
// it to know its calls reached the worker, not the backlog.
func Held(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := range p.workers {
		w.mu.Lock()
		n += w.ledger.len()
		w.mu.Unlock()
	}
	return n
}
