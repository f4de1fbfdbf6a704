//go:build !linux

package readiness

import (
	"context"
	"fmt"
	"log"
	"runtime"
)

// Serve would run the echo server of model ("select" or "poll") until ctx
// ends; the servers are written for Linux only.
func Serve(ctx context.Context, model, addr string, lg *log.Logger, ready func(addr string)) error {
	return fmt.Errorf("readiness: the %s model is implemented on Linux only, not on %s", model, runtime.GOOS)
}
