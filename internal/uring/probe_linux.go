package uring

import (
	"fmt"
	"unsafe"
)

// probeOp mirrors struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16 // IO_URING_OP_SUPPORTED
	resv2 uint32
}

// probeBuf mirrors struct io_uring_probe followed by room for every opcode.
type probeBuf struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [maxProbeOps]probeOp
}

// Probe is the set of opcodes the running kernel supports.
type Probe struct {
	lastOp    uint8
	supported [maxProbeOps / 64]uint64
}

// Probe asks the kernel which IORING_OP_* opcodes it supports
// (IORING_REGISTER_PROBE, 5.6+; io_uring_register(2)).
func (r *Ring) Probe() (*Probe, error) {
	b := new(probeBuf)
	if _, err := sysRegister(r.fd, IORING_REGISTER_PROBE, unsafe.Pointer(b), maxProbeOps); err != nil {
		return nil, fmt.Errorf("io_uring_register(IORING_REGISTER_PROBE): %w", err)
	}
	p := &Probe{lastOp: b.lastOp}
	for _, o := range b.ops[:b.opsLen] {
		if o.flags&IO_URING_OP_SUPPORTED != 0 {
			p.supported[o.op/64] |= 1 << (o.op % 64)
		}
	}
	return p, nil
}

// Supports reports whether opcode op (IORING_OP_*) is supported.
func (p *Probe) Supports(op uint8) bool { return p.supported[op/64]&(1<<(op%64)) != 0 }

// LastOp returns the highest opcode the kernel knows.
func (p *Probe) LastOp() uint8 { return p.lastOp }
