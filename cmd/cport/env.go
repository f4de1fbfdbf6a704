package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Configuration from the environment: every flag of cport serve is also
// read from CPORT_<FLAG> (upper case, - as _: --max-message is
// CPORT_MAX_MESSAGE). A flag on the command line wins over the
// environment, which wins over the configuration file (config.go), which
// wins over the default.

// envName returns the environment variable of the flag named name.
func envName(name string) string {
	return "CPORT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Sources of a flag's value, as --print-config says them.
const (
	fromFlag    = "flag"
	fromEnv     = "env"
	fromDefault = "default"
)

// applyEnv sets every flag of fs not given on the command line from its
// environment variable, if that is set, and returns where each flag's
// value came from. A bad value is a usage error naming the variable.
func applyEnv(fs *flag.FlagSet) (map[string]string, error) {
	source := make(map[string]string)
	fs.Visit(func(f *flag.Flag) { source[f.Name] = fromFlag })
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if source[f.Name] != "" || bad != nil {
			return
		}
		source[f.Name] = fromDefault
		if f.Name == "print-config" {
			return // the command line's own
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			if fv, ok := f.Value.(failer); ok && fv.failed() != nil {
				err = fv.failed()
			}
			bad = usageErr(fs, "%s (for --%s): %v", envName(f.Name), f.Name, err)
			return
		}
		source[f.Name] = fromEnv
	})
	return source, bad
}

// origin names the flag name as where its value came from, source, for an
// error about the value: --name, CPORT_NAME (for --name), or file: name
// for the configuration file file.
func origin(name, source, file string) string {
	switch source {
	case fromEnv:
		return fmt.Sprintf("%s (for --%s)", envName(name), name)
	case fromFile:
		return file + ": " + name
	}
	return "--" + name
}

// printConfig writes every flag of fs, its value and where it came from;
// file is the configuration file, if any.
func printConfig(w io.Writer, fs *flag.FlagSet, source map[string]string, file string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAG\tVALUE\tSOURCE")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "print-config" {
			return
		}
		src := source[f.Name]
		switch src {
		case fromEnv:
			src += " " + envName(f.Name)
		case fromFile:
			src += " " + file
		}
		fmt.Fprintf(tw, "--%s\t%s\t%s\n", f.Name, f.Value.String(), src)
	})
	tw.Flush()
}
