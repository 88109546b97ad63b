package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/vk"
)

// openEngine opens the engine a --device flag (or U2NET_DEVICE) names: the
// CPU reference engine for "cpu", else a Vulkan device (the best one by
// default, falling back to the CPU engine when Vulkan has none). The
// memory limit caps the bytes the engine allocates for tensors (0: no cap).
// Unset, it leaves a GPU uncapped (the GPU reports its own exhaustion) and
// gives an engine that computes in host memory a share of that memory.
func openEngine(selector string, limit memoryLimitFlag, log *slog.Logger) (ops.Engine, error) {
	c, err := vk.Choose(vk.SelectorFromEnv(selector))
	if err != nil {
		return nil, err
	}
	memoryLimit := limit.byteSize
	if !limit.set && (c.CPU || c.Device.Type == vk.TypeCPU) {
		memoryLimit = byteSize(hostMemory("/proc/meminfo") / hostMemoryShare)
	}
	if c.CPU {
		if c.Reason != "" {
			log.Warn("no Vulkan device; using the CPU reference engine", "reason", c.Reason)
		}
		cpu := ops.NewCPU()
		cpu.MemoryLimit = int64(memoryLimit)
		return cpu, nil
	}
	return ops.OpenGPUWith(vk.Options{Selector: strconv.Itoa(c.Device.Index), MemoryLimit: uint64(memoryLimit)})
}

// memoryLimitFlag is --memory-limit, which when not given leaves the
// choice to openEngine.
type memoryLimitFlag struct {
	byteSize
	set bool
}

func (m *memoryLimitFlag) Set(s string) error {
	m.set = true
	return m.byteSize.Set(s)
}

// hostMemoryShare is the share (1/hostMemoryShare) of the host's memory
// that an engine computing in host memory (the reference engine, a CPU
// Vulkan device such as lavapipe) may hold in tensors unless
// --memory-limit says otherwise. Past it predict takes smaller windows,
// train a smaller derived patch, or they stop with an error that says so,
// where the host would otherwise swap or end the process; the rest is left
// to the volumes, the results and the other programs.
const hostMemoryShare = 2

// hostMemory returns the host's physical memory in bytes as the Linux
// meminfo file at path gives it (MemTotal), or 0 where it cannot be read.
func hostMemory(path string) uint64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kib, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}

// byteSize is a flag for an amount of memory: bytes, or a number with a
// unit (KiB, MiB, GiB, TiB, or K, M, G, T for the same), e.g. 8GiB or 1.5G.
type byteSize uint64

func (b *byteSize) String() string {
	if *b == 0 {
		return "0"
	}
	return bytesText(uint64(*b))
}

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	end := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(t)
	}
	num, unit := t[:end], strings.ToLower(strings.TrimSpace(t[end:]))
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "kib": 10, "m": 20, "mib": 20, "g": 30, "gib": 30, "t": 40, "tib": 40}
	sh, ok := shift[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || v < 0 || v*float64(uint64(1)<<sh) >= 1<<63 {
		return fmt.Errorf("%q: want bytes, or a number with KiB, MiB, GiB or TiB", s)
	}
	*b = byteSize(v * float64(uint64(1)<<sh))
	return nil
}

// newLogger logs plain lines to w.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// terminal returns w when it is a terminal (for progress bars), else nil.
func terminal(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return w
	}
	return nil
}

// parseTriple reads "D,H,W" (or one number for all three axes).
func parseTriple(flag, s string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(s, ",")
	if len(parts) == 1 {
		parts = []string{parts[0], parts[0], parts[0]}
	}
	if len(parts) != 3 {
		return out, usageError("%s %q: want D,H,W", flag, s)
	}
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return out, usageError("%s %q: %q is not a number", flag, s, p)
		}
		out[i] = v
	}
	return out, nil
}

// kernelsFlag is --kernel, repeated, and --tuning: the kernel choices of a
// Vulkan device (ops.GPU.SetKernel), a tuning's and then the flags'.
type kernelsFlag struct {
	listFlag
	tuning string
	// file is the --tuning file, read by check.
	file *ops.KernelTuning
	// run, when not nil, holds the choices a resumed run recorded, which
	// replace the tuning's.
	run *[]string
}

// addKernelFlag registers --kernel and --tuning on fs.
func addKernelFlag(fs *flag.FlagSet) *kernelsFlag {
	k := &kernelsFlag{}
	var lines []string
	for _, c := range ops.KernelChoices() {
		lines = append(lines, c.String())
	}
	fs.Var(&k.listFlag, "kernel", "override a kernel choice of a Vulkan device, NAME=VALUE (repeat for several; auto is the engine's own rule):\n"+
		strings.Join(lines, "\n"))
	fs.StringVar(&k.tuning, "tuning", "", "the kernel choices that u2net tune measured fastest, from this file, or off (default: the device's own tuning where u2net tune wrote one); --kernel overrides them")
	return k
}

// check refuses choices that no engine takes, and a tuning file that
// cannot be read, before any work.
func (k *kernelsFlag) check() error {
	for _, c := range k.listFlag {
		if err := ops.CheckKernel(c); err != nil {
			return usageError("--kernel: %v", err)
		}
	}
	if k.tuning != "" && k.tuning != "off" {
		t, err := ops.ReadKernelTuning(k.tuning)
		if err != nil {
			return usageError("--tuning: %v", err)
		}
		k.file = &t
	}
	return nil
}

// tuningUse is what a command runs: a tuning's choices for training steps
// or for forward passes.
type tuningUse int

const (
	forTraining tuningUse = iota
	forPrediction
)

// apply sets the choices on e, a Vulkan device: those a resumed run
// recorded, else those of the tuning (the --tuning file, else the device's
// own where there is one that was measured with this device and driver)
// for use; then --kernel's over them. The CPU reference engine has no
// kernels to choose, which the log says.
func (k *kernelsFlag) apply(e ops.Engine, use tuningUse, log *slog.Logger) error {
	g, ok := e.(*ops.GPU)
	if !ok {
		if len(k.listFlag) > 0 || k.file != nil {
			log.Info("--kernel and --tuning apply to Vulkan devices only", "engine", e.Name())
		}
		return nil
	}
	var choices []string
	from := "" // where they come from, for the log and errors
	pick := func(t *ops.KernelTuning) {
		choices = t.Train
		if use == forPrediction {
			choices = t.Predict
		}
	}
	switch {
	case k.run != nil:
		choices, from = *k.run, "the run's options (--tuning FILE chooses others)"
	case k.file != nil:
		if err := k.file.Fits(g.Device().Info()); err != nil {
			return fmt.Errorf("--tuning %s: %w", k.tuning, err)
		}
		pick(k.file)
		from = k.tuning
	case k.tuning == "off":
	default:
		t, path, err := ops.ReadDeviceTuning(g.Device().CacheDir(), g.Device().Info())
		switch {
		case path == "":
		case err == nil:
			pick(&t)
			from = path
		case !errors.Is(err, ops.ErrNoKernelTuning):
			log.Warn("the device's kernel tuning is not applied", "file", path, "reason", err)
		case g.Device().Info().Type != vk.TypeCPU:
			// The built-in rules were set on few GPUs.
			log.Info("no kernel tuning for this device: u2net tune measures which kernels run the network fastest on it",
				"engine", e.Name())
		}
	}
	if err := g.SetKernels(choices); err != nil {
		return fmt.Errorf("kernel choices of %s: %w", from, err)
	}
	for _, c := range k.listFlag {
		if err := g.SetKernel(c); err != nil {
			return fmt.Errorf("--kernel: %w", err)
		}
	}
	if from != "" || len(k.listFlag) > 0 {
		log.Info("kernel choices", "engine", e.Name(), "kernel", cmp.Or(strings.Join(g.Kernels(), ","), "the engine's own rules"),
			"from", cmp.Or(from, "--kernel"))
	}
	return nil
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
