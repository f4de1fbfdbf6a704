package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The configuration file of cport serve (--config, or CPORT_CONFIG): TOML,
// one key per flag, named as the flag without its dashes:
//
//	addr = ":25000"
//	max-message = "1KiB"
//	workers = 4
//	idle-timeout = "5m"
//	no-echo = true
//
// A value goes through the flag's own Set, as on the command line, so its
// units and range are checked the same way. The file is below the
// environment in precedence: flag > env > file > default.

// fromFile is the source of a value read from the configuration file.
const fromFile = "file"

// notInFile are the flags a configuration file cannot set: the ones that
// say what to do with the configuration.
var notInFile = []string{"config", "print-config"}

// applyFile sets every flag of fs whose source is still fromDefault from
// the TOML file at path, and records fromFile as its source. A file that
// cannot be read or parsed, a key that is no flag, or a value of the wrong
// type or out of range is a usage error naming the file and the key, even
// where the command line or the environment overrides it: every value is
// first set on check, a flag set of the same flags as fs, unused otherwise.
func applyFile(fs, check *flag.FlagSet, path string, source map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usageErr(fs, "%s: cannot read %s: %v", origin("config", source["config"], ""), path, err)
	}
	var values map[string]any
	md, err := toml.Decode(string(data), &values)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return usageErr(fs, "%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return usageErr(fs, "%s: %v", path, err)
	}
	for _, key := range md.Keys() {
		if len(key) != 1 {
			continue // inside a table, which its key's check refuses
		}
		name := key[0]
		f := check.Lookup(name)
		switch {
		case slices.Contains(notInFile, name):
			return usageErr(fs, "%s: %s: cannot be set in a configuration file", path, name)
		case f == nil:
			if near := nearestFlag(check, name); near != "" {
				return usageErr(fs, "%s: unknown key %s (did you mean %s?)", path, name, near)
			}
			return usageErr(fs, "%s: unknown key %s: %s has no such flag (%s -h lists them)", path, name, fs.Name(), fs.Name())
		}
		s, err := fileValue(f, values[name])
		if err == nil {
			if err = check.Set(name, s); err != nil {
				if fv, ok := f.Value.(failer); ok && fv.failed() != nil {
					err = fv.failed()
				}
			}
		}
		if err != nil {
			return usageErr(fs, "%s: %s: %v", path, name, err)
		}
		if source[name] != fromDefault {
			continue // the command line or the environment set it
		}
		if err := fs.Set(name, s); err != nil { // cannot be, after check
			return usageErr(fs, "%s: %s: %v", path, name, err)
		}
		source[name] = fromFile
	}
	return nil
}

// fileValue returns v, a TOML value of the file, as f's Set takes it, or
// why f takes no value of v's type. Numbers are TOML numbers; sizes are
// numbers (bytes) or strings with a unit ("64KiB"); durations are strings
// ("5m"), TOML having none; booleans are true or false.
func fileValue(f *flag.Flag, v any) (string, error) {
	var want string
	switch fv := f.Value.(type) {
	case *intFlag:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		want = "a whole number"
		if fv.none {
			if s, ok := v.(string); ok && s == "none" {
				return s, nil
			}
			want += ` or "none"`
		}
	case *sizeFlag[int], *sizeFlag[int64]:
		switch v := v.(type) {
		case int64:
			return strconv.FormatInt(v, 10), nil
		case string:
			return v, nil
		}
		want = `a size: a number of bytes or a string such as "64KiB"`
	case *floatFlag:
		switch v := v.(type) {
		case int64:
			return strconv.FormatInt(v, 10), nil
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64), nil
		}
		want = "a number"
	case *durationFlag:
		if s, ok := v.(string); ok {
			return s, nil
		}
		want = `a duration in quotes, such as "2s", "500ms" or "1m30s"`
	default:
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if b, ok := v.(bool); ok {
				return strconv.FormatBool(b), nil
			}
			want = "true or false"
			break
		}
		if s, ok := v.(string); ok {
			return s, nil
		}
		want = "a string in quotes"
	}
	return "", fmt.Errorf("must be %s, got %s", want, tomlValue(v))
}

// tomlValue describes a TOML value: its type, and its value if short.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + strconv.Quote(v)
	case int64:
		return "the integer " + strconv.FormatInt(v, 10)
	case float64:
		return "the float " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return "the boolean " + strconv.FormatBool(v)
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// nearestFlag returns the flag of fs closest to key, a key that is none,
// if one is close enough to be the one meant: max_message and MAX-MESSAGE
// are max-message, and so is max-mesage. It returns "" if none is.
func nearestFlag(fs *flag.FlagSet, key string) string {
	k := strings.ToLower(strings.ReplaceAll(strings.TrimLeft(key, "-"), "_", "-"))
	k = strings.TrimPrefix(k, "cport-")
	best, bestDist := "", 3 // farther than 2 edits is another word
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(notInFile, f.Name) {
			return
		}
		if d := editDistance(k, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance returns the Levenshtein distance between a and b: the
// fewest insertions, deletions and substitutions of bytes from a to b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
