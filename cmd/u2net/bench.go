package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/u2net/bench"
	"github.com/u2net-vk/u2net/u2net/train"
	"github.com/u2net-vk/u2net/vk"
)

func init() {
	register(command{name: "bench", short: "time every operation and whole training steps on one or more engines", run: runBench})
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "", stderr)
	var devices listFlag
	fs.Var(&devices, "device", "engine to measure: device index, name or cpu (repeat for several; default: the best device, and with --quick every Vulkan device and cpu)")
	quick := fs.Bool("quick", false, "small shapes that finish in about a minute on lavapipe")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file (- for stdout, the tables then going to stderr)")
	pngPath := fs.String("png", "", "also draw a chart of the per-operation times to this PNG")
	repeats := fs.Int("repeats", 0, "timed repeats per measurement: the median is reported, and the spread of the repeats (default 3 quick, 10 full)")
	shape := fs.String("shape", "", "measure the operations at this N,C,D,H,W instead of the default levels")
	noNet := fs.Bool("no-network", false, "skip the whole-network and scaling measurements")
	sections := fs.String("sections", "", "measure only these, comma-separated: levels, anchor, network, scaling, tiles (GEMM tilings, GPU only), kernels (the universal network under each --kernel choice's values in turn, GPU only; not in the default set)")
	kernels := addKernelFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %v", fs.Args())
	}
	if err := kernels.check(); err != nil {
		return err
	}
	opt := bench.FullOptions()
	if *quick {
		opt = bench.QuickOptions()
	}
	switch {
	case *repeats < 0:
		return usageError("--repeats %d: want a positive count (0 or none: the default)", *repeats)
	case *repeats > 0:
		opt.Repeats = *repeats
	}
	// The outputs' folders are checked before the measurements, which
	// can take many minutes.
	for _, out := range []struct{ flag, path string }{{"json", *jsonPath}, {"png", *pngPath}} {
		if out.path != "" && out.path != "-" {
			if err := checkOutputFolder(out.flag, out.path); err != nil {
				return err
			}
		}
	}
	if *shape != "" {
		s, err := parseShape(*shape)
		if err != nil {
			return err
		}
		opt.Levels, opt.Anchor = []bench.Shape{s}, false
		if opt.Tiles.N > 0 {
			opt.Tiles = s
		}
	}
	if *noNet {
		opt.Network, opt.Scaling = bench.NetSetting{}, nil
	}
	if *sections != "" {
		want := map[string]bool{}
		for _, s := range strings.Split(*sections, ",") {
			switch s = strings.TrimSpace(s); s {
			case "levels", "anchor", "network", "scaling", "tiles", "kernels":
				want[s] = true
			default:
				return usageError("--sections: unknown section %q", s)
			}
		}
		if want["kernels"] {
			opt.Kernels = opt.Network
		}
		if !want["levels"] {
			opt.Levels = []bench.Shape{}
		}
		opt.Anchor = opt.Anchor && want["anchor"]
		if !want["network"] {
			opt.Network = bench.NetSetting{}
		}
		if !want["scaling"] {
			opt.Scaling = nil
		}
		if !want["tiles"] {
			opt.Tiles = bench.Shape{}
		}
	}
	if len(devices) == 0 {
		devices = defaultBenchDevices(*quick)
	}
	log := newLogger(stderr)
	var reps []*bench.Report
	for _, sel := range devices {
		e, err := openEngine(sel, memoryLimitFlag{set: true}, log) // uncapped: it measures
		if err != nil {
			return fmt.Errorf("--device %s: %w", sel, err)
		}
		if err := kernels.apply(e, forTraining, log); err != nil {
			e.Close()
			return err
		}
		o := opt
		if _, cpu := e.(*ops.CPU); cpu {
			if !*quick && *shape == "" {
				// The reference engine would take hours at full size.
				o = bench.QuickOptions()
			}
			if *repeats == 0 {
				// Its times barely vary, and each network step takes seconds.
				o.Repeats = 1
			}
		}
		rep, err := bench.Run(e, o, func(s string) { log.Info(s, "engine", e.Name()) })
		cerr := e.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		if cerr != nil {
			return cerr
		}
		reps = append(reps, rep)
	}
	// JSON on standard output stands alone there, so that it can be piped;
	// the tables then go to standard error.
	text := stdout
	if *jsonPath == "-" {
		text = stderr
	}
	bench.WriteText(text, reps)
	if *jsonPath != "" {
		b, err := json.MarshalIndent(reps, "", "  ")
		if err != nil {
			return err
		}
		if *jsonPath == "-" {
			fmt.Fprintln(stdout, string(b))
		} else if err := train.WriteJSON(*jsonPath, reps); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if *pngPath != "" {
		if err := bench.WritePNG(*pngPath, reps); err != nil {
			return fmt.Errorf("--png: %w", err)
		}
	}
	return nil
}

// defaultBenchDevices is the best device, or with quick every Vulkan device
// and the CPU reference engine, side by side.
func defaultBenchDevices(quick bool) []string {
	if !quick {
		return []string{""}
	}
	var out []string
	if devs, err := vk.Devices(); err == nil {
		for _, d := range devs {
			out = append(out, strconv.Itoa(d.Index))
		}
	}
	return append(out, vk.CPUEngine)
}

func parseShape(s string) (bench.Shape, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 5 {
		return bench.Shape{}, usageError("--shape %q: want N,C,D,H,W", s)
	}
	var v [5]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return bench.Shape{}, usageError("--shape %q: %q is not a positive number", s, p)
		}
		v[i] = n
	}
	return bench.Shape{N: v[0], C: v[1], S: ref.Dims3{v[2], v[3], v[4]}}, nil
}
