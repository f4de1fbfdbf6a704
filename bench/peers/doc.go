// Package peers holds the peer servers of the benchmark, one main package
// each, all speaking the chat relay of PROTOCOL.md (frame and line framing):
//
//   - netpeer: Go's net, a reader and a writer goroutine per connection;
//   - gnetpeer: gnet v2 event loops;
//   - nbiopeer: nbio's Engine;
//   - wspeer: the relay for WebSocket clients (cport serve's --ws-addr
//     gateway) on github.com/coder/websocket, a reader and a writer
//     goroutine per connection, for the WebSocket scenario;
//   - cportecho: an echo server on the cport library, for the echo
//     scenario only (the peers have --mode echo for it).
//
// The tests of this package build them and check the protocol over loopback.
package peers
