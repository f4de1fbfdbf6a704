package load

import (
	"os"
	"testing"
)

func TestSampleProc(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rss <= 0 || s.threads <= 0 || s.user < 0 || s.system < 0 {
		t.Errorf("sample of this process: %+v", s)
	}
	if _, err := sampleProc(1 << 30); err == nil {
		t.Error("sampled a process that cannot exist")
	}
}
