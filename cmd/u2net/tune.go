package main

import (
	"fmt"
	"io"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/bench"
)

func init() {
	register(command{name: "tune", short: "measure which kernels run the network fastest on a Vulkan device, for train, predict and bench to use there", run: runTune})
}

func runTune(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tune", "", stderr)
	device := fs.String("device", "", "Vulkan device index or name (default: the best found)")
	mode := fs.String("mode", u2net.ModeUniversal, "the network to measure: universal, shared or independent (whose dense convolutions weigh more)")
	quick := fs.Bool("quick", false, "measure at 32³, batch 1, base 8 (about a minute on lavapipe) instead of the reference setting")
	size := fs.Int("size", 0, "measure at this cubic patch size (default: 128, or 32 with --quick; halved until the device holds a training step)")
	batch := fs.Int("batch", 0, "patches per step (default: 2, or 1 with --quick)")
	base := fs.Int("base-channels", 0, "channels of the first level (default: 16, or 8 with --quick)")
	repeats := fs.Int("repeats", 0, "timed repeats per measurement, whose median counts (default 5)")
	out := fs.String("out", "", "write the tuning here (default: the device's tuning file in the cache folder, which train, predict and bench then apply on this device)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %v", fs.Args())
	}
	switch *mode {
	case u2net.ModeUniversal, u2net.ModeShared, u2net.ModeIndependent:
	default:
		return usageError("--mode %q: want universal, shared or independent", *mode)
	}
	set := bench.FullOptions().Network
	if *quick {
		set = bench.QuickOptions().Network
	}
	for _, f := range []struct {
		name     string
		v, least int
		to       *int
	}{{"size", *size, 8, &set.Size}, {"batch", *batch, 1, &set.Batch}, {"base-channels", *base, 1, &set.Base},
		{"repeats", *repeats, 1, repeats}} {
		switch {
		case f.v == 0:
			continue
		case f.v < f.least:
			return usageError("--%s %d: want %d or more (0 or none: the default)", f.name, f.v, f.least)
		}
		*f.to = f.v
	}
	set = set.At(set.Size)
	if *repeats == 0 {
		*repeats = 5
	}
	if *out != "" {
		if err := checkOutputFolder("out", *out); err != nil {
			return err
		}
	}
	log := newLogger(stderr)
	e, err := openEngine(*device, memoryLimitFlag{set: true}, log) // uncapped: it measures
	if err != nil {
		return err
	}
	defer e.Close()
	g, ok := e.(*ops.GPU)
	if !ok {
		return fmt.Errorf("tune: %s has no kernels to choose: tuning needs a Vulkan device", e.Name())
	}
	path := *out
	if path == "" {
		if path = ops.KernelTuningPath(g); path == "" {
			return fmt.Errorf("tune: the device keeps no files (no cache folder, or U2NET_CACHE_DIR is -): give --out")
		}
	}
	t, err := bench.Tune(g, *mode, set, *repeats, func(s string) { log.Info(s, "engine", e.Name()) })
	if err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	t.Program = "u2net " + version + buildRevision()
	bench.WriteTuning(stdout, t)
	if err := ops.WriteKernelTuning(path, t); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s", path)
	if *out == "" {
		fmt.Fprint(stdout, ": train, predict and bench apply it on this device and driver (--tuning off: not)")
	}
	fmt.Fprintln(stdout)
	return nil
}
