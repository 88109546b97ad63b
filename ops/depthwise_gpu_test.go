package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// depthwiseShapes are awkward sizes: single voxels along an axis, primes,
// one volume of several tiles along every axis, and rows of a multiple of 4
// voxels.
var depthwiseShapes = []struct {
	n, c, k int
	size    ref.Dims3
}{
	{1, 1, 3, ref.Dims3{1, 1, 2}},
	{3, 3, 3, ref.Dims3{1, 5, 7}},
	{1, 17, 3, ref.Dims3{3, 3, 3}},
	{3, 3, 5, ref.Dims3{5, 6, 7}},
	{1, 3, 1, ref.Dims3{13, 1, 9}},
	{1, 64, 3, ref.Dims3{3, 3, 3}},
	{1, 2, 5, ref.Dims3{1, 5, 7}},
	{2, 3, 3, ref.Dims3{17, 19, 23}},
	{1, 1, 7, ref.Dims3{9, 10, 11}},
	// Rows of a multiple of 4 voxels: depthwise_direct loads them as vec4s
	// (one vec4; two blocks along w, the last partial; three; two whole
	// blocks).
	{2, 3, 3, ref.Dims3{5, 7, 4}},
	{1, 2, 5, ref.Dims3{3, 6, 20}},
	{1, 3, 1, ref.Dims3{2, 3, 8}},
	{1, 3, 3, ref.Dims3{4, 9, 36}},
	{1, 2, 5, ref.Dims3{3, 5, 32}},
}

// The GPU accumulates k³ products in fp32 (with fma) where ref uses float64:
// the error is a few ulp of the sums. The weight gradient sums up to ~10⁵
// products per weight in a fixed tree, so its error grows like √terms·ε.
const (
	depthwiseTol   = 1e-6
	depthwiseDWTol = 2e-6
)

func TestDepthwiseGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	var cases []opCase
	for _, s := range depthwiseShapes {
		p := ref.DepthwiseParams{N: s.n, C: s.c, Size: s.size, Kernel: s.k}
		x, w, b := randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())
		dy := randn(r, p.OutputLen())
		name := fmt.Sprintf("N%d-C%d-%v-k%d", s.n, s.c, s.size, s.k)
		cases = append(cases,
			opCase{name + "/fwd", []tensorSpec{input("x", x), input("w", w), input("b", b), output("y", p.OutputLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
				}, depthwiseTol},
			opCase{name + "/fwd-nobias", []tensorSpec{input("x", x), input("w", w), output("y", p.OutputLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3d(p, t["x"], t["w"], nil, t["y"])
				}, depthwiseTol},
			opCase{name + "/bwd", []tensorSpec{input("x", x), input("w", w), input("dy", dy),
				output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
				}, depthwiseDWTol},
		)
	}
	// Some gradients left out.
	p := ref.DepthwiseParams{N: 2, C: 3, Size: ref.Dims3{4, 5, 6}, Kernel: 3}
	x, w, dy := randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.OutputLen())
	cases = append(cases,
		opCase{"bwd-dx-only", []tensorSpec{input("x", x), input("w", w), input("dy", dy), output("dx", p.InputLen())},
			func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], nil, nil)
			}, depthwiseTol},
		opCase{"bwd-dw-only", []tensorSpec{input("x", x), input("w", w), input("dy", dy), output("dw", p.WeightLen())},
			func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], nil, t["dw"], nil)
			}, depthwiseDWTol},
		opCase{"bwd-db-only", []tensorSpec{input("x", x), input("w", w), input("dy", dy), output("db", p.BiasLen())},
			func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], nil, nil, t["db"])
			}, depthwiseDWTol},
	)
	checkCases(t, cases)
}

// depthwisePasses are the forward and the backward case of p, on random
// inputs.
func depthwisePasses(r *rand.Rand, name string, p ref.DepthwiseParams) []opCase {
	x, w, b, dy := randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen()), randn(r, p.OutputLen())
	return []opCase{
		{name + "/fwd", []tensorSpec{input("x", x), input("w", w), input("b", b), output("y", p.OutputLen())},
			func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
			}, depthwiseTol},
		{name + "/bwd", []tensorSpec{input("x", x), input("w", w), input("dy", dy),
			output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())},
			func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
			}, depthwiseDWTol},
	}
}

// Two output columns per invocation along W (a CPU device's choice) under
// the GPU sizes too, in all three kernels, with and without the forward's
// weights in registers (k 3 and 5),
// including rows that end inside a tile. (One per invocation is
// TestDepthwiseGPU's with the GPU sizes; four unroll into shaders that take
// lavapipe seconds to compile.)
func TestDepthwiseOutputsPerInvocation(t *testing.T) {
	g := gpuEngine(t)
	defer func() { g.dwTX = nil }()
	r := rand.New(rand.NewPCG(39, 40))
	var cases []opCase
	for _, p := range []ref.DepthwiseParams{
		{N: 1, C: 1, Size: ref.Dims3{1, 1, 2}, Kernel: 3},
		{N: 2, C: 3, Size: ref.Dims3{17, 19, 23}, Kernel: 3},
		{N: 1, C: 2, Size: ref.Dims3{3, 5, 37}, Kernel: 5},
	} {
		cases = append(cases, depthwisePasses(r, fmt.Sprintf("%v-k%d", p.Size, p.Kernel), p)...)
	}
	tx := 2
	g.dwTX = &tx
	checkCases(t, cases)
}

// With both gradients asked for, the tile kernels make dx in the weight
// gradient's pass (fusedBackward): its dx must have the bits of
// depthwise.comp's, and dw and db those of the pass without dx (the same
// sums in the same order), plain, joined and up-sampled. Kernels above 3³
// and up-sampling blocks that do not divide the tile keep the two passes.
func TestDepthwiseFusedBackward(t *testing.T) {
	g := gpuEngine(t)
	defer func() { g.dwFusedOn = nil }()
	r := rand.New(rand.NewPCG(57, 58))
	for _, c := range []struct {
		p     ref.DepthwiseParams
		split int
		fused bool
	}{
		{ref.DepthwiseParams{N: 1, C: 1, Size: d3(1, 1, 2), Kernel: 3}, 0, true},
		{ref.DepthwiseParams{N: 2, C: 3, Size: d3(17, 19, 23), Kernel: 3}, 0, true},
		{ref.DepthwiseParams{N: 1, C: 4, Size: d3(9, 8, 40), Kernel: 1}, 0, true},
		{ref.DepthwiseParams{N: 2, C: 5, Size: d3(5, 7, 4), Kernel: 3}, 2, true},
		{ref.DepthwiseParams{N: 2, C: 64, Size: d3(3, 6, 8), Kernel: 3}, 32, true},
		{ref.DepthwiseParams{N: 2, C: 3, Size: d3(6, 10, 12), Kernel: 3, Up: two3}, 0, true},
		{ref.DepthwiseParams{N: 1, C: 2, Size: d3(10, 20, 36), Kernel: 3, Up: two3}, 0, true},
		{ref.DepthwiseParams{N: 1, C: 2, Size: d3(4, 6, 9), Kernel: 3, Up: d3(2, 1, 3)}, 0, false},
		{ref.DepthwiseParams{N: 1, C: 2, Size: d3(5, 6, 7), Kernel: 5}, 0, false},
	} {
		p, split := c.p, c.split
		g.SetDeviceClass(ClassGPU)
		if got := g.fusedBackward("test", p); got != c.fused {
			t.Errorf("%v k%d up%v: fusedBackward = %t, want %t", p.Size, p.Kernel, p.Up, got, c.fused)
		}
		g.SetDeviceClass(ClassOfDevice)
		w, dy := randn(r, p.WeightLen()), randn(r, p.OutputLen())
		ts := []tensorSpec{input("w", w), input("dy", dy), output("dw", p.WeightLen()), output("db", p.BiasLen())}
		outs := []string{"dw", "db"}
		run := func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
		}
		if split == 0 {
			ts = append(ts, input("x", randn(r, p.InputLen())), output("dx", p.InputLen()))
			outs = append(outs, "dx")
		} else {
			x1, x2, _, _, _ := joinedTensors(r, p, split)
			ts = append(ts, input("x1", x1), input("x2", x2), output("dx1", len(x1)), output("dx2", len(x2)))
			outs = append(outs, "dx1", "dx2")
			run = func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dJoinedBackward(p, split, t["x1"], t["x2"], t["w"], t["dy"], t["dx1"], t["dx2"],
					t["dw"], t["db"])
			}
		}
		off := false
		separate := func(e Engine, t map[string]*Tensor) error {
			g.dwFusedOn = &off
			defer func() { g.dwFusedOn = nil }()
			return run(e, t)
		}
		checkSameBits(t, fmt.Sprintf("%v k%d up%v split %d", p.Size, p.Kernel, p.Up, split), ts, outs, separate, run)
	}
}

// The weight gradient is a split reduction: it must give the same bits on
// every run.
func TestDepthwiseGPUDeterministic(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(33, 34))
	p := ref.DepthwiseParams{N: 2, C: 3, Size: ref.Dims3{17, 19, 23}, Kernel: 3}
	c := opCase{
		tensors: []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
			input("dy", randn(r, p.OutputLen())), output("dx", p.InputLen()), output("dw", p.WeightLen()),
			output("db", p.BiasLen())},
		run: func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
		},
	}
	checkBitwiseRepeat(t, g, c, 3)
}

// checkBitwiseRepeat runs c runs times on e and fails unless every output has
// the same bits each time.
func checkBitwiseRepeat(t *testing.T, e Engine, c opCase, runs int) {
	t.Helper()
	first, _, err := runOn(e, c)
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run < runs; run++ {
		got, _, err := runOn(e, c)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range first {
			for i, v := range got[name] {
				if math.Float32bits(v) != math.Float32bits(want[i]) {
					t.Fatalf("run %d: %s[%d] = %v, first run %v", run, name, i, v, want[i])
				}
			}
		}
	}
}

func TestDepthwiseGPUErrors(t *testing.T) {
	g := gpuEngine(t)
	p := ref.DepthwiseParams{N: 1, C: 2, Size: ref.Dims3{2, 3, 4}, Kernel: 3}
	alloc := allocator(t, g)
	x, w, b, y := alloc(p.InputLen()), alloc(p.WeightLen()), alloc(p.BiasLen()), alloc(p.OutputLen())
	short := alloc(p.InputLen() - 1)
	even := p
	even.Kernel = 2
	cases := []struct {
		name, op string
		err      error
	}{
		{"short x", "DepthwiseConv3d", g.DepthwiseConv3d(p, short, w, b, y)},
		{"missing w", "DepthwiseConv3d", g.DepthwiseConv3d(p, x, nil, b, y)},
		{"bias length", "DepthwiseConv3d", g.DepthwiseConv3d(p, x, w, w, y)},
		{"even kernel", "DepthwiseConv3d", g.DepthwiseConv3d(even, x, w, b, y)},
		{"short dy", "DepthwiseConv3dBackward", g.DepthwiseConv3dBackward(p, x, w, short, x, w, b)},
		{"missing dy", "DepthwiseConv3dBackward", g.DepthwiseConv3dBackward(p, x, w, nil, x, w, b)},
		{"dw length", "DepthwiseConv3dBackward", g.DepthwiseConv3dBackward(p, x, w, y, x, b, b)},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		} else if !strings.Contains(c.err.Error(), "ops."+c.op+":") {
			t.Errorf("%s: error %q does not name ops.%s", c.name, c.err, c.op)
		}
	}
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkDepthwise times the 3³ depthwise convolution at the DESIGN.md §8
// shape (2×32×64³) and at a small one that lavapipe runs quickly.
func BenchmarkDepthwise(b *testing.B) {
	for _, s := range []struct {
		name string
		p    ref.DepthwiseParams
	}{
		{"2x32x64^3", ref.DepthwiseParams{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}, Kernel: 3}},
		{"1x8x16^3", ref.DepthwiseParams{N: 1, C: 8, Size: ref.Dims3{16, 16, 16}, Kernel: 3}},
	} {
		p := s.p
		r := rand.New(rand.NewPCG(35, 36))
		x, w, bias := randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())
		dy := randn(r, p.OutputLen())
		b.Run(s.name+"/fwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{
				tensors: []tensorSpec{input("x", x), input("w", w), input("b", bias), output("y", p.OutputLen())},
				run: func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
				}})
		})
		b.Run(s.name+"/fwd-stream", func(b *testing.B) {
			g := gpuEngine(b)
			on := true
			g.dwStreamOn = &on
			defer func() { g.dwStreamOn = nil }()
			benchCase(b, g, opCase{
				tensors: []tensorSpec{input("x", x), input("w", w), input("b", bias), output("y", p.OutputLen())},
				run: func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
				}})
		})
		b.Run(s.name+"/fwd+bwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{
				tensors: []tensorSpec{input("x", x), input("w", w), input("b", bias), input("dy", dy),
					output("y", p.OutputLen()), output("dx", p.InputLen()), output("dw", p.WeightLen()),
					output("db", p.BiasLen())},
				run: func(e Engine, t map[string]*Tensor) error {
					if err := e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"]); err != nil {
						return err
					}
					return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
				}})
		})
		// The backward pass alone, with dx made in the weight gradient's
		// pass (fusedBackward) and in a pass of its own: on a GPU (CPU
		// devices take the direct kernels either way).
		for _, fused := range []bool{true, false} {
			name := map[bool]string{true: "/bwd", false: "/bwd-two-passes"}[fused]
			b.Run(s.name+name, func(b *testing.B) {
				g := gpuEngine(b)
				g.dwFusedOn = &fused
				defer func() { g.dwFusedOn = nil }()
				benchCase(b, g, opCase{
					tensors: []tensorSpec{input("x", x), input("w", w), input("dy", dy),
						output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())},
					run: func(e Engine, t map[string]*Tensor) error {
						return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
					}})
			})
		}
	}
}

// depthwise_direct unrolls the kernel's taps: it takes kernels up to
// directDWMaxK, the tile kernels the larger ones. (TestDepthwiseGPU's
// shapes run under both device classes, so through both kernels.)
func TestDepthwiseDirectKernels(t *testing.T) {
	g := gpuEngine(t)
	on := true
	g.directOn = &on
	defer func() { g.directOn = nil }()
	for k, want := range map[int]bool{1: true, 3: true, 5: true, 7: false} {
		p := ref.DepthwiseParams{N: 1, C: 1, Size: ref.Dims3{4, 4, 4}, Kernel: k}
		if got := g.directDepthwise(p); got != want {
			t.Errorf("directDepthwise(kernel %d) = %t, want %t", k, got, want)
		}
	}
}

// BenchmarkDepthwiseDirect times each pass of the 3³ depthwise convolution
// at the network's level shapes (base 8, 32³) through depthwise_direct and
// through the shared-memory tile kernels. CPU devices take the direct
// kernel; GPUs the tiles until this compares the two there.
func BenchmarkDepthwiseDirect(b *testing.B) {
	g := gpuEngine(b)
	defer func() { g.directOn = nil }()
	for _, p := range []ref.DepthwiseParams{
		{N: 1, C: 8, Size: ref.Dims3{32, 32, 32}, Kernel: 3},
		{N: 1, C: 16, Size: ref.Dims3{16, 16, 16}, Kernel: 3},
		{N: 1, C: 32, Size: ref.Dims3{8, 8, 8}, Kernel: 3},
		{N: 1, C: 64, Size: ref.Dims3{4, 4, 4}, Kernel: 3},
	} {
		r := rand.New(rand.NewPCG(37, 38))
		ts := []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
			input("b", randn(r, p.BiasLen())), input("dy", randn(r, p.OutputLen())), output("y", p.OutputLen()),
			output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())}
		for _, pass := range []struct {
			name string
			run  func(e Engine, t map[string]*Tensor) error
		}{
			{"fwd", func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
			}},
			{"dx", func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], nil, nil)
			}},
			{"dw+db", func(e Engine, t map[string]*Tensor) error {
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], nil, t["dw"], t["db"])
			}},
		} {
			for _, path := range []struct {
				name   string
				direct bool
			}{{"direct", true}, {"tiles", false}} {
				b.Run(fmt.Sprintf("%dx%v/%s/%s", p.C, p.Size[0], pass.name, path.name), func(b *testing.B) {
					g.directOn = &path.direct
					benchCase(b, g, opCase{tensors: ts, run: pass.run})
				})
			}
		}
	}
}

// A depthwise convolution of an up-sampled input: factors of 2 on every
// axis (the network's), on some, and 3; rows of a multiple of 4 voxels,
// which depthwise_direct then reads as floats; kernels for the direct and
// the tile kernels; one voxel along an axis before up-sampling; volumes of
// one tile and of several.
func TestDepthwiseUpGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(47, 48))
	var cases []opCase
	for _, p := range []ref.DepthwiseParams{
		{N: 2, C: 3, Size: d3(6, 10, 12), Kernel: 3, Up: two3},
		{N: 1, C: 5, Size: d3(5, 8, 14), Kernel: 3, Up: d3(1, 2, 2)},
		{N: 3, C: 1, Size: d3(2, 2, 2), Kernel: 3, Up: two3},
		{N: 1, C: 2, Size: d3(4, 6, 9), Kernel: 5, Up: d3(2, 1, 3)},
		{N: 2, C: 2, Size: d3(6, 6, 8), Kernel: 7, Up: two3},
		{N: 1, C: 17, Size: d3(8, 8, 8), Kernel: 3, Up: two3},
		// Several tiles (and blocks) along every axis, the last partial.
		{N: 1, C: 2, Size: d3(10, 20, 36), Kernel: 3, Up: two3},
	} {
		name := fmt.Sprintf("N%d-C%d-%v-k%d-up%v", p.N, p.C, p.Size, p.Kernel, p.Up)
		cases = append(cases, depthwisePasses(r, name, p)...)
	}
	checkCases(t, cases)
}

// joinedShapes split the input of depthwise shapes in two: one channel on
// either side, batches above one (whose parts interleave differently from
// the concatenation), kernels for both the direct and the tile kernels.
var joinedShapes = []struct {
	n, c, split, k int
	size           ref.Dims3
}{
	{1, 2, 1, 3, ref.Dims3{1, 1, 2}},
	{3, 5, 1, 3, ref.Dims3{1, 5, 7}},
	{3, 5, 4, 3, ref.Dims3{1, 5, 7}},
	{2, 17, 8, 3, ref.Dims3{3, 3, 3}},
	{2, 6, 3, 5, ref.Dims3{5, 6, 7}},
	{2, 3, 2, 3, ref.Dims3{17, 19, 23}},
	{2, 5, 2, 7, ref.Dims3{9, 10, 11}},
	{2, 7, 3, 3, ref.Dims3{5, 7, 4}},
	{2, 64, 32, 3, ref.Dims3{3, 6, 8}},
}

// joinedTensors are a joined case's tensors: the parts of x, and with
// backward those of dx.
func joinedTensors(r *rand.Rand, p ref.DepthwiseParams, split int) (x1, x2, w, b, dy []float32) {
	v := p.N * p.Size.Voxels()
	return randn(r, v*split), randn(r, v*(p.C-split)), randn(r, p.WeightLen()), randn(r, p.BiasLen()),
		randn(r, p.OutputLen())
}

func TestDepthwiseJoinedGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	var cases []opCase
	for _, s := range joinedShapes {
		p := ref.DepthwiseParams{N: s.n, C: s.c, Size: s.size, Kernel: s.k}
		x1, x2, w, b, dy := joinedTensors(r, p, s.split)
		split := s.split
		name := fmt.Sprintf("N%d-C%d-split%d-%v-k%d", s.n, s.c, s.split, s.size, s.k)
		cases = append(cases,
			opCase{name + "/fwd", []tensorSpec{input("x1", x1), input("x2", x2), input("w", w), input("b", b),
				output("y", p.OutputLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3dJoined(p, split, t["x1"], t["x2"], t["w"], t["b"], t["y"])
				}, depthwiseTol},
			opCase{name + "/bwd", []tensorSpec{input("x1", x1), input("x2", x2), input("w", w), input("dy", dy),
				output("dx1", len(x1)), output("dx2", len(x2)), output("dw", p.WeightLen()), output("db", p.BiasLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3dJoinedBackward(p, split, t["x1"], t["x2"], t["w"], t["dy"],
						t["dx1"], t["dx2"], t["dw"], t["db"])
				}, depthwiseDWTol},
			opCase{name + "/bwd-dw-only", []tensorSpec{input("x1", x1), input("x2", x2), input("w", w),
				input("dy", dy), output("dw", p.WeightLen())},
				func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3dJoinedBackward(p, split, t["x1"], t["x2"], t["w"], t["dy"],
						nil, nil, t["dw"], nil)
				}, depthwiseDWTol},
		)
	}
	checkCases(t, cases)
}

// A joined convolution runs the same kernels in the same order as one of
// the built concatenation, so on the GPU its results must be the same bits
// as Concat then DepthwiseConv3d (and, backward, Split after it), under
// both device classes' kernels.
func TestDepthwiseJoinedMatchesConcat(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, s := range joinedShapes {
		p := ref.DepthwiseParams{N: s.n, C: s.c, Size: s.size, Kernel: s.k}
		cp := ref.ConcatParams{N: s.n, Channels: []int{s.split, s.c - s.split}, Size: s.size}
		x1, x2, w, b, dy := joinedTensors(r, p, s.split)
		ts := []tensorSpec{input("x1", x1), input("x2", x2), input("w", w), input("b", b), input("dy", dy),
			output("x", p.InputLen()), output("y", p.OutputLen()), output("dx", p.InputLen()),
			output("dx1", len(x1)), output("dx2", len(x2)), output("dw", p.WeightLen()), output("db", p.BiasLen())}
		built := func(e Engine, t map[string]*Tensor) error {
			parts := func(a, b string) []*Tensor { return []*Tensor{t[a], t[b]} }
			if err := e.Concat(cp, parts("x1", "x2"), t["x"]); err != nil {
				return err
			}
			if err := e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"]); err != nil {
				return err
			}
			if err := e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"]); err != nil {
				return err
			}
			return e.Split(cp, t["dx"], parts("dx1", "dx2"))
		}
		joined := func(e Engine, t map[string]*Tensor) error {
			if err := e.DepthwiseConv3dJoined(p, s.split, t["x1"], t["x2"], t["w"], t["b"], t["y"]); err != nil {
				return err
			}
			return e.DepthwiseConv3dJoinedBackward(p, s.split, t["x1"], t["x2"], t["w"], t["dy"],
				t["dx1"], t["dx2"], t["dw"], t["db"])
		}
		checkSameBits(t, fmt.Sprintf("%v split %d", s.size, s.split), ts, []string{"y", "dx1", "dx2", "dw", "db"}, built, joined)
	}
}

func TestDepthwiseJoinedErrors(t *testing.T) {
	p := ref.DepthwiseParams{N: 2, C: 3, Size: ref.Dims3{2, 3, 4}, Kernel: 3}
	v := p.N * p.Size.Voxels()
	for _, e := range []Engine{gpuEngine(t), NewCPU()} {
		alloc := allocator(t, e)
		x1, x2, w, b, y := alloc(v), alloc(2*v), alloc(p.WeightLen()), alloc(p.BiasLen()), alloc(p.OutputLen())
		cases := []struct {
			name, op, want string
			err            error
		}{
			{"split 0", "DepthwiseConv3dJoined", "split 0",
				e.DepthwiseConv3dJoined(p, 0, x1, x2, w, b, y)},
			{"split C", "DepthwiseConv3dJoined", "split 3",
				e.DepthwiseConv3dJoined(p, 3, x1, x2, w, b, y)},
			{"parts swapped", "DepthwiseConv3dJoined", "x1 has",
				e.DepthwiseConv3dJoined(p, 1, x2, x1, w, b, y)},
			{"missing x2", "DepthwiseConv3dJoined", "x2 is missing",
				e.DepthwiseConv3dJoined(p, 1, x1, nil, w, b, y)},
			{"one gradient part", "DepthwiseConv3dJoinedBackward", "dx1 and dx2",
				e.DepthwiseConv3dJoinedBackward(p, 1, x1, x2, w, y, x1, nil, w, b)},
			{"short dx2", "DepthwiseConv3dJoinedBackward", "dx2 has",
				e.DepthwiseConv3dJoinedBackward(p, 1, x1, x2, w, y, x1, x1, w, b)},
			{"up-sampled", "DepthwiseConv3dJoined", "cannot be up-sampled",
				e.DepthwiseConv3dJoined(ref.DepthwiseParams{N: 2, C: 3, Size: ref.Dims3{2, 6, 4}, Kernel: 3, Up: two3},
					1, x1, x2, w, b, y)},
		}
		for _, c := range cases {
			if c.err == nil {
				t.Errorf("%s: %s: accepted", e.Name(), c.name)
			} else if msg := c.err.Error(); !strings.Contains(msg, "ops."+c.op+":") || !strings.Contains(msg, c.want) {
				t.Errorf("%s: %s: error %q does not name ops.%s and %q", e.Name(), c.name, msg, c.op, c.want)
			}
		}
		if err := e.Sync(); err != nil {
			t.Errorf("%s: Sync after refused calls: %v", e.Name(), err)
		}
	}
}

// BenchmarkDepthwiseJoined times a decoder's first depthwise convolution,
// forward and backward, on the concatenation of its two inputs: built by
// Concat (and its gradient split by Split), against read in place. The
// shapes are the network's level 0 at base 8, 32³, and the DESIGN.md §8
// shape (2×32×64³) as two halves.
func BenchmarkDepthwiseJoined(b *testing.B) {
	g := gpuEngine(b)
	for _, p := range []ref.DepthwiseParams{
		{N: 1, C: 16, Size: ref.Dims3{32, 32, 32}, Kernel: 3},
		{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}, Kernel: 3},
	} {
		split := p.C / 2
		cp := ref.ConcatParams{N: p.N, Channels: []int{split, p.C - split}, Size: p.Size}
		r := rand.New(rand.NewPCG(45, 46))
		x1, x2, w, bias, dy := joinedTensors(r, p, split)
		ts := []tensorSpec{input("x1", x1), input("x2", x2), input("w", w), input("b", bias), input("dy", dy),
			output("x", p.InputLen()), output("y", p.OutputLen()), output("dx", p.InputLen()),
			output("dx1", len(x1)), output("dx2", len(x2)), output("dw", p.WeightLen()), output("db", p.BiasLen())}
		name := fmt.Sprintf("%dx%dx%d^3", p.N, p.C, p.Size[0])
		b.Run(name+"/concat", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.Concat(cp, []*Tensor{t["x1"], t["x2"]}, t["x"]); err != nil {
					return err
				}
				if err := e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"]); err != nil {
					return err
				}
				if err := e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"]); err != nil {
					return err
				}
				return e.Split(cp, t["dx"], []*Tensor{t["dx1"], t["dx2"]})
			}})
		})
		b.Run(name+"/joined", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.DepthwiseConv3dJoined(p, split, t["x1"], t["x2"], t["w"], t["b"], t["y"]); err != nil {
					return err
				}
				return e.DepthwiseConv3dJoinedBackward(p, split, t["x1"], t["x2"], t["w"], t["dy"],
					t["dx1"], t["dx2"], t["dw"], t["db"])
			}})
		})
	}
}

// BenchmarkDepthwiseUp times a decoder's depthwise convolution of its
// up-sampled path (nearest, factor 2), forward and backward: Upsample then
// the convolution (and its data gradient then UpsampleBackward), against
// the convolution reading the deeper level in place. The shapes are the
// network's level 0 at base 8, 32³, and the DESIGN.md §8 shape.
func BenchmarkDepthwiseUp(b *testing.B) {
	g := gpuEngine(b)
	for _, p := range []ref.DepthwiseParams{
		{N: 1, C: 16, Size: ref.Dims3{32, 32, 32}, Kernel: 3, Up: two3},
		{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}, Kernel: 3, Up: two3},
	} {
		u := ref.UpsampleParams{N: p.N, C: p.C, In: p.InputSize(), Factor: p.Up}
		plain := p
		plain.Up = ref.Dims3{}
		r := rand.New(rand.NewPCG(49, 50))
		ts := []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
			input("b", randn(r, p.BiasLen())), input("dy", randn(r, p.OutputLen())),
			output("up", u.OutputLen()), output("dup", u.OutputLen()), output("y", p.OutputLen()),
			output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())}
		name := fmt.Sprintf("%dx%dx%d^3", p.N, p.C, p.Size[0])
		b.Run(name+"/upsample", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.Upsample(u, t["x"], t["up"]); err != nil {
					return err
				}
				if err := e.DepthwiseConv3d(plain, t["up"], t["w"], t["b"], t["y"]); err != nil {
					return err
				}
				if err := e.DepthwiseConv3dBackward(plain, t["up"], t["w"], t["dy"], t["dup"], t["dw"], t["db"]); err != nil {
					return err
				}
				return e.UpsampleBackward(u, t["dup"], t["dx"])
			}})
		})
		b.Run(name+"/in-place", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"]); err != nil {
					return err
				}
				return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
			}})
		})
	}
}

// depthwiseStatsShapes are DepthwiseConv3dStats' cases: plain (two voxels,
// primes, a row of one vec4, several tiles along every axis with the last
// partial, 64 channels, k 5), joined (split > 0) and up-sampled.
var depthwiseStatsShapes = []struct {
	p     ref.DepthwiseParams
	split int
}{
	{ref.DepthwiseParams{N: 1, C: 1, Size: d3(1, 1, 2), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 3, C: 3, Size: d3(1, 5, 7), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 2, C: 3, Size: d3(5, 7, 4), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 2, C: 3, Size: d3(17, 19, 23), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 1, C: 2, Size: d3(19, 37, 41), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 1, C: 64, Size: d3(3, 3, 3), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 1, C: 2, Size: d3(5, 6, 7), Kernel: 5}, 0},
	{ref.DepthwiseParams{N: 2, C: 5, Size: d3(1, 5, 7), Kernel: 3}, 1},
	{ref.DepthwiseParams{N: 2, C: 64, Size: d3(3, 6, 8), Kernel: 3}, 32},
	{ref.DepthwiseParams{N: 2, C: 3, Size: d3(6, 10, 12), Kernel: 3, Up: two3}, 0},
	{ref.DepthwiseParams{N: 1, C: 2, Size: d3(10, 20, 36), Kernel: 3, Up: two3}, 0},
}

// depthwiseStatsCase is DepthwiseConv3dStats of p on random inputs whose
// outputs have a mean of a few standard deviations (the bias is 3 + 2·N(0,
// 1)), against the reference's convolution and float64 statistics.
func depthwiseStatsCase(r *rand.Rand, p ref.DepthwiseParams, split int) opCase {
	np := ref.NormParams{N: p.N, C: p.C, Size: p.Size, Eps: ref.DefaultNormEps}
	xLen := p.N * p.Size.Voxels() * p.C / p.UpFactor().Voxels()
	ts := []tensorSpec{input("w", randn(r, p.WeightLen())), input("b", normInput(r, p.BiasLen())),
		output("y", p.OutputLen()), output("mean", np.StatsLen()), output("invStd", np.StatsLen())}
	x2 := func(map[string]*Tensor) *Tensor { return nil }
	if split > 0 {
		v := p.N * p.Size.Voxels()
		ts = append(ts, input("x1", randn(r, v*split)), input("x2", randn(r, v*(p.C-split))))
		x2 = func(t map[string]*Tensor) *Tensor { return t["x2"] }
	} else {
		ts = append(ts, input("x1", randn(r, xLen)))
	}
	return opCase{fmt.Sprintf("N%d-C%d-%v-k%d-up%v-split%d", p.N, p.C, p.Size, p.Kernel, p.Up, split), ts,
		func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dStats(p, np, split, t["x1"], x2(t), t["w"], t["b"], t["y"], t["mean"], t["invStd"])
		}, normTol}
}

// DepthwiseConv3dStats: the convolution and the statistics of its output
// against the reference, under both device classes' kernels, with the
// statistics from the convolution's tiles and, for some shapes, read again
// from y (dwStatsOn false); y must have the bits of DepthwiseConv3d's (or
// the joined one's).
func TestDepthwiseStats(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(59, 60))
	var cases []opCase
	for _, s := range depthwiseStatsShapes {
		cases = append(cases, depthwiseStatsCase(r, s.p, s.split))
	}
	checkCases(t, cases)

	off := false
	g.dwStatsOn = &off
	checkCases(t, []opCase{cases[3], cases[7], cases[9]})
	g.dwStatsOn = nil

	for i, s := range depthwiseStatsShapes {
		p, split := s.p, s.split
		plain := func(e Engine, t map[string]*Tensor) error {
			if split > 0 {
				return e.DepthwiseConv3dJoined(p, split, t["x1"], t["x2"], t["w"], t["b"], t["y"])
			}
			return e.DepthwiseConv3d(p, t["x1"], t["w"], t["b"], t["y"])
		}
		checkSameBits(t, cases[i].name, cases[i].tensors, []string{"y"}, plain, cases[i].run)
	}
}

// Both engines refuse DepthwiseConv3dStats' bad arguments, naming it and
// what is wrong.
func TestDepthwiseStatsErrors(t *testing.T) {
	g := gpuEngine(t)
	p := ref.DepthwiseParams{N: 2, C: 3, Size: d3(2, 3, 4), Kernel: 3}
	np := ref.NormParams{N: 2, C: 3, Size: p.Size, Eps: ref.DefaultNormEps}
	wide, badEps := np, np
	wide.C = 4
	badEps.Eps = 0
	for _, e := range []Engine{g, NewCPU()} {
		alloc := allocator(t, e)
		x, w, b, y := alloc(p.InputLen()), alloc(p.WeightLen()), alloc(p.BiasLen()), alloc(p.OutputLen())
		mean, invStd := alloc(np.StatsLen()), alloc(np.StatsLen())
		half := alloc(p.InputLen() / 3)
		foreign := allocator(t, NewCPU())(np.StatsLen())
		for _, c := range []struct {
			name, want string
			err        error
		}{
			{"norm of another shape", "not the output's", e.DepthwiseConv3dStats(p, wide, 0, x, nil, w, b, y, mean, invStd)},
			{"bad eps", "eps", e.DepthwiseConv3dStats(p, badEps, 0, x, nil, w, b, y, mean, invStd)},
			{"missing mean", "mean is missing", e.DepthwiseConv3dStats(p, np, 0, x, nil, w, b, y, nil, invStd)},
			{"short invStd", "invStd has", e.DepthwiseConv3dStats(p, np, 0, x, nil, w, b, y, mean, w)},
			{"short x", "x1 has", e.DepthwiseConv3dStats(p, np, 0, half, nil, w, b, y, mean, invStd)},
			{"joined split", "split 3", e.DepthwiseConv3dStats(p, np, 3, half, half, w, b, y, mean, invStd)},
			{"another engine's mean", "another engine", e.DepthwiseConv3dStats(p, np, 0, x, nil, w, b, y, foreign, invStd)},
		} {
			if c.err == nil || !strings.Contains(c.err.Error(), "ops.DepthwiseConv3dStats:") ||
				!strings.Contains(c.err.Error(), c.want) {
				t.Errorf("%s: %s: error %v, want ops.DepthwiseConv3dStats: … %s", e.Name(), c.name, c.err, c.want)
			}
		}
	}
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkDepthwiseStats times DepthwiseConv3dStats with the statistics
// made by the convolution's kernel ("fused"; "fused-stream" with
// depthwise_stream on a GPU) and read again from its output ("separate"),
// at the DESIGN.md §8 shape and at network levels that lavapipe runs
// quickly.
func BenchmarkDepthwiseStats(b *testing.B) {
	for _, s := range []struct {
		name string
		p    ref.DepthwiseParams
	}{
		{"2x32x64^3", ref.DepthwiseParams{N: 2, C: 32, Size: d3(64, 64, 64), Kernel: 3}},
		{"1x8x32^3", ref.DepthwiseParams{N: 1, C: 8, Size: d3(32, 32, 32), Kernel: 3}},
		{"1x16x16^3", ref.DepthwiseParams{N: 1, C: 16, Size: d3(16, 16, 16), Kernel: 3}},
	} {
		c := depthwiseStatsCase(rand.New(rand.NewPCG(61, 62)), s.p, 0)
		for _, v := range []struct {
			name          string
			fused, stream bool
		}{{"fused", true, false}, {"separate", false, false}, {"fused-stream", true, true}} {
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				g := gpuEngine(b)
				g.dwStatsOn, g.dwStreamOn = &v.fused, &v.stream
				defer func() { g.dwStatsOn, g.dwStreamOn = nil, nil }()
				benchCase(b, g, c)
			})
		}
	}
}

// dwTileSweep are depthwise.comp tilings (tile width, height, depth and
// outputs per invocation along W) that BenchmarkDepthwiseTiles times on a
// device, the first being what depthwiseTile picks for the §8 shape.
var dwTileSweep = []struct {
	t  dwTile
	tx int
}{
	{dwTile{32, 8, 8}, 1}, {dwTile{32, 8, 16}, 1}, {dwTile{32, 4, 16}, 1}, {dwTile{32, 16, 4}, 1},
	{dwTile{32, 8, 4}, 1}, {dwTile{32, 4, 32}, 1}, {dwTile{16, 16, 8}, 1},
	{dwTile{32, 8, 8}, 2}, {dwTile{64, 4, 8}, 2}, {dwTile{64, 8, 8}, 2},
}

// dwStreamSweep are depthwise_stream.comp's tilings (column width, height
// and depth) that BenchmarkDepthwiseTiles times, the first being what
// streamTile picks for the §8 shape.
var dwStreamSweep = []dwTile{
	{32, 8, 16}, {32, 8, 8}, {32, 8, 32}, {32, 8, 64}, {32, 4, 32}, {32, 16, 16}, {64, 4, 16}, {64, 8, 16},
	{16, 16, 16}, {128, 2, 32},
}

// withDWTile runs f with the tiles of depthwise.comp and depthwise_dw.comp
// and their outputs per invocation overridden.
func withDWTile(g *GPU, t dwTile, tx int, f func()) {
	g.dwTileOver, g.dwGradTileOver, g.dwTX = &t, &t, &tx
	defer func() { g.dwTileOver, g.dwGradTileOver, g.dwTX = nil, nil, nil }()
	f()
}

// depthwiseTileCases are what the depthwise tiles compute for p: the
// forward pass with statistics (first), the data gradient alone and, with
// bwd, the whole backward pass.
func depthwiseTileCases(r *rand.Rand, p ref.DepthwiseParams, bwd bool) []opCase {
	cases := []opCase{depthwiseStatsCase(r, p, 0)}
	x, w, dy := randn(r, p.N*p.C*p.Size.Voxels()/p.UpFactor().Voxels()), randn(r, p.WeightLen()), randn(r, p.OutputLen())
	cases = append(cases, opCase{fmt.Sprintf("%v-up%v/dx", p.Size, p.Up),
		[]tensorSpec{input("x", x), input("w", w), input("dy", dy), output("dx", len(x))},
		func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], nil, nil)
		}, depthwiseTol})
	if !bwd {
		return cases
	}
	return append(cases, opCase{fmt.Sprintf("%v-up%v/bwd", p.Size, p.Up),
		[]tensorSpec{input("x", x), input("w", w), input("dy", dy), output("dx", len(x)),
			output("dw", p.WeightLen()), output("db", p.BiasLen())},
		func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
		}, depthwiseDWTol})
}

// Every tiling of the sweep computes the forward pass (plain, with
// statistics, of an up-sampled input), the data gradient (its own pass,
// with up-sampling block sums) and the whole backward pass (dx made in the
// weight gradient's pass) right on shapes that end inside tiles.
func TestDepthwiseTileSweep(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(63, 64))
	var cases []opCase
	forward := map[string]bool{} // the forward passes, which depthwise_stream also computes
	for _, p := range []ref.DepthwiseParams{
		{N: 2, C: 3, Size: d3(17, 19, 23), Kernel: 3},
		{N: 1, C: 2, Size: d3(10, 20, 36), Kernel: 3, Up: two3},
	} {
		// The fused backward of an up-sampled input: TestDepthwiseFusedBackward's tiles.
		tc := depthwiseTileCases(r, p, p.Up == (ref.Dims3{}))
		forward[tc[0].name] = true
		cases = append(cases, tc...)
	}
	g.SetDeviceClass(ClassGPU) // CPU devices' sizes take depthwise_direct
	defer func() { g.SetDeviceClass(ClassOfDevice); g.dwStreamOn = nil }()
	cpu := NewCPU()
	check := func(c opCase, want map[string][]float32, tile dwTile, tx int, stream bool) {
		g.dwStreamOn = &stream
		withDWTile(g, tile, tx, func() {
			got, _, err := runOn(g, c)
			if err != nil {
				t.Fatalf("%s, tile %v tx %d stream %t: %v", c.name, tile, tx, stream, err)
			}
			for n := range want {
				if e := ref.RelL2(got[n], want[n]); !(e <= c.tol) {
					t.Errorf("%s, tile %v tx %d stream %t: %s: relative L2 error %.3g > %.3g%s", c.name, tile, tx, stream,
						n, e, c.tol, firstBad(got[n], want[n]))
				}
			}
		})
	}
	for _, c := range cases {
		want, _, err := runOn(cpu, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range dwTileSweep {
			check(c, want, s.t, s.tx, false)
		}
		if forward[c.name] {
			for _, s := range dwStreamSweep {
				check(c, want, s, 1, true)
			}
		}
	}
}

// Each value of the kernel choices depthwise-tile, depthwise-grad-tile and
// (streamed columns) depthwise-forward, fitted to volumes larger and
// smaller than it, computes what it is the tile of right: the forward pass
// with statistics and the data gradient in its own pass, the whole
// backward pass with the data gradient made in the weight gradient's.
func TestDepthwiseTileChoice(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(65, 66))
	var cases []opCase
	for _, p := range []ref.DepthwiseParams{
		{N: 2, C: 3, Size: d3(17, 19, 23), Kernel: 3},
		{N: 1, C: 2, Size: d3(3, 5, 7), Kernel: 3},
		{N: 1, C: 2, Size: d3(6, 10, 36), Kernel: 3, Up: two3},
	} {
		cases = append(cases, depthwiseTileCases(r, p, true)...)
	}
	defer g.SetKernels(nil)
	cpu := NewCPU()
	for _, c := range cases {
		want, _, err := runOn(cpu, c)
		if err != nil {
			t.Fatal(err)
		}
		// The forward pass and the data gradient in its own pass take
		// depthwise.comp's or depthwise_stream.comp's tiles, the whole
		// backward pass (dx in the weight gradient's) depthwise_dw.comp's.
		var choices []string
		switch {
		case strings.HasSuffix(c.name, "/bwd"):
			for _, v := range dwTileChoices {
				choices = append(choices, "depthwise-grad-tile="+v)
			}
		case strings.HasSuffix(c.name, "/dx"):
			for _, v := range dwTileChoices {
				choices = append(choices, "depthwise-tile="+v)
			}
		default:
			for _, v := range dwTileChoices {
				choices = append(choices, "depthwise-tile="+v)
			}
			for _, v := range dwStreamChoices {
				choices = append(choices, "depthwise-forward="+v)
			}
		}
		for _, choice := range choices {
			backward := "depthwise-backward=two-pass"
			if strings.HasSuffix(c.name, "/bwd") {
				backward = "depthwise-backward=fused"
			}
			if err := g.SetKernels([]string{"device-class=gpu", backward, choice}); err != nil {
				t.Fatal(err)
			}
			got, _, err := runOn(g, c)
			if err != nil {
				t.Fatalf("%s, %s: %v", c.name, choice, err)
			}
			for n := range want {
				if e := ref.RelL2(got[n], want[n]); !(e <= c.tol) {
					t.Errorf("%s, %s: %s: relative L2 error %.3g > %.3g%s", c.name, choice, n, e, c.tol, firstBad(got[n], want[n]))
				}
			}
		}
	}
}

// BenchmarkDepthwiseTiles times the forward and the backward pass (dx made
// in the weight gradient's) at the §8 shape under each tiling of
// dwTileSweep: on a GPU (CPU devices take depthwise_direct).
func BenchmarkDepthwiseTiles(b *testing.B) {
	p := ref.DepthwiseParams{N: 2, C: 32, Size: d3(64, 64, 64), Kernel: 3}
	r := rand.New(rand.NewPCG(65, 66))
	ts := []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
		input("b", randn(r, p.BiasLen())), input("dy", randn(r, p.OutputLen())), output("y", p.OutputLen()),
		output("dx", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())}
	for _, pass := range []struct {
		name string
		run  func(e Engine, t map[string]*Tensor) error
	}{
		{"fwd", func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
		}},
		{"bwd", func(e Engine, t map[string]*Tensor) error {
			return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
		}},
	} {
		for _, s := range dwTileSweep {
			b.Run(fmt.Sprintf("%s/%dx%dx%d-tx%d", pass.name, s.t.tw, s.t.th, s.t.td, s.tx), func(b *testing.B) {
				g := gpuEngine(b)
				withDWTile(g, s.t, s.tx, func() { benchCase(b, g, opCase{tensors: ts, run: pass.run}) })
			})
		}
	}
	on := true
	for _, t := range dwStreamSweep {
		b.Run(fmt.Sprintf("fwd-stream/%dx%dx%d", t.tw, t.th, t.td), func(b *testing.B) {
			g := gpuEngine(b)
			g.dwStreamOn = &on
			defer func() { g.dwStreamOn = nil }()
			withDWTile(g, t, 1, func() {
				benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
					return e.DepthwiseConv3d(p, t["x"], t["w"], t["b"], t["y"])
				}})
			})
		})
	}
}

// depthwise_stream adds each output's products in depthwise.comp's order
// (input planes, then rows, then columns, from the bias up), so its forward
// pass, plain, joined, of an up-sampled input and with statistics, must
// have the bits of the tiles' under the GPU sizes; and the reference's
// results on every shape of the forward tests, k5 and k7 falling back to
// the tiles.
func TestDepthwiseStream(t *testing.T) {
	g := gpuEngine(t)
	defer func() { g.dwStreamOn = nil }()
	on := true
	r := rand.New(rand.NewPCG(67, 68))
	var cases []opCase
	for _, s := range depthwiseShapes {
		p := ref.DepthwiseParams{N: s.n, C: s.c, Size: s.size, Kernel: s.k}
		cases = append(cases, depthwisePasses(r, fmt.Sprintf("N%d-C%d-%v-k%d", s.n, s.c, s.size, s.k), p)[0])
	}
	for _, s := range depthwiseStatsShapes {
		cases = append(cases, depthwiseStatsCase(r, s.p, s.split))
	}
	g.dwStreamOn = &on
	checkCases(t, cases)
	for _, c := range cases {
		tiles := func(e Engine, t map[string]*Tensor) error {
			g.dwStreamOn = nil
			defer func() { g.dwStreamOn = &on }()
			return c.run(e, t)
		}
		checkSameBits(t, c.name, c.tensors, []string{"y"}, tiles, c.run)
	}
}
