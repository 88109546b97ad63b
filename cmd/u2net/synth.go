package main

import (
	"fmt"
	"io"

	"github.com/u2net-vk/u2net/u2net/synth"
)

func init() {
	register(command{name: "synth", short: "write synthetic multi-domain datasets in Decathlon layout", run: runSynth})
}

// runSynth writes the synthetic domains of package synth into --out.
func runSynth(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("synth", "", stderr)
	out := fs.String("out", "", "folder to create (must not exist or be empty); one dataset per domain goes into it")
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives byte-identical files")
	def := synth.DefaultConfig(0)
	cases := fs.Int("cases", def.Cases, "training cases per domain")
	tests := fs.Int("test-cases", def.TestCases, "test cases per domain (their labels go to labelsTs/)")
	size := fs.Int("size", def.Size, "nominal voxels per in-plane axis (12..512); sizes vary by ±20% per case")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return usageError("--out is required")
	}
	if *cases < 1 {
		return usageError("--cases %d: want at least 1", *cases)
	}
	if *tests < 0 {
		return usageError("--test-cases %d: want 0 or more", *tests)
	}
	if *size < 12 || *size > 512 {
		return usageError("--size %d: want 12..512", *size)
	}
	cfg := synth.Config{Seed: *seed, Cases: *cases, TestCases: *tests, Size: *size}
	infos, err := synth.Write(*out, cfg)
	if err != nil {
		return err
	}
	for _, in := range infos {
		fmt.Fprintf(stdout, "%s: %d training and %d test cases in %s\n", in.Name, in.Training, in.Test, in.Dir)
	}
	return nil
}
