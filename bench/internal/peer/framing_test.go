package peer

import (
	"encoding/binary"
	"errors"
	"testing"
)

func frame(body string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestWholeFrame(t *testing.T) {
	b := append(append(frame("abc"), frame("")...), frame("defg")[:5]...)
	n, err := Frame.Whole(b, 10)
	if n != 7+4 || err != nil {
		t.Errorf("Whole = %d, %v; want 11, nil", n, err)
	}
	if got := Frame.Need(b[n:], 10); got != 8 {
		t.Errorf("Need = %d, want 8", got)
	}
	n, err = Frame.Whole(append(frame("abc"), frame("01234567890")...), 10)
	if n != 7 || !errors.Is(err, ErrTooLong) {
		t.Errorf("over the limit: Whole = %d, %v; want 7, ErrTooLong", n, err)
	}
	if n, err = Frame.Whole(frame("0123456789"), 10); n != 14 || err != nil {
		t.Errorf("at the limit: Whole = %d, %v", n, err)
	}
}

func TestWholeLine(t *testing.T) {
	n, err := Line.Whole([]byte("ab\r\n\ncd"), 10)
	if n != 5 || err != nil {
		t.Errorf("Whole = %d, %v; want 5, nil", n, err)
	}
	if n, err = Line.Whole([]byte("012345678\n"), 10); n != 10 || err != nil {
		t.Errorf("at the limit: Whole = %d, %v", n, err)
	}
	if n, err = Line.Whole([]byte("ok\n0123456789\n"), 10); n != 3 || !errors.Is(err, ErrTooLong) {
		t.Errorf("over the limit: Whole = %d, %v", n, err)
	}
	if n, err = Line.Whole([]byte("0123456789"), 10); n != 0 || !errors.Is(err, ErrTooLong) {
		t.Errorf("over the limit, no newline yet: Whole = %d, %v", n, err)
	}
	if n, err = Line.Whole([]byte("012345678"), 10); n != 0 || err != nil {
		t.Errorf("partial under the limit: Whole = %d, %v", n, err)
	}
}
