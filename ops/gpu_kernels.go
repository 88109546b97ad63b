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
	// set points the engine's switch at the value's setting, or at nil
	// for auto.
	set func(g *GPU, on *bool)
}

var kernelChoices = []kernelChoice{
	{"depthwise-forward", "the depthwise forward pass on GPUs: depthwise.comp's tiles or depthwise_stream.comp's columns (auto: tiles)",
		[]string{"stream", "tiles"}, func(g *GPU, on *bool) { g.dwStreamOn = on }},
	{"depthwise-backward", "the depthwise data gradient on GPUs: made in the weight gradient's pass, or a pass of its own (auto: fused up to 3³)",
		[]string{"fused", "two-pass"}, func(g *GPU, on *bool) { g.dwFusedOn = on }},
	{"depthwise-stats", "a unit's depthwise convolution writes the statistics of its norm, or the norm reads its output again (auto: fused)",
		[]string{"fused", "separate"}, func(g *GPU, on *bool) { g.dwStatsOn = on }},
	{"norm", "an instance norm as one norm_fused dispatch per plane, or as chunked passes (auto: fused on CPU devices, and on GPUs for planes of one chunk)",
		[]string{"fused", "chunked"}, func(g *GPU, on *bool) { g.fusedNormOn = on }},
	{"direct", "dense and depthwise convolutions on the direct kernels without shared memory, or on the GEMM and tiles (auto: direct on CPU devices)",
		[]string{"on", "off"}, func(g *GPU, on *bool) { g.directOn = on }},
	{"device-class", "every kernel and size chosen as for a CPU device (direct kernels, texel-buffer inputs, one dispatch per norm, register rows) or as for a GPU, which the other choices then override (auto: the device's own class)",
		[]string{"cpu", "gpu"}, func(g *GPU, cpu *bool) {
			switch {
			case cpu == nil:
				g.class = ClassOfDevice
			case *cpu:
				g.class = ClassCPU
			default:
				g.class = ClassGPU
			}
		}},
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
		c.set(g, nil)
		delete(g.kernelSet, c.name)
		return nil
	}
	on := value == c.values[0]
	c.set(g, &on)
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
