package load

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSampleProc samples this process: its numbers must be there, in the
// right units, and a process that cannot exist must fail to be sampled.
func TestSampleProc(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "windows" {
		_, err := sampleProc(os.Getpid())
		if err == nil || !strings.Contains(err.Error(), "Linux and Windows") {
			t.Fatalf("sampleProc on %s: err %v, want one saying it works on Linux and Windows only", runtime.GOOS, err)
		}
		return
	}

	// Resident memory in bytes: at least what this test touches.
	const touched = 32 << 20
	mem := make([]byte, touched)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	s0, err := sampleProc(os.Getpid())
	runtime.KeepAlive(mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("this process: %+v", s0)
	if s0.rss < touched || s0.threads <= 0 || s0.user < 0 || s0.system < 0 {
		t.Errorf("sample of this process: %+v; want rss of at least %d bytes (touched), threads, CPU times", s0, touched)
	}

	// CPU time in its units: burn until it has advanced by 50ms, which must
	// take less than 2s, and no less wall time than 50ms spread over every
	// CPU (the clocks tick in 10ms on Linux, 15.6ms on Windows: allow for
	// two ticks).
	const burn, tick = 50 * time.Millisecond, 16 * time.Millisecond
	start := time.Now()
	s1 := s0
	for s1.cpu()-s0.cpu() < burn {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("CPU time went from %v to %v in %v of busy loop; want it to advance by %v", s0.cpu(), s1.cpu(), time.Since(start), burn)
		}
		for t0 := time.Now(); time.Since(t0) < 5*time.Millisecond; {
		}
		if s1, err = sampleProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	wall := time.Since(start)
	if used, limit := s1.cpu()-s0.cpu(), wall*time.Duration(runtime.NumCPU())+2*tick; used > limit {
		t.Errorf("CPU time advanced by %v in %v on %d CPUs; want at most %v", used, wall, runtime.NumCPU(), limit)
	}

	// A process that cannot exist: an error that names it.
	const pid = 1 << 30
	if s, err := sampleProc(pid); err == nil {
		t.Errorf("sampled process %d, which cannot exist: %+v", pid, s)
	} else if !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Errorf("sampling process %d: error %q does not name it", pid, err)
	}
}
