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

// The weight and bias gradients take pointwise_dw for few channel blocks
// and the split-K GEMM beyond; every shape must match the reference both
// ways, including partial channel blocks, scalar rows and several chunks.
func TestPointwiseWeightGradPaths(t *testing.T) {
	g := gpuEngine(t)
	defer func() { g.pwDWMaxBlocks = nil }()
	for _, c := range []struct {
		name      string
		maxBlocks int
	}{{"gemm", 0}, {"pointwise_dw", 1 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(33, 34))
			cases := pointwiseCases(r, []ref.PointwiseParams{
				{N: 1, Cin: 1, Cout: 1, Size: d3(1, 5, 7)},
				{N: 3, Cin: 9, Cout: 7, Size: d3(3, 3, 3)},
				{N: 1, Cin: 17, Cout: 3, Size: d3(5, 6, 7)},
				{N: 2, Cin: 8, Cout: 16, Size: d3(4, 4, 4)},
				{N: 2, Cin: 8, Cout: 8, Size: d3(16, 16, 16)},
				{N: 1, Cin: 64, Cout: 64, Size: d3(2, 3, 5)},
				{N: 2, Cin: 130, Cout: 67, Size: d3(3, 5, 7)},
				// More items than pointwiseOwnItems: on CPU devices a
				// workgroup per block and chunk, scalar and vec4.
				{N: 1, Cin: 3, Cout: 5, Size: d3(17, 19, 61)},
				{N: 1, Cin: 12, Cout: 9, Size: d3(16, 33, 36)},
			})
			max := c.maxBlocks
			g.pwDWMaxBlocks = &max
			checkCases(t, cases)
		})
	}
}

// BenchmarkPointwiseWeightGrad times the weight and bias gradients alone
// by both paths at the channel counts of the network's levels (base 8 and
// 16): -bench 'PointwiseWeightGrad/.*/16' on slow devices.
func BenchmarkPointwiseWeightGrad(b *testing.B) {
	g := gpuEngine(b)
	defer func() { g.pwDWMaxBlocks = nil }()
	for _, s := range benchSizes {
		for _, c := range []int{8, 16, 32, 64} {
			p := ref.PointwiseParams{N: 2, Cin: c, Cout: c, Size: d3(s, s, s)}
			if s >= 64 && c > 16 {
				p.Size = d3(s/2, s/2, s/2) // the level's volume
			}
			r := rand.New(rand.NewPCG(43, 44))
			ts := []tensorSpec{input("x", randn(r, p.InputLen())), input("dy", randn(r, p.OutputLen())),
				input("w", randn(r, p.WeightLen())), output("dw", p.WeightLen()), output("db", p.BiasLen())}
			for _, path := range []struct {
				name      string
				maxBlocks int
			}{{"gemm", 0}, {"pointwise_dw", 1 << 20}} {
				b.Run(fmt.Sprintf("%d→%d/%v/%s", c, c, p.Size[0], path.name), func(b *testing.B) {
					max := path.maxBlocks
					g.pwDWMaxBlocks = &max
					benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
						return e.PointwiseConv3dBackward(p, t["x"], t["w"], t["dy"], nil, t["dw"], t["db"])
					}})
				})
			}
		}
	}
}
