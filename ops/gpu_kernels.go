package ops

import (
	"fmt"
	"slices"
	"strings"
)

// Kernel choices: where several kernels compute the same result, the GPU
// engine picks one by device class and shape. SetKernel overrides a pick,
// so that benchmarks compare them on a device (u2net bench --kernel).

// kernelChoice is one overridable pick: its values after "auto" (the
// engine's own rule) and the switch each sets.
type kernelChoice struct {
	name, doc string
	values    []string
	// set points the engine's switch at value's setting, or with "" at
	// its own rule.
	set func(g *GPU, value string)
}

// onOff is the setter of a choice between two values, the first setting
// *sw to true: sw(g) is the switch.
func onOff(first string, sw func(g *GPU) **bool) func(g *GPU, value string) {
	return func(g *GPU, value string) {
		var on *bool
		if value != "" {
			b := value == first
			on = &b
		}
		*sw(g) = on
	}
}

// tileTarget is the setter of a choice of tile, "WxHxD": sw(g) is the
// target it sets, nil for any other value.
func tileTarget(sw func(g *GPU) **dwTile) func(g *GPU, value string) {
	return func(g *GPU, value string) {
		*sw(g) = nil
		if t, ok := parseDWTile(value); ok {
			*sw(g) = &t
		}
	}
}

var kernelChoices = []kernelChoice{
	{"depthwise-forward", "the depthwise forward pass on GPUs: depthwise.comp's tiles, or depthwise_stream.comp's columns (32x8x16, or stream:WxHxD), fitted to the volume (auto: tiles)",
		append([]string{"stream", "tiles"}, dwStreamChoices...), func(g *GPU, value string) {
			g.dwStreamOn, g.dwStreamTarget = nil, nil
			if value != "" {
				stream := value != "tiles"
				g.dwStreamOn = &stream
				tileTarget(func(g *GPU) **dwTile { return &g.dwStreamTarget })(g, strings.TrimPrefix(value, "stream:"))
			}
		}},
	{"depthwise-tile", "the tile of depthwise.comp (the forward pass, and the data gradient in a pass of its own) on GPUs, width x height x depth, fitted down to the volume (auto: 32x8x8)",
		dwTileChoices, tileTarget(func(g *GPU) **dwTile { return &g.dwTileTarget })},
	{"depthwise-grad-tile", "the tile of depthwise_dw.comp (the weight gradient, and the data gradient made in its pass) on GPUs, width x height x depth, fitted down to the volume (auto: 32x8x8)",
		dwTileChoices, tileTarget(func(g *GPU) **dwTile { return &g.dwGradTileTarget })},
	{"depthwise-backward", "the depthwise data gradient on GPUs: made in the weight gradient's pass, or a pass of its own (auto: fused up to 3³)",
		[]string{"fused", "two-pass"}, onOff("fused", func(g *GPU) **bool { return &g.dwFusedOn })},
	{"depthwise-stats", "a unit's depthwise convolution writes the statistics of its norm, or the norm reads its output again (auto: fused)",
		[]string{"fused", "separate"}, onOff("fused", func(g *GPU) **bool { return &g.dwStatsOn })},
	{"norm", "an instance norm as one norm_fused dispatch per plane, or as chunked passes (auto: fused on CPU devices, and on GPUs for planes of one chunk)",
		[]string{"fused", "chunked"}, onOff("fused", func(g *GPU) **bool { return &g.fusedNormOn })},
	{"gemm-tile", "conv_gemm's tiles on GPUs (dense and transposed convolutions, wide pointwise ones): wide (up to 256 columns), k32 or k8 (K in steps of 32 or 8), each fitted to the product (auto: up to 128 columns, K in steps of 16)",
		[]string{"wide", "k32", "k8"}, func(g *GPU, value string) { g.gemmRule = value }},
	{"direct", "dense and depthwise convolutions on the direct kernels without shared memory, or on the GEMM and tiles (auto: direct on CPU devices)",
		[]string{"on", "off"}, onOff("on", func(g *GPU) **bool { return &g.directOn })},
	{"device-class", "every kernel and size chosen as for a CPU device (direct kernels, texel-buffer inputs, which bind at most the device's maxTexelBufferElements per tensor, one dispatch per norm, register rows) or as for a GPU, which the other choices then override (auto: the device's own class)",
		[]string{"cpu", "gpu"}, func(g *GPU, value string) {
			g.class = map[string]DeviceClass{"": ClassOfDevice, "cpu": ClassCPU, "gpu": ClassGPU}[value]
		}},
}

// dwTileChoices are the values of the choice depthwise-tile: tiles of 256
// invocations (one of 128) from 4 to 16 outputs deep.
var dwTileChoices = []string{"32x8x8", "32x8x4", "32x8x16", "32x4x16", "64x4x8", "16x16x8"}

// dwStreamChoices are the values of depthwise-forward that pick
// depthwise_stream.comp's columns of another shape than its own.
var dwStreamChoices = []string{"stream:32x8x8", "stream:32x8x32", "stream:32x4x32", "stream:64x4x16"}

// parseDWTile reads a tile "WxHxD".
func parseDWTile(s string) (dwTile, bool) {
	var t dwTile
	n, err := fmt.Sscanf(s, "%dx%dx%d", &t.tw, &t.th, &t.td)
	return t, err == nil && n == 3 && t.tw > 0 && t.th > 0 && t.td > 0
}

// KernelChoice is one choice SetKernel takes: its name, what it picks
// between, and its values besides auto.
type KernelChoice struct {
	Name, Doc string
	Values    []string
}

// String is the choice in one line: "name=auto|value|value: what it picks".
func (c KernelChoice) String() string {
	return fmt.Sprintf("%s=auto|%s: %s", c.Name, strings.Join(c.Values, "|"), c.Doc)
}

// KernelChoices lists the choices SetKernel takes.
func KernelChoices() []KernelChoice {
	out := make([]KernelChoice, len(kernelChoices))
	for i, c := range kernelChoices {
		out[i] = KernelChoice{c.name, c.doc, slices.Clone(c.values)}
	}
	return out
}

// CheckKernel reports whether SetKernel takes choice.
func CheckKernel(choice string) error {
	_, _, err := parseKernel(choice)
	return err
}

// parseKernel splits "name=value" into its choice and value.
func parseKernel(choice string) (kernelChoice, string, error) {
	name, value, ok := strings.Cut(choice, "=")
	i := slices.IndexFunc(kernelChoices, func(c kernelChoice) bool { return c.name == name })
	if !ok || i < 0 {
		names := make([]string, len(kernelChoices))
		for j, c := range kernelChoices {
			names[j] = c.name
		}
		return kernelChoice{}, "", fmt.Errorf("kernel choice %q is not NAME=VALUE with NAME one of %s", choice, strings.Join(names, ", "))
	}
	c := kernelChoices[i]
	if value != "auto" && !slices.Contains(c.values, value) {
		return c, "", fmt.Errorf("kernel choice %s takes auto, %s, not %q", name, strings.Join(c.values, ", "), value)
	}
	return c, value, nil
}

// SetKernel overrides one kernel choice, given as "name=value" (see
// KernelChoices); "name=auto" restores the engine's own rule. Kernels
// returns the overrides in force.
func (g *GPU) SetKernel(choice string) error {
	c, value, err := parseKernel(choice)
	if err != nil {
		return fmt.Errorf("ops.SetKernel: %w", err)
	}
	if g.kernelSet == nil {
		g.kernelSet = map[string]string{}
	}
	if value == "auto" {
		c.set(g, "")
		delete(g.kernelSet, c.name)
		return nil
	}
	c.set(g, value)
	g.kernelSet[c.name] = value
	return nil
}

// Kernels returns the kernel choices SetKernel overrides, "name=value",
// sorted.
func (g *GPU) Kernels() []string {
	var out []string
	for name, value := range g.kernelSet {
		out = append(out, name+"="+value)
	}
	slices.Sort(out)
	return out
}
