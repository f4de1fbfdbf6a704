package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"

	"cport.dev/cport/chat"
)

// The filter passes on the good clients' messages, byte for byte,
// whatever the reads cut them into, and drops the abusers': empty
// messages, probes from abuseSender, data from senders beyond the good
// ones. A damaged message, and one longer than its buffer, are passed on
// for the checker to see.
func TestForeignFilter(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			const senders, size, bufSize = 4, 64, 512
			cd, err := newCodec(f, size)
			if err != nil {
				t.Fatal(err)
			}
			probes, _ := newCodec(f, MinSize(f))
			empty := []byte{0, 0, 0, 0}
			long := binary.BigEndian.AppendUint32(nil, 2*bufSize)
			long = append(long, bytes.Repeat([]byte{'z'}, 2*bufSize)...)
			damaged := cd.append(nil, header{kind: kindData, sender: 1, seq: 9})
			if f == chat.Line {
				empty = []byte{'\n'}
				long = append(bytes.Repeat([]byte{'z'}, 2*bufSize), '\n')
				damaged[10] = 'X'
			} else {
				damaged[14] = 'X'
			}
			var in, want []byte
			foreign := 0
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 2000 {
				var m []byte
				keep := true
				switch rng.IntN(8) {
				case 0:
					m, keep = empty, false
				case 1:
					m, keep = probes.append(nil, header{kind: kindProbe, sender: abuseSender, seq: uint64(i)}), false
				case 2:
					m, keep = cd.append(nil, header{kind: kindData, sender: senders + uint32(i)}), false
				case 3:
					m = cd.append(nil, header{kind: kindProbe, sender: uint32(i)}) // a registration probe
				case 4:
					m = damaged
				case 5:
					if i%50 == 0 {
						m = long
						break
					}
					fallthrough
				default:
					m = cd.append(nil, header{kind: kindData, sender: uint32(i % senders), seq: uint64(i)})
				}
				in = append(in, m...)
				if keep {
					want = append(want, m...)
				} else {
					foreign++
				}
			}

			client, server := net.Pipe()
			go func() {
				for rest := in; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(300))
					server.Write(rest[:n])
					rest = rest[n:]
				}
				server.Close()
			}()
			var dropped atomic.Int64
			ff := newForeignFilter(client, cd, senders, bufSize, &dropped)
			var got []byte
			p := make([]byte, 1000)
			rd := rand.New(rand.NewPCG(3, 4))
			for {
				n, err := ff.Read(p[:1+rd.IntN(len(p))])
				got = append(got, p[:n]...)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					t.Fatal("Read returned nothing and no error")
				}
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Fatalf("passed on %d bytes, want %d; first difference at %d", len(got), len(want), i)
			}
			if dropped.Load() != int64(foreign) {
				t.Errorf("dropped %d messages; want %d", dropped.Load(), foreign)
			}
		})
	}
}

// lostByPhase counts each sequence number a checker never saw in the
// phase it was sent in.
func TestLostByPhase(t *testing.T) {
	k := newChecker(2)
	// Sender 0 sent 30: 0-9 in phase 0, 10-19 in phase 1, 20-29 in phase 2.
	// Seen: 0-4, 8-14, 16-21: lost 5-7 (phase 0), 15 (1), 22-29 (2).
	for _, r := range [][2]uint64{{0, 5}, {8, 15}, {16, 22}} {
		for s := r[0]; s < r[1]; s++ {
			k.see(0, s)
		}
	}
	// Sender 1 sent 6, in phase 2 only; none seen.
	bounds := [][]uint64{{0, 0}, {10, 0}, {20, 0}}
	limit := []uint64{30, 6}
	lost := make([]int64, 3)
	lostByPhase(&k, bounds, limit, lost)
	if want := []int64{3, 1, 8 + 6}; !equalInts(lost, want) {
		t.Errorf("lost by phase %v; want %v", lost, want)
	}
	if total := k.missing(limit); total != 3+1+14 {
		t.Errorf("missing %d; want the same total, 18", total)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
