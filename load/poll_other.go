//go:build !linux

package load

// pollers are the poll loops of a run: on Linux only (see poll_linux.go).
// Elsewhere every receiver has a goroutine.
type pollers struct{}

// add reports that c needs a reader goroutine.
func (p *pollers) add(r *run, c *client) bool { return false }

// stop does nothing: there are no loops.
func (p *pollers) stop() {}

// ctlWrite writes b, a control frame, from c's receive side.
func (c *client) ctlWrite(b []byte) error {
	_, err := c.conn.Write(b)
	return err
}
