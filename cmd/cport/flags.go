package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/chat"
)

// Flag values that check their range as they are set. A value out of
// range, or not of the flag's kind, makes the command exit with status 2
// and one line that names the command, the flag, the range and the value:
//
//	cport serve: --max-message: must be between 1B and 16MiB, got 0
//
// Each value remembers why its Set failed (checked), for parse to say it
// in that voice rather than the flag package's.

// checked is embedded in the flag values of this file: it keeps the error
// of the last Set.
type checked struct{ err error }

// failed returns why the last Set failed, or nil.
func (c *checked) failed() error { return c.err }

// check records err, the outcome of a Set, and returns it.
func (c *checked) check(err error) error {
	c.err = err
	return err
}

// failer is a flag.Value of this file.
type failer interface{ failed() error }

// outOfRange is the error of a value out of its flag's range, said as
// "must be <want>, got <value>".
func outOfRange(want, got string) error {
	return fmt.Errorf("must be %s, got %s", want, got)
}

// span says the range of values from lo to hi; hi empty means no upper
// bound.
func span(lo, hi string) string {
	if hi == "" {
		return lo + " or more"
	}
	return "between " + lo + " and " + hi
}

// noMax is the upper bound of an intFlag or sizeFlag without one.
const noMax = math.MaxInt64

// intFlag is a flag.Value of an integer from min to max (noMax: no upper
// bound), written as flag.Int takes it (base prefixes and _ too); with none,
// "none" too, stored as -1.
type intFlag struct {
	checked
	p        *int
	min, max int64
	none     bool
}

// intVar defines an int flag with default value, from min to max.
func intVar(fs *flag.FlagSet, p *int, name string, value int, min, max int64, usage string) {
	*p = value
	fs.Var(&intFlag{p: p, min: min, max: max}, name, usage)
}

// intNoneVar is intVar where "none" (stored as -1) means no limit.
func intNoneVar(fs *flag.FlagSet, p *int, name string, value int, min, max int64, usage string) {
	*p = value
	fs.Var(&intFlag{p: p, min: min, max: max, none: true}, name, usage)
}

func (f *intFlag) String() string {
	switch {
	case f.p == nil:
		return "0"
	case f.none && *f.p < 0:
		return "none"
	}
	return strconv.Itoa(*f.p)
}

func (f *intFlag) Set(s string) error {
	if f.none && s == "none" {
		*f.p = -1
		return f.check(nil)
	}
	v, err := strconv.ParseInt(s, 0, strconv.IntSize)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return f.check(fmt.Errorf("must be a whole number, got %q", s))
	case err != nil || v < f.min || v > f.max:
		return f.check(outOfRange(f.want(), s))
	}
	*f.p = int(v)
	return f.check(nil)
}

func (f *intFlag) want() string {
	hi := ""
	if f.max != noMax {
		hi = strconv.FormatInt(f.max, 10)
	}
	want := span(strconv.FormatInt(f.min, 10), hi)
	if f.none {
		want += ", or none"
	}
	return want
}

// floatFlag is a flag.Value of a finite number, 0 or more, or more than 0
// if positive.
type floatFlag struct {
	checked
	p        *float64
	positive bool
}

// floatVar defines a float64 flag with default value: 0 or more, or more
// than 0 if positive.
func floatVar(fs *flag.FlagSet, p *float64, name string, value float64, positive bool, usage string) {
	*p = value
	fs.Var(&floatFlag{p: p, positive: positive}, name, usage)
}

func (f *floatFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*f.p, 'g', -1, 64)
}

func (f *floatFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return f.check(fmt.Errorf("must be a number, got %q", s))
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
		return f.check(outOfRange("a finite number", s))
	case f.positive && v <= 0:
		return f.check(outOfRange("more than 0", s))
	case v < 0:
		return f.check(outOfRange("0 or more", s))
	}
	*f.p = v
	return f.check(nil)
}

// durationFlag is a flag.Value of a duration, 0 or more, or more than 0 if
// positive.
type durationFlag struct {
	checked
	p        *time.Duration
	positive bool
}

// durationVar defines a duration flag with default value: 0 or more, or
// more than 0 if positive.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, positive bool, usage string) {
	*p = value
	fs.Var(&durationFlag{p: p, positive: positive}, name, usage)
}

func (f *durationFlag) String() string {
	if f.p == nil {
		return "0s"
	}
	return f.p.String()
}

func (f *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return f.check(fmt.Errorf("must be a duration such as 2s, 500ms or 1m30s, got %q", s))
	case f.positive && v <= 0:
		return f.check(outOfRange("more than 0", s))
	case v < 0:
		return f.check(outOfRange("0 or more", s))
	}
	*f.p = v
	return f.check(nil)
}

// sizeFlag is a flag.Value of a size in bytes from min to max (noMax: no
// upper bound), with or without a unit: 65536, 64KiB, 4MiB, 1.5MB, 64KB or
// 1kB (see parseSize). If none, "none" is also accepted, and stored as -1.
type sizeFlag[T int | int64] struct {
	checked
	p        *T
	min, max int64
	none     bool
}

// sizeVar defines a size flag with default value, from min to max bytes;
// if none, "none" sets -1.
func sizeVar[T int | int64](fs *flag.FlagSet, p *T, name string, value T, min, max int64, none bool, usage string) {
	*p = value
	fs.Var(&sizeFlag[T]{p: p, min: min, max: max, none: none}, name, usage)
}

func (f *sizeFlag[T]) String() string {
	switch {
	case f.p == nil:
		return "0"
	case *f.p < 0:
		return "none"
	}
	return formatSize(int64(*f.p))
}

func (f *sizeFlag[T]) Set(s string) error {
	if f.none && s == "none" {
		*f.p = -1
		return f.check(nil)
	}
	n, err := parseSize(s)
	if err != nil {
		return f.check(err)
	}
	if !n.IsInt() {
		return f.check(fmt.Errorf("must be a whole number of bytes, got %s", s))
	}
	if n.Cmp(big.NewRat(f.min, 1)) < 0 || n.Cmp(big.NewRat(f.max, 1)) > 0 {
		return f.check(outOfRange(f.want(), s))
	}
	*f.p = T(n.Num().Int64())
	return f.check(nil)
}

func (f *sizeFlag[T]) want() string {
	hi := ""
	if f.max != noMax {
		hi = formatSize(f.max)
	}
	want := span(formatSize(f.min), hi)
	if f.none {
		want += ", or none"
	}
	return want
}

// sizeUnits are the units of a size: decimal (SI) and binary (IEC)
// multiples of the byte, B in capital (b is a bit).
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// sizeSyntax is a size: a decimal number, negative too (to be told it is
// out of range), then a unit, perhaps after a space.
var sizeSyntax = regexp.MustCompile(`^(-?[0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)$`)

// parseSize returns the bytes s says, exactly: a fraction of a byte stays
// one, and nothing overflows.
func parseSize(s string) (*big.Rat, error) {
	m := sizeSyntax.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("must be a size such as 65536, 64KiB, 4MiB or 1.5MB, got %q", s)
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		return nil, fmt.Errorf("must be a size in B, kB, MB, GB, TB, KiB, MiB, GiB or TiB, got %q", s)
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok { // cannot be, after sizeSyntax
		return nil, fmt.Errorf("must be a size such as 65536, 64KiB, 4MiB or 1.5MB, got %q", s)
	}
	return n.Mul(n, big.NewRat(unit, 1)), nil
}

// formatSize writes n bytes in the largest binary unit that divides it, as
// a size flag reads it back: 64KiB, 4MiB, 1500000B.
func formatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []string{"TiB", "GiB", "MiB", "KiB"} {
		if m := sizeUnits[u]; n%m == 0 {
			return strconv.FormatInt(n/m, 10) + u
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// framingFlag is a flag.Value of one of a command's framings.
type framingFlag struct {
	checked
	p     *chat.Framing
	valid []chat.Framing
}

// framingVar defines a framing flag with default value, one of valid.
func framingVar(fs *flag.FlagSet, p *chat.Framing, name string, value chat.Framing, valid []chat.Framing, usage string) {
	*p = value
	fs.Var(&framingFlag{p: p, valid: valid}, name, usage)
}

func (f *framingFlag) String() string {
	if f.p == nil {
		return ""
	}
	return f.p.String()
}

func (f *framingFlag) Set(s string) error {
	v, err := chat.ParseFraming(s)
	if err != nil || !slices.Contains(f.valid, v) {
		names := make([]string, len(f.valid))
		for i, v := range f.valid {
			names[i] = v.String()
		}
		return f.check(outOfRange(orList(names), s))
	}
	*f.p = v
	return f.check(nil)
}

// choices returns the framings f takes, for completion.
func (f *framingFlag) choices() []string {
	names := make([]string, len(f.valid))
	for i, v := range f.valid {
		names[i] = v.String()
	}
	return names
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// choiceFlag is a flag.Value of one of a few words.
type choiceFlag struct {
	checked
	p     *string
	valid []string
}

// choiceVar defines a flag with default value, one of valid.
func choiceVar(fs *flag.FlagSet, p *string, name, value string, valid []string, usage string) {
	*p = value
	fs.Var(&choiceFlag{p: p, valid: valid}, name, usage)
}

func (f *choiceFlag) String() string {
	if f.p == nil {
		return ""
	}
	return *f.p
}

// choices returns the words f takes, for completion.
func (f *choiceFlag) choices() []string { return f.valid }

func (f *choiceFlag) Set(s string) error {
	if !slices.Contains(f.valid, s) {
		return f.check(outOfRange(orList(f.valid), s))
	}
	*f.p = s
	return f.check(nil)
}

// backendFlag is a choiceFlag of cport's engines, auto first, whose error
// for the engine of another system's build says so.
type backendFlag struct{ choiceFlag }

// backendVar defines a flag of a cport engine of this build, or auto, with
// default value.
func backendVar(fs *flag.FlagSet, p *string, name, value, usage string) {
	*p = value
	fs.Var(&backendFlag{choiceFlag{p: p, valid: append([]string{"auto"}, cport.Backends()...)}}, name, usage)
}

// engineSystems names the system of each engine of cport, in any build.
var engineSystems = map[string]string{"iocp": "Windows", "epoll": "Linux", "uring": "Linux"}

func (f *backendFlag) Set(s string) error {
	err := f.choiceFlag.Set(s)
	if sys, ok := engineSystems[s]; ok && err != nil {
		err = f.check(fmt.Errorf("%w (%s is the %s engine, not in this build)", err, s, sys))
	}
	return err
}
