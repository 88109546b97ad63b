package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// Pointwise convolutions take the memory-bound kernel up to 64 channels and
// the tiled GEMM beyond; both paths, with and without vec4 rows, must match
// the reference.
func TestPointwiseBothPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	var cases []opCase
	for _, c := range []struct {
		n, cin, cout int
		size         ref.Dims3
	}{
		{2, 16, 16, ref.Dims3{4, 4, 8}}, // small kernel, vec4
		{1, 64, 64, ref.Dims3{3, 5, 7}}, // small kernel, scalar
		{3, 1, 17, ref.Dims3{2, 2, 3}},  // small kernel, one input channel
		{1, 65, 3, ref.Dims3{2, 4, 4}},  // GEMM: too many input channels
		{2, 3, 66, ref.Dims3{1, 5, 7}},  // GEMM: too many output channels
		{1, 96, 80, ref.Dims3{3, 3, 3}}, // GEMM both ways
	} {
		c := c
		p := ref.PointwiseParams{N: c.n, Cin: c.cin, Cout: c.cout, Size: c.size}
		x, w, b, dy := randn(r, p.InputLen()), randScaled(r, p.WeightLen(), 0.3), randn(r, p.BiasLen()), randn(r, p.OutputLen())
		name := fmt.Sprintf("N%d-%d→%d-%v", c.n, c.cin, c.cout, c.size)
		cases = append(cases,
			opCase{name + "/fwd", []tensorSpec{input("x", x), input("w", w), input("b", b), output("y", p.OutputLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.PointwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
				}, 1e-5},
			opCase{name + "/fwd-nobias", []tensorSpec{input("x", x), input("w", w), output("y", p.OutputLen())},
				func(e Engine, t map[string]*Tensor) error { return e.PointwiseConv3d(p, t["x"], t["w"], nil, t["y"]) }, 1e-5},
			opCase{name + "/bwd", []tensorSpec{input("x", x), input("w", w), input("dy", dy),
				output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.PointwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
				}, 1e-5},
		)
	}
	checkCases(t, cases)
}
