package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestPatientNoServer: patient says the server may not run whether the
// address refuses or the connect times out (a deadline cutting a try
// short after refusals, as on Windows, or a connect never answered), and
// leaves other errors, a TLS handshake's timeout among them, as they are.
func TestPatientNoServer(t *testing.T) {
	refusal := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	handshake := errors.New("TLS to 127.0.0.1:1: " + context.DeadlineExceeded.Error())
	for _, tt := range []struct {
		name   string
		errs   []error // what the dials return, in turn
		want   []string
		reason error // errors.Is of the result
	}{
		{"refused, then timed out", []error{refusal, refusal, timeout}, []string{"connection refused: is the server running? (tried for "}, syscall.ECONNREFUSED},
		{"timed out", []error{timeout}, []string{"i/o timeout: is the server running? (tried for "}, os.ErrDeadlineExceeded},
		{"other", []error{handshake}, []string{handshake.Error()}, nil},
	} {
		var dials int
		dial := func(ctx context.Context, addr string) (net.Conn, error) {
			err := tt.errs[min(dials, len(tt.errs)-1)]
			dials++
			return nil, err
		}
		_, err := patient(dial, nil)(context.Background(), "127.0.0.1:1")
		if err == nil {
			t.Fatalf("%s: no error", tt.name)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q; want it to say %q", tt.name, err, w)
			}
		}
		if tt.reason != nil && !errors.Is(err, tt.reason) {
			t.Errorf("%s: %q does not wrap %v", tt.name, err, tt.reason)
		}
		if tt.reason == nil && strings.Contains(err.Error(), "is the server running?") {
			t.Errorf("%s: %q asks whether the server runs: it answered", tt.name, err)
		}
		if dials != len(tt.errs) {
			t.Errorf("%s: %d dials, want %d", tt.name, dials, len(tt.errs))
		}
	}
}
