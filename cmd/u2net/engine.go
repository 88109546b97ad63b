package main

import (
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
// default, falling back to the CPU engine when Vulkan has none).
func openEngine(selector string, log *slog.Logger) (ops.Engine, error) {
	c, err := vk.Choose(vk.SelectorFromEnv(selector))
	if err != nil {
		return nil, err
	}
	if c.CPU {
		if c.Reason != "" {
			log.Warn("no Vulkan device; using the CPU reference engine", "reason", c.Reason)
		}
		return ops.NewCPU(), nil
	}
	return ops.OpenGPU(strconv.Itoa(c.Device.Index))
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

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
