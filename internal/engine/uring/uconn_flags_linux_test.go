package uring

import "testing"

// TestUconnFlags checks that each flag is a bit of its own and that
// setting and clearing it touch that bit only.
func TestUconnFlags(t *testing.T) {
	all := []uconnFlags{fRecvOn, fCanceled, fCancelOn, fClosing, fReset, fShutWant,
		fSendNext, fShutDone, fStarving, fBroken, fRecvDrop, fDropOn, fRecvStop}
	var seen uconnFlags
	for _, f := range all {
		if f == 0 || f&(f-1) != 0 || seen.has(f) {
			t.Fatalf("flag %#x: not a bit of its own (seen %#x)", f, seen)
		}
		seen.set(f)
	}
	for _, f := range all {
		s := ^f // every other flag set
		s.set(f)
		if !s.has(f) || s != ^uconnFlags(0) {
			t.Errorf("set(%#x) gave %#x", f, s)
		}
		s.clear(f)
		if s.has(f) || s != ^f {
			t.Errorf("clear(%#x) gave %#x", f, s)
		}
	}
}
