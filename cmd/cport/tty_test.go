package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEditorFeed checks the line editor's keys: lines entered, edits,
// escape sequences dropped, a paste's lines each entered, quitting.
func TestEditorFeed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  []string // fed one after the other
		lines []string
		rest  string // the input line at the end
		quit  bool
	}{
		{"enter", []string{"hi\r"}, []string{"hi"}, "", false},
		{"crlf is one enter", []string{"a\r\nb\r"}, []string{"a", "b"}, "", false},
		{"backspace", []string{"abc\x7f\x7fd\r"}, []string{"ad"}, "", false},
		{"backspace takes a whole rune", []string{"né\x7f\r"}, []string{"n"}, "", false},
		{"ctrl-u", []string{"abc\x15x"}, nil, "x", false},
		{"arrows dropped", []string{"a\x1b[Db\x1bOA\r"}, []string{"ab"}, "", false},
		{"sequence split across reads", []string{"a\x1b[", "1;5Cb\r"}, []string{"ab"}, "", false},
		{"paste", []string{"\x1b[200~one\ntwo\x1b[201~"}, []string{"one"}, "two", false},
		{"ctrl-d on text does nothing", []string{"x\x04"}, nil, "x", false},
		{"ctrl-d on an empty line quits", []string{"x\r\x04"}, []string{"x"}, "", true},
		{"ctrl-c quits", []string{"x\x03"}, nil, "x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			e := &editor{out: &out, prompt: "> ", width: func() int { return 80 }}
			var lines []string
			quit := false
			for _, k := range tc.keys {
				ls, q := e.feed([]byte(k))
				for _, l := range ls {
					lines = append(lines, string(l))
				}
				quit = quit || q
			}
			if strings.Join(lines, "|") != strings.Join(tc.lines, "|") || string(e.line) != tc.rest || quit != tc.quit {
				t.Errorf("lines %q, input line %q, quit %v; want %q, %q, %v", lines, e.line, quit, tc.lines, tc.rest, tc.quit)
			}
		})
	}
}

// TestEditorPrint checks that a message printed while a long input line
// wraps erases every row of it first, then draws it again.
func TestEditorPrint(t *testing.T) {
	var out bytes.Buffer
	e := &editor{out: &out, prompt: "> ", width: func() int { return 10 }}
	e.feed([]byte(strings.Repeat("x", 25))) // 27 columns: 3 rows, the cursor on the third
	out.Reset()
	e.print([]byte("msg\n"))
	want := "\r\x1b[2A\x1b[J" + "msg\r\n" + "> " + strings.Repeat("x", 25)
	if out.String() != want {
		t.Errorf("printed %q; want %q", out.String(), want)
	}
}

// TestLineWriter checks that messages reach the editor a whole line at a
// time, and raw reads each as a line.
func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	e := &editor{out: &out, width: func() int { return 80 }}
	w := &lineWriter{ed: e}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n"))
	if got := out.String(); got != "\r\x1b[Jone\r\n\r\x1b[Jtwo\r\n" {
		t.Errorf("line framing printed %q", got)
	}
	out.Reset()
	raw := &lineWriter{ed: e, raw: true}
	raw.Write([]byte("no newline"))
	raw.Write([]byte("with one\n"))
	if got := out.String(); got != "\r\x1b[Jno newline\r\n\r\x1b[Jwith one\r\n" {
		t.Errorf("raw framing printed %q", got)
	}
}
