package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cport.dev/cport"
)

// completionScript runs cport completion shell and returns the script,
// written to a file.
func completionScript(t *testing.T, shell string) (string, string) {
	t.Helper()
	code, out, errs := runCmd("completion", shell)
	if code != 0 || errs != "" || out == "" {
		t.Fatalf("cport completion %s: status %d, stderr %q, %d bytes of script; want 0 and a script", shell, code, errs, len(out))
	}
	file := filepath.Join(tempDir(t), "cport."+shell)
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, file
}

// TestCompletionScripts: each shell's script names every command,
// subcommand and flag, and the values of enumerated flags; a shell that is
// installed finds no syntax error in it.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			script, file := completionScript(t, shell)
			for _, want := range []string{"'serve'", "'client'", "'load'", "'idle'", "'churn'", "'abuse'", "'models'", "'completion'",
				"'--max-message'", "'--clients'", "'--total'", "'--good'", "'--k'", "'raw' 'line' 'frame'", "'auto' 'frame' 'line'", "'text' 'json'"} {
				if !strings.Contains(script, want) {
					t.Errorf("the %s script lacks %s", shell, want)
				}
			}
			if strings.Contains(script, "'--backend' ") && !strings.Contains(script, "'auto' '"+cport.Backends()[0]+"'") {
				t.Errorf("the %s script lacks the values of --backend", shell)
			}
			if _, err := exec.LookPath(shell); err != nil {
				t.Skipf("no %s to check the script's syntax with", shell)
			}
			if out, err := exec.Command(shell, "-n", file).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, out)
			}
		})
	}
	code, _, errs := runCmd("completion", "tcsh")
	if code != 2 || errs != "cport completion: must name one shell: bash, zsh or fish, got \"tcsh\"\n" {
		t.Errorf("cport completion tcsh: status %d, stderr %q; want 2 and the shells", code, errs)
	}
}

// TestCompletionBash sources the bash script and drives its completion
// function as bash would on TAB.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	_, file := completionScript(t, "bash")
	// complete runs the completion function on the words of a command line
	// whose last word is being completed, and returns COMPREPLY.
	complete := func(words ...string) []string {
		t.Helper()
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, shQuote(w))
		}
		prog := `source "$1" || exit 1
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_cport
printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", "--norc", "--noprofile", "-c", prog, "bash", file).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c", `source "$1" && complete -p cport`, "bash", file).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "complete -F _cport cport" {
		t.Errorf("complete -p cport: %q, %v; want complete -F _cport cport", out, err)
	}
	for _, tt := range []struct {
		words []string
		want  []string
	}{
		{[]string{"cport", "se"}, []string{"serve"}},
		{[]string{"cport", ""}, []string{"serve", "client", "load", "models", "version", "completion", "help"}},
		{[]string{"cport", "load", "i"}, []string{"idle"}},
		{[]string{"cport", "load", "idle", "--cl"}, []string{"--clients"}},
		{[]string{"cport", "serve", "--max-m"}, []string{"--max-message"}},
		{[]string{"cport", "serve", "--framing", ""}, []string{"raw", "line", "frame"}},
		{[]string{"cport", "serve", "--workers", "4", "--framing", "f"}, []string{"frame"}},
		{[]string{"cport", "load", "--framing", ""}, []string{"auto", "frame", "line"}},
		{[]string{"cport", "serve", "--backend", ""}, append([]string{"auto"}, cport.Backends()...)},
		{[]string{"cport", "serve", "--addr", ""}, nil},
		{[]string{"cport", "help", "load", ""}, []string{"idle", "churn", "abuse"}},
		{[]string{"cport", "completion", "z"}, []string{"zsh"}},
		{[]string{"cport", "models", ""}, nil}, // models serve is cport models' own
	} {
		got := complete(tt.words...)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q then TAB: %q; want %q", strings.Join(tt.words, " "), got, tt.want)
		}
	}
}

// TestCompletionZshFish drives the zsh and fish scripts, where installed:
// zsh's with compadd and _files standing in for its completion system's
// (they print what they are given), fish's with complete -C.
func TestCompletionZshFish(t *testing.T) {
	cases := []struct {
		line string
		want []string // zsh: what compadd is given; fish filters it by the word
	}{
		{"cport se", []string{"serve"}},
		{"cport load i", []string{"idle"}},
		{"cport load idle --cl", []string{"--clients"}},
		{"cport serve --framing ", []string{"raw", "line", "frame"}},
		{"cport help load ", []string{"idle", "churn", "abuse"}},
		{"cport load --cpuprofile ", []string{"<files>"}},
	}
	t.Run("zsh", func(t *testing.T) {
		if _, err := exec.LookPath("zsh"); err != nil {
			t.Skip("no zsh")
		}
		_, file := completionScript(t, "zsh")
		for _, tt := range cases {
			words := strings.Fields(tt.line)
			if strings.HasSuffix(tt.line, " ") {
				words = append(words, "")
			}
			prog := `compadd() { if [[ $1 == -a ]]; then print -l -- ${(P)2}; else shift; print -l -- "$@"; fi }
_files() { print '<files>' }
_message() { print '<message>' }
source "$1" || exit 1
shift
words=("$@"); CURRENT=$#
_cport`
			out, err := exec.Command("zsh", append([]string{"-f", "-c", prog, "zsh", file}, words...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("zsh: %v\n%s", err, out)
			}
			// compadd filters by the word being completed: so does the test.
			var got []string
			for _, w := range strings.Fields(string(out)) {
				if strings.HasPrefix(w, words[len(words)-1]) || w == "<files>" {
					got = append(got, w)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("zsh: %q then TAB: %q; want %q", tt.line, got, tt.want)
			}
		}
	})
	t.Run("fish", func(t *testing.T) {
		if _, err := exec.LookPath("fish"); err != nil {
			t.Skip("no fish")
		}
		_, file := completionScript(t, "fish")
		for _, tt := range cases {
			if tt.want[0] == "<files>" {
				continue // fish completes real paths
			}
			out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, file, tt.line).CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			got, want := strings.Fields(string(out)), slices.Clone(tt.want)
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("fish: %q then TAB: %q; want %q", tt.line, got, want)
			}
		}
	})
}
