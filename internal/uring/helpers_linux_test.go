package uring

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hang bounds every wait in the tests. It only turns a lost completion into
// a failure instead of a stuck test binary; no test measures time.
const hang = 60 * time.Second

// setup creates a ring closed at the end of the test. Tests using the default
// flags lock their goroutine to its OS thread first, since with
// IORING_SETUP_SINGLE_ISSUER only the creating thread may enter the ring.
func setup(t testing.TB, entries uint32, opts *Options) *Ring {
	t.Helper()
	r, err := Setup(entries, opts)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
			t.Skipf("io_uring not available: %v", err)
		}
		t.Fatalf("Setup(%d): %v", entries, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// getSQE returns an SQE or fails the test.
func getSQE(t testing.TB, r *Ring) *SQE {
	t.Helper()
	sqe := r.GetSQE()
	if sqe == nil {
		t.Fatal("GetSQE: submission queue full")
	}
	return sqe
}

// wait submits pending SQEs and waits for at least one completion.
func wait(t testing.TB, r *Ring) {
	t.Helper()
	if _, err := r.SubmitAndWaitTimeout(1, hang); err != nil {
		t.Fatalf("SubmitAndWaitTimeout: %v", err)
	}
}

// reap waits until n completions have been reaped and returns them in order.
func reap(t testing.TB, r *Ring, n int) []CQE {
	t.Helper()
	out := make([]CQE, 0, n)
	buf := make([]CQE, 16)
	for len(out) < n {
		wait(t, r)
		k := r.PeekBatch(buf[:min(len(buf), n-len(out))])
		out = append(out, buf[:k]...)
		r.Advance(uint32(k))
	}
	return out
}

// byUserData indexes completions by UserData, failing on duplicates.
func byUserData(t *testing.T, cqes []CQE) map[uint64]CQE {
	t.Helper()
	m := make(map[uint64]CQE, len(cqes))
	for _, c := range cqes {
		if _, dup := m[c.UserData]; dup {
			t.Fatalf("two completions with user_data %d", c.UserData)
		}
		m[c.UserData] = c
	}
	return m
}

// pinnedBytes returns n bytes of Go memory pinned for the rest of the test,
// so that the kernel may hold their address.
func pinnedBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	var p runtime.Pinner
	p.Pin(&b[0])
	t.Cleanup(p.Unpin)
	return b
}

func closeFD(t testing.TB, fd int) {
	t.Cleanup(func() { unix.Close(fd) })
}

// listen opens a blocking TCP listener on 127.0.0.1 and returns it with its
// address.
func listen(t testing.TB) (int, unix.Sockaddr) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeFD(t, fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sa
}

// dial connects a blocking TCP socket to sa.
func dial(t testing.TB, sa unix.Sockaddr) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeFD(t, fd)
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatal(err)
	}
	return fd
}

// tcpPair returns the two ends of a loopback TCP connection, both blocking.
func tcpPair(t testing.TB) (client, server int) {
	t.Helper()
	lfd, sa := listen(t)
	client = dial(t, sa)
	server, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	closeFD(t, server)
	return client, server
}

// writeAll writes b to a blocking fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readFull reads len(b) bytes from a blocking fd.
func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("unexpected EOF")
		}
		b = b[n:]
	}
	return nil
}

// modes are the setup tiers Setup may settle on, depending on the kernel.
var modes = []struct {
	name  string
	flags uint32
}{
	{"default", 0},
	{"coop", IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL},
	{"plain", IORING_SETUP_SUBMIT_ALL},
}

// inModes runs f once per setup tier, each on its own locked OS thread.
func inModes(t *testing.T, f func(t *testing.T, o Options)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			f(t, Options{Flags: m.flags})
		})
	}
}
