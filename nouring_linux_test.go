package cport

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// withoutIOURingEnv marks the child process of WithoutIOURing; its value is
// the name of the test the child runs.
const withoutIOURingEnv = "CPORT_TEST_WITHOUT_IO_URING"

// WithoutIOURing runs the rest of the calling test in a process where
// io_uring_setup fails with EPERM, as it does under a container's seccomp
// profile or kernel.io_uring_disabled. The test calls it first and returns
// at once when it returns false:
//
//	if !cport.WithoutIOURing(t) {
//		return
//	}
//
// In the test's own process it runs the test again in a child process and
// fails t, with the child's output, if the child fails; it skips t if the
// child skipped; and it returns false. In the child it installs a seccomp
// filter on every thread of the process (they cannot be taken back), checks
// that io_uring_setup now fails with EPERM, and returns true.
func WithoutIOURing(t *testing.T) (child bool) {
	t.Helper()
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		t.Skipf("no seccomp filter for GOARCH %s", runtime.GOARCH)
	}
	if os.Getenv(withoutIOURingEnv) == t.Name() {
		refuseIOURing(t, arch)
		return true
	}
	args := []string{"-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), withoutIOURingEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("%s without io_uring, in a child process: %v\n%s", t.Name(), err, out)
	case bytes.Contains(out, []byte("--- SKIP: "+t.Name()+" ")):
		t.Skipf("skipped without io_uring, in a child process:\n%s", out)
	case !bytes.Contains(out, []byte("--- PASS: "+t.Name()+" ")):
		t.Fatalf("%s without io_uring, in a child process: the test did not run\n%s", t.Name(), out)
	case testing.Verbose():
		t.Logf("without io_uring, in a child process:\n%s", out)
	}
	return false
}

// auditArch is the AUDIT_ARCH_ value of seccomp_data.arch for the
// architectures the filter knows.
var auditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}

// refuseIOURing installs, on every thread of the process, a seccomp filter
// that fails io_uring_setup with EPERM for system calls of arch (another
// architecture's, such as 32-bit calls on amd64, pass unfiltered), and
// checks that it does.
func refuseIOURing(t *testing.T, arch uint32) {
	t.Helper()
	// struct seccomp_data: int nr; __u32 arch; ...
	const offNr, offArch = 0, 4
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 0, Jf: 3},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_IO_URING_SETUP, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// no_new_privs is per thread, and the filter is installed by the
	// thread that has it; TSYNC then puts both on every other thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl(PR_SET_NO_NEW_PRIVS): %v", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		t.Fatalf("seccomp(SET_MODE_FILTER, TSYNC): %v", errno)
	}
	if r != 0 {
		t.Fatalf("seccomp(SET_MODE_FILTER, TSYNC): thread %d could not take the filter", r)
	}
	var params [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0)
	if errno == 0 {
		unix.Close(int(fd))
	}
	if !errors.Is(errno, unix.EPERM) {
		t.Fatalf("io_uring_setup under the seccomp filter: errno %v; want EPERM", errno)
	}
}
