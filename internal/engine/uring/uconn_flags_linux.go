package uring

// uconnFlags is a uconn's flags, one bit each, all the loop's: a bit set
// rather than a bool each keeps the struct, which every idle connection
// costs, in the 48-byte size class of Go's allocator.
type uconnFlags uint16

const (
	// fRecvOn: a receive is in the kernel.
	fRecvOn uconnFlags = 1 << iota
	// fCanceled: the cancel of everything has been submitted.
	fCanceled
	// fCancelOn: its CQE is still to come.
	fCancelOn
	// fClosing: closed by the user; finish once quiet.
	fClosing
	// fReset: closed with a reset: SO_LINGER {1, 0} just before the close.
	fReset
	// fShutWant: Shutdown asked while a send was in the kernel: shut down
	// at its CQE.
	fShutWant
	// fSendNext: in again, its next send started at the round's end; the
	// write is the loop's meanwhile, as if in the kernel.
	fSendNext
	// fShutDone: the writing side is shut down.
	fShutDone
	// fStarving: in starved.
	fStarving
	// fBroken: a send failed; the socket was shut down.
	fBroken
	// fRecvDrop: the receive in the kernel has ended for the owner
	// (endRecv, an injected failure): it is canceled, and what it brings
	// dropped.
	fRecvDrop
	// fDropOn: the cancel of that receive (fRecvDrop or fRecvStop) is in
	// the kernel.
	fDropOn
	// fRecvStop: the multishot receive in the kernel is canceled because
	// the owner is full (RecvState.Full): what it brings until its last CQE
	// is still delivered.
	fRecvStop
)

// has reports whether any of the flags f is set.
func (s uconnFlags) has(f uconnFlags) bool { return s&f != 0 }

// set sets the flags f.
func (s *uconnFlags) set(f uconnFlags) { *s |= f }

// clear clears the flags f.
func (s *uconnFlags) clear(f uconnFlags) { *s &^= f }
