package load

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// getProcessMemoryInfo is K32GetProcessMemoryInfo, GetProcessMemoryInfo of
// psapi.dll as kernel32.dll exports it since Windows 7; x/sys/windows has no
// wrapper for it.
var getProcessMemoryInfo = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

// processMemoryCounters is PROCESS_MEMORY_COUNTERS of psapi.h.
type processMemoryCounters struct {
	cb                         uint32 // the size of the struct, in bytes
	pageFaultCount             uint32
	peakWorkingSetSize         uintptr
	workingSetSize             uintptr
	quotaPeakPagedPoolUsage    uintptr
	quotaPagedPoolUsage        uintptr
	quotaPeakNonPagedPoolUsage uintptr
	quotaNonPagedPoolUsage     uintptr
	pagefileUsage              uintptr
	peakPagefileUsage          uintptr
}

// sampleProc asks Windows about process pid: its CPU times
// (GetProcessTimes), its working set, the analogue of the resident set
// (K32GetProcessMemoryInfo), and its threads (a CreateToolhelp32Snapshot of
// the system's threads). It needs no more access to the process than
// PROCESS_QUERY_LIMITED_INFORMATION.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	if pid <= 0 || uint64(pid) > math.MaxUint32 {
		return s, fmt.Errorf("process %d: not a Windows process id", pid)
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return s, fmt.Errorf("process %d: OpenProcess: %w", pid, err)
	}
	defer windows.CloseHandle(h)

	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return s, fmt.Errorf("process %d: GetProcessTimes: %w", pid, err)
	}
	s.user, s.system = filetimeDuration(user), filetimeDuration(kernel)

	if err := getProcessMemoryInfo.Find(); err != nil {
		return s, fmt.Errorf("process %d: %w", pid, err)
	}
	mem := processMemoryCounters{cb: uint32(unsafe.Sizeof(processMemoryCounters{}))}
	ok, _, err := getProcessMemoryInfo.Call(uintptr(h), uintptr(unsafe.Pointer(&mem)), uintptr(mem.cb))
	if ok == 0 {
		return s, fmt.Errorf("process %d: K32GetProcessMemoryInfo: %w", pid, err)
	}
	s.rss = int64(mem.workingSetSize)

	s.threads, err = countThreads(uint32(pid))
	if err != nil {
		return s, fmt.Errorf("process %d: %w", pid, err)
	}
	return s, nil
}

// filetimeDuration converts a FILETIME that holds a duration, as
// GetProcessTimes's kernel and user times do, from its 100 ns units.
func filetimeDuration(ft windows.Filetime) time.Duration {
	return time.Duration(int64(ft.HighDateTime)<<32|int64(ft.LowDateTime)) * 100
}

// countThreads counts the threads of process pid in a snapshot of every
// thread of the system: TH32CS_SNAPTHREAD ignores the process id it is given.
func countThreads(pid uint32) (int, error) {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return 0, fmt.Errorf("CreateToolhelp32Snapshot: %w", err)
	}
	defer windows.CloseHandle(snap)

	n := 0
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	call, err := "Thread32First", windows.Thread32First(snap, &te)
	for err == nil {
		if te.OwnerProcessID == pid {
			n++
		}
		call, err = "Thread32Next", windows.Thread32Next(snap, &te)
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return 0, fmt.Errorf("%s: %w", call, err)
	}
	return n, nil
}

// acceptQueued returns -1: accept queues are read on Linux only.
func acceptQueued(port int) int { return -1 }
