package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Shell completion: cport completion bash|zsh|fish prints a script made from
// the command tree (commands) and each command's flag set, as its run
// defines it, so that the scripts cannot drift from the commands.

// shells are the shells cport completion writes scripts for.
var shells = []string{"bash", "zsh", "fish"}

func runCompletion(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || !slices.Contains(shells, fs.Arg(0)) {
		return usageErr(fs, "must name one shell: %s, got %q", orList(shells), strings.Join(fs.Args(), " "))
	}
	t, err := buildCompletion()
	if err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "bash":
		return writeBash(stdout, t)
	case "zsh":
		return writeZsh(stdout, t)
	}
	return writeFish(stdout, t)
}

// A completionTable is what the scripts complete, by command path
// ("cport load idle"): the words that may follow (subcommands), the
// flags, and for each flag that takes a value, its values.
type completionTable struct {
	paths []string            // every command path, cport first
	subs  map[string][]string // path: its subcommands
	flags map[string][]string // path: its flags, --name
	// values is keyed by path and flag ("cport serve --framing"): the
	// flag's values, fileValues for a file name, nil for anything.
	values map[string][]string
}

// fileValues stands for "a file name" among a flag's values.
var fileValues = []string{"<file>"}

// valuer is a flag value that has a few values: framingFlag, choiceFlag.
type valuer interface{ choices() []string }

// buildCompletion builds the table from commands, leaving out hidden ones.
func buildCompletion() (*completionTable, error) {
	t := &completionTable{subs: map[string][]string{}, flags: map[string][]string{}, values: map[string][]string{}}
	t.paths = append(t.paths, "cport")
	var top []string
	for _, c := range commands {
		top = append(top, c.name)
	}
	t.subs["cport"] = append(top, "help")
	t.paths = append(t.paths, "cport help")
	t.subs["cport help"] = top
	var walk func(path []*command) error
	walk = func(path []*command) error {
		c := path[len(path)-1]
		name := "cport " + strings.Join(names(path), " ")
		t.paths = append(t.paths, name)
		fs, err := flagsOf(name, c)
		if err != nil {
			return err
		}
		fs.VisitAll(func(f *flag.Flag) {
			t.flags[name] = append(t.flags[name], "--"+f.Name)
			if isBool(f) {
				return
			}
			key := name + " --" + f.Name
			switch v := f.Value.(type) {
			case valuer:
				t.values[key] = v.choices()
			default:
				if ph, _ := flag.UnquoteUsage(f); ph == "file" {
					t.values[key] = fileValues
				} else {
					t.values[key] = nil
				}
			}
		})
		if c.name == "completion" {
			t.subs[name] = shells
		}
		for _, s := range c.subs {
			if s.hidden {
				continue
			}
			t.subs[name] = append(t.subs[name], s.name)
			if len(path) == 1 {
				t.subs["cport help "+c.name] = append(t.subs["cport help "+c.name], s.name)
			}
			if err := walk(append(path[:len(path):len(path)], s)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range commands {
		if !c.hidden {
			if err := walk([]*command{c}); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range commands {
		if len(t.subs["cport help "+c.name]) > 0 {
			t.paths = append(t.paths, "cport help "+c.name)
		}
	}
	return t, nil
}

// flagsOf returns c's flag set as c's run defines it: run with -h, a
// command defines its flags, then parse returns flag.ErrHelp, before the
// command does anything.
func flagsOf(name string, c *command) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var err error
	if c.print != nil {
		err = c.print(fs, []string{"-h"}, io.Discard)
	} else {
		err = c.run(fs, []string{"-h"})
	}
	if !errors.Is(err, flag.ErrHelp) {
		return nil, fmt.Errorf("%s -h: %v, not help", name, err)
	}
	return fs, nil
}

// isBool reports whether f is a flag without a value (--quiet).
func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// valueKeys returns the keys of t.values in a stable order.
func (t *completionTable) valueKeys() []string {
	var keys []string
	for _, p := range t.paths {
		for _, f := range t.flags[p] {
			if _, ok := t.values[p+" "+f]; ok {
				keys = append(keys, p+" "+f)
			}
		}
	}
	return keys
}

// writeCases writes the body of a shell function that switches on the
// words given by arg (the shell's syntax for them): for each key with
// words, one case that prints them, one a line. sh writes a case in the
// shell's syntax.
func writeCases(b *strings.Builder, keys []string, words func(string) []string, sh func(b *strings.Builder, key string, words []string)) {
	for _, k := range keys {
		if w := words(k); len(w) > 0 {
			sh(b, k, w)
		}
	}
}

const bashScript = `# bash completion for cport: generated by "cport completion bash".
# Load it with: source <(cport completion bash)

# _cport_subs PATH: the subcommands of the command PATH ("cport load").
_cport_subs() {
	case "$1" in
%s	esac
}

# _cport_flags PATH: the flags of the command PATH.
_cport_flags() {
	case "$1" in
%s	esac
}

# _cport_values PATH FLAG: the values of FLAG of the command PATH, "<file>"
# for a file name; false if FLAG takes no value.
_cport_values() {
	case "$1 $2" in
%s	*) return 1 ;;
	esac
}

_cport() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmdpath=cport i w
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ " $(_cport_subs "$cmdpath" | tr '\n' ' ') " == *" $w "* ]]; then
			cmdpath="$cmdpath $w"
		else
			break
		fi
	done
	local values
	if [[ $prev == --* ]] && values=$(_cport_values "$cmdpath" "$prev"); then
		if [[ $values == "<file>" ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$values" -- "$cur"))
		fi
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_cport_flags "$cmdpath")" -- "$cur"))
	else
		COMPREPLY=($(compgen -W "$(_cport_subs "$cmdpath")" -- "$cur"))
	fi
}

complete -F _cport cport
`

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shCase writes one case of a bash or zsh case statement.
func shCase(b *strings.Builder, key string, words []string) {
	fmt.Fprintf(b, "\t%s) printf '%%s\\n' %s ;;\n", shQuote(key), strings.Join(quoteAll(words), " "))
}

func quoteAll(words []string) []string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shQuote(w)
	}
	return q
}

// shTables returns the case bodies of _cport_subs, _cport_flags and
// _cport_values, in bash's and zsh's syntax.
func shTables(t *completionTable) (subs, flags, values string) {
	var s, f, v strings.Builder
	writeCases(&s, t.paths, func(p string) []string { return t.subs[p] }, shCase)
	writeCases(&f, t.paths, func(p string) []string { return t.flags[p] }, shCase)
	for _, k := range t.valueKeys() {
		if w := t.values[k]; len(w) > 0 {
			shCase(&v, k, w)
		} else {
			fmt.Fprintf(&v, "\t%s) ;;\n", shQuote(k))
		}
	}
	return s.String(), f.String(), v.String()
}

func writeBash(w io.Writer, t *completionTable) error {
	subs, flags, values := shTables(t)
	_, err := fmt.Fprintf(w, bashScript, subs, flags, values)
	return err
}

const zshScript = `#compdef cport
# zsh completion for cport: generated by "cport completion zsh".
# Load it with: source <(cport completion zsh)

_cport_subs() {
	case "$1" in
%s	esac
}

_cport_flags() {
	case "$1" in
%s	esac
}

_cport_values() {
	case "$1 $2" in
%s	*) return 1 ;;
	esac
}

_cport() {
	local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
	local cmdpath=cport i w
	local -a subs values
	for ((i = 2; i < CURRENT; i++)); do
		w=${words[i]}
		subs=(${(f)"$(_cport_subs "$cmdpath")"})
		if (( ${subs[(Ie)$w]} )); then
			cmdpath="$cmdpath $w"
		else
			break
		fi
	done
	if [[ $prev == --* ]] && _cport_values "$cmdpath" "$prev" >/dev/null; then
		values=(${(f)"$(_cport_values "$cmdpath" "$prev")"})
		if [[ ${values[1]} == "<file>" ]]; then
			_files
		elif (( ${#values} )); then
			compadd -a values
		else
			_message value
		fi
		return
	fi
	if [[ $cur == -* ]]; then
		local -a flags
		flags=(${(f)"$(_cport_flags "$cmdpath")"})
		compadd -a flags
	else
		subs=(${(f)"$(_cport_subs "$cmdpath")"})
		compadd -a subs
	fi
}

if (( $+functions[compdef] )); then
	compdef _cport cport
fi
`

func writeZsh(w io.Writer, t *completionTable) error {
	subs, flags, values := shTables(t)
	_, err := fmt.Fprintf(w, zshScript, subs, flags, values)
	return err
}

const fishScript = `# fish completion for cport: generated by "cport completion fish".
# Load it with: cport completion fish | source

function __cport_subs
	switch $argv[1]
%s	end
end

function __cport_flags
	switch $argv[1]
%s	end
end

function __cport_values
	switch "$argv[1] $argv[2]"
%s	case '*'
		return 1
	end
end

function __cport_complete
	set -l words (commandline -opc)
	set -l prev $words[-1]
	set -e words[1]
	set -l cmdpath cport
	for w in $words
		if contains -- $w (__cport_subs $cmdpath)
			set cmdpath "$cmdpath $w"
		else
			break
		end
	end
	set -l cur (commandline -ct)
	if string match -q -- '--*' $prev
		set -l values (__cport_values $cmdpath $prev)
		if test $status -eq 0
			if test "$values" = '<file>'
				__fish_complete_path $cur
			else
				printf '%%s\n' $values
			end
			return
		end
	end
	if string match -q -- '-*' $cur
		__cport_flags $cmdpath
	else
		__cport_subs $cmdpath
	end
end

complete -c cport -f -a '(__cport_complete)'
`

// fishCase writes one case of a fish switch.
func fishCase(b *strings.Builder, key string, words []string) {
	fmt.Fprintf(b, "\tcase %s\n\t\tprintf '%%s\\n' %s\n", shQuote(key), strings.Join(quoteAll(words), " "))
}

func writeFish(w io.Writer, t *completionTable) error {
	var s, f, v strings.Builder
	writeCases(&s, t.paths, func(p string) []string { return t.subs[p] }, fishCase)
	writeCases(&f, t.paths, func(p string) []string { return t.flags[p] }, fishCase)
	for _, k := range t.valueKeys() {
		if vals := t.values[k]; len(vals) > 0 {
			fishCase(&v, k, vals)
		} else {
			fmt.Fprintf(&v, "\tcase %s\n\t\treturn 0\n", shQuote(k))
		}
	}
	_, err := fmt.Fprintf(w, fishScript, s.String(), f.String(), v.String())
	return err
}
