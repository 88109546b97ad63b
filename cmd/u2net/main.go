// Command u2net trains, runs and benchmarks 3D U²-Net segmentation models on
// Vulkan compute devices or on the plain-Go CPU reference engine.
//
// Usage:
//
//	u2net <command> [flags] [arguments]
//
// Run "u2net help" for the list of commands and "u2net <command> -h" for the
// flags of one.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// command is one subcommand of the program. Each lives in a file of its own
// and adds itself to commands from an init function.
type command struct {
	name  string
	short string // one line for the command list
	// run executes the command with its arguments (the words after its name).
	// It returns errUsage (possibly wrapped) when the arguments are wrong, so
	// that main prints the usage and exits with status 2.
	run func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("u2net: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by wrong arguments or flags.
var errUsage = errors.New("usage error")

// errFlagsReported marks a flag error that the flag package has already
// printed together with the command's usage.
var errFlagsReported = fmt.Errorf("%w: bad flags", errUsage)

// usageError wraps a message so that errors.Is(err, errUsage) holds.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a flag set for a subcommand that reports errors instead
// of exiting, writes its help to stderr and names the command in it.
func newFlagSet(name, argsHelp string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("u2net "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: u2net %s [flags] %s\n", name, argsHelp)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; the flag package prints a bad flag with the usage,
// and -h and -help give flag.ErrHelp back so the caller can exit 0.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errFlagsReported
	}
	return nil
}

// checkOutputFolder fails, naming flag, when the folder that would hold the
// output file path does not exist: a long run should not end unable to
// write what it measured or made.
func checkOutputFolder(flag, path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("--%s: folder %s: %w", flag, dir, err)
		}
	}
	return nil
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: u2net <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "u2net <command> -h" for the flags of a command.`)
}

// runMain runs the program with os.Args[1:] and returns the exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "u2net: unknown command %q\n\n", name)
		printUsage(stderr)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlagsReported):
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "u2net %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "u2net %s: %v\n", name, err)
		return 1
	}
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}
