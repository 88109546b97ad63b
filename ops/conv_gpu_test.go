package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// gemmTol is the relative L2 error allowed for the GEMM family. The GPU sums
// K products of N(0,1) values in fp32 (K = Cin·taps up to ~1700 forward,
// batch·voxels up to ~8000 for weight gradients, in split-K chunks), the
// reference in float64; rounding grows like √K·2⁻²⁴ ≈ 5e-6 at worst here.
const gemmTol = 1e-5

// convOp is one operation of the GEMM family seen through its tensor
// lengths, so that one table builder serves pointwise, dense and transposed
// convolutions.
type convOp struct {
	name             string
	xLen, wLen, yLen int
	bLen             int
	fwd              func(e Engine, x, w, b, y *Tensor) error
	bwd              func(e Engine, x, w, dy, dx, dw, db *Tensor) error
	someNils         bool // also test backward with some gradients nil
}

// gradSets are the backward variants: every gradient, then subsets.
var gradSets = []string{"dx,dw,db", "dx", "dw", "dw,db"}

// cases returns the forward (with and without bias) and backward cases of
// op with random inputs.
func (op convOp) cases(r *rand.Rand) []opCase {
	x, w, b, dy := randn(r, op.xLen), randn(r, op.wLen), randn(r, op.bLen), randn(r, op.yLen)
	cs := []opCase{{
		name:    op.name + "/fwd",
		tensors: []tensorSpec{input("x", x), input("w", w), input("b", b), output("y", op.yLen)},
		run: func(e Engine, t map[string]*Tensor) error {
			return op.fwd(e, t["x"], t["w"], t["b"], t["y"])
		},
		tol: gemmTol,
	}, {
		name:    op.name + "/fwd-nobias",
		tensors: []tensorSpec{input("x", x), input("w", w), output("y", op.yLen)},
		run: func(e Engine, t map[string]*Tensor) error {
			return op.fwd(e, t["x"], t["w"], nil, t["y"])
		},
		tol: gemmTol,
	}}
	sets := gradSets[:1]
	if op.someNils {
		sets = gradSets
	}
	for _, set := range sets {
		ts := []tensorSpec{input("x", x), input("w", w), input("dy", dy)}
		want := map[string]int{"dx": op.xLen, "dw": op.wLen, "db": op.bLen}
		for _, name := range strings.Split(set, ",") {
			ts = append(ts, output(name, want[name]))
		}
		cs = append(cs, opCase{
			name:    op.name + "/bwd-" + strings.ReplaceAll(set, ",", "+"),
			tensors: ts,
			run: func(e Engine, t map[string]*Tensor) error {
				// Absent map entries are nil tensors: skipped gradients.
				return op.bwd(e, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
			},
			tol: gemmTol,
		})
	}
	return cs
}

func pointwiseOp(p ref.PointwiseParams, someNils bool) convOp {
	return convOp{
		name: fmt.Sprintf("N%d-%d→%d-%v", p.N, p.Cin, p.Cout, p.Size),
		xLen: p.InputLen(), wLen: p.WeightLen(), yLen: p.OutputLen(), bLen: p.BiasLen(),
		fwd: func(e Engine, x, w, b, y *Tensor) error { return e.PointwiseConv3d(p, x, w, b, y) },
		bwd: func(e Engine, x, w, dy, dx, dw, db *Tensor) error {
			return e.PointwiseConv3dBackward(p, x, w, dy, dx, dw, db)
		},
		someNils: someNils,
	}
}

func convOpOf(p ref.ConvParams, someNils bool) convOp {
	return convOp{
		name: fmt.Sprintf("N%d-%d→%d-%v-k%v-s%v-p%v/%v", p.N, p.Cin, p.Cout, p.In, p.Kernel, p.Stride, p.PadBefore, p.PadAfter),
		xLen: p.InputLen(), wLen: p.WeightLen(), yLen: p.OutputLen(), bLen: p.BiasLen(),
		fwd:      func(e Engine, x, w, b, y *Tensor) error { return e.Conv3d(p, x, w, b, y) },
		bwd:      func(e Engine, x, w, dy, dx, dw, db *Tensor) error { return e.Conv3dBackward(p, x, w, dy, dx, dw, db) },
		someNils: someNils,
	}
}

func transposeOp(p ref.ConvTransposeParams, someNils bool) convOp {
	return convOp{
		name: fmt.Sprintf("N%d-%d→%d-%v-k%v-s%v", p.N, p.Cin, p.Cout, p.In, p.Kernel, p.Stride),
		xLen: p.InputLen(), wLen: p.WeightLen(), yLen: p.OutputLen(), bLen: p.BiasLen(),
		fwd: func(e Engine, x, w, b, y *Tensor) error { return e.ConvTranspose3d(p, x, w, b, y) },
		bwd: func(e Engine, x, w, dy, dx, dw, db *Tensor) error {
			return e.ConvTranspose3dBackward(p, x, w, dy, dx, dw, db)
		},
		someNils: someNils,
	}
}

func d3(d, h, w int) ref.Dims3 { return ref.Dims3{d, h, w} }

var (
	one3 = d3(1, 1, 1)
	two3 = d3(2, 2, 2)
)

// pointwiseCases are the forward and backward cases of each shape, every
// other one with some gradients left out.
func pointwiseCases(r *rand.Rand, shapes []ref.PointwiseParams) []opCase {
	var cases []opCase
	for i, p := range shapes {
		cases = append(cases, pointwiseOp(p, i%2 == 1).cases(r)...)
	}
	return cases
}

func TestPointwiseConvGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	checkCases(t, pointwiseCases(r, []ref.PointwiseParams{
		{N: 1, Cin: 1, Cout: 1, Size: d3(1, 5, 7)},
		{N: 3, Cin: 3, Cout: 17, Size: d3(3, 3, 3)},
		{N: 1, Cin: 17, Cout: 3, Size: d3(5, 6, 7)},
		{N: 2, Cin: 64, Cout: 64, Size: d3(2, 3, 5)},
		{N: 1, Cin: 64, Cout: 17, Size: d3(9, 8, 11)},
		{N: 1, Cin: 3, Cout: 64, Size: d3(1, 1, 1)},
		// K = 2·16³ for dw: several split-K partials.
		{N: 2, Cin: 8, Cout: 8, Size: d3(16, 16, 16)},
		// More than one 64-row tile along M in every mode.
		{N: 1, Cin: 70, Cout: 65, Size: d3(2, 3, 3)},
	}))
}

func TestConv3dGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	var cases []opCase
	for i, p := range []ref.ConvParams{
		{N: 1, Cin: 3, Cout: 17, In: d3(5, 6, 7), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		{N: 3, Cin: 1, Cout: 3, In: d3(3, 3, 3), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		// The network's downsampling conv: "same" padding 0 before, 1 after.
		{N: 1, Cin: 17, Cout: 64, In: d3(9, 8, 11), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3},
		{N: 2, Cin: 4, Cout: 5, In: d3(1, 5, 7), Kernel: d3(3, 3, 3), Stride: d3(1, 2, 2),
			PadBefore: d3(1, 0, 0), PadAfter: one3},
		// Kernel 1, stride 2: half the input voxels get no gradient.
		{N: 1, Cin: 64, Cout: 3, In: d3(5, 6, 7), Kernel: one3, Stride: two3},
		{N: 2, Cin: 3, Cout: 4, In: d3(4, 5, 6), Kernel: d3(3, 3, 3), Stride: one3},
		{N: 1, Cin: 5, Cout: 7, In: d3(3, 7, 5), Kernel: d3(1, 3, 2), Stride: d3(1, 2, 1),
			PadBefore: d3(0, 2, 1), PadAfter: d3(0, 1, 0)},
		{N: 1, Cin: 65, Cout: 66, In: d3(3, 4, 3), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		// dw with K = 2·8³ = 1024 in two split-K partials.
		{N: 2, Cin: 8, Cout: 16, In: d3(8, 8, 8), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		// dx split along K = 160·8 for the widest stride phase: the phases
		// with one tap per axis have K = 160 and an empty second split.
		{N: 1, Cin: 5, Cout: 160, In: d3(5, 6, 7), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3},
	} {
		cases = append(cases, convOpOf(p, i%2 == 0).cases(r)...)
	}
	checkCases(t, cases)
}

func TestConvTranspose3dGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	var cases []opCase
	for i, p := range []ref.ConvTransposeParams{
		{N: 1, Cin: 32, Cout: 16, In: d3(3, 3, 3), Kernel: two3, Stride: two3},
		{N: 3, Cin: 17, Cout: 3, In: d3(1, 5, 7), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
		{N: 1, Cin: 3, Cout: 64, In: d3(2, 3, 2), Kernel: two3, Stride: two3},
		{N: 2, Cin: 64, Cout: 17, In: d3(2, 2, 3), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
		{N: 1, Cin: 1, Cout: 1, In: d3(1, 1, 1), Kernel: two3, Stride: two3},
		// Rows of even length, which conv_taps' texel variant takes in
		// runs of up to 16 voxels: outputs in vec4s (stride 2 or 4 along w)
		// or in floats (stride 1); 8, 4 and 2 taps; odd channel counts.
		{N: 2, Cin: 7, Cout: 5, In: d3(2, 3, 4), Kernel: two3, Stride: two3},
		{N: 1, Cin: 6, Cout: 5, In: d3(2, 3, 4), Kernel: d3(2, 2, 1), Stride: d3(2, 2, 1)},
		{N: 2, Cin: 5, Cout: 7, In: d3(3, 4, 6), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
		{N: 1, Cin: 3, Cout: 3, In: d3(2, 2, 4), Kernel: d3(1, 1, 2), Stride: d3(1, 1, 2)},
		{N: 1, Cin: 4, Cout: 3, In: d3(1, 2, 2), Kernel: d3(1, 2, 4), Stride: d3(1, 2, 4)},
		// Runs of 8 and 16 voxels, one or several per row.
		{N: 2, Cin: 4, Cout: 3, In: d3(1, 3, 8), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
		{N: 1, Cin: 3, Cout: 5, In: d3(2, 2, 16), Kernel: two3, Stride: two3},
		{N: 1, Cin: 2, Cout: 3, In: d3(1, 2, 48), Kernel: d3(1, 1, 2), Stride: d3(1, 1, 2)},
		// Kernel ≠ stride, which the network does not use: overlapping
		// (3 > 2) and gapped (1 < 2) windows.
		{N: 1, Cin: 4, Cout: 5, In: d3(3, 4, 2), Kernel: d3(3, 3, 3), Stride: two3},
		{N: 2, Cin: 3, Cout: 2, In: d3(2, 3, 3), Kernel: one3, Stride: d3(1, 2, 2)},
		// A deep level: few voxels, K = 1100 channels in split-K partials.
		{N: 1, Cin: 1100, Cout: 2, In: d3(1, 2, 3), Kernel: two3, Stride: two3},
	} {
		cases = append(cases, transposeOp(p, i%2 == 0).cases(r)...)
	}
	checkCases(t, cases)
}

// conv_taps with two voxels per invocation (tapsPairs) gives the bits of
// one per invocation, going up and down (accumulating too): strides 2 and
// 1 along w, rows of even length (pairs) and odd (one voxel, as without),
// reduced channels over several stages of 16 and result channels that
// leave a partial group of four.
func TestConvTapsPairs(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(63, 64))
	for _, p := range []ref.ConvTransposeParams{
		{N: 2, Cin: 40, Cout: 6, In: d3(3, 2, 4), Kernel: two3, Stride: two3},
		{N: 1, Cin: 5, Cout: 37, In: d3(2, 3, 6), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
		{N: 1, Cin: 17, Cout: 3, In: d3(2, 3, 2), Kernel: d3(2, 2, 1), Stride: d3(2, 2, 1)},
		{N: 3, Cin: 3, Cout: 5, In: d3(1, 2, 3), Kernel: two3, Stride: two3},
	} {
		x, w, b, dy := randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen()), randn(r, p.OutputLen())
		ts := []tensorSpec{input("x", x), input("w", w), input("b", b), input("dy", dy),
			output("y", p.OutputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen()),
			output("dx", p.InputLen()), inout("acc", randn(r, p.InputLen()))}
		run := func(pairs bool) func(Engine, map[string]*Tensor) error {
			return func(e Engine, t map[string]*Tensor) error {
				g.tapsPairs = pairs
				defer func() { g.tapsPairs = false }()
				if err := e.ConvTranspose3d(p, t["x"], t["w"], t["b"], t["y"]); err != nil {
					return err
				}
				if err := e.ConvTranspose3dBackward(p, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"]); err != nil {
					return err
				}
				return e.ConvTranspose3dBackward(p, t["x"], t["w"], t["dy"], Accumulate(t["acc"]), nil, nil)
			}
		}
		checkSameBits(t, fmt.Sprint(p), ts, []string{"y", "dx", "acc"}, run(false), run(true))
	}
}

// Every candidate tiling of SetGEMMTile computes the same products: dense,
// strided and transposed convolutions, forward and backward, on shapes that
// leave partial tiles along M, N and K.
func TestGEMMTilesGPU(t *testing.T) {
	g := gpuEngine(t)
	tiles := g.GEMMTiles()
	if len(tiles) < 4 {
		t.Fatalf("only %d candidate tilings fit device %s", len(tiles), g.Device().Info().Name)
	}
	defer g.SetGEMMTile(nil)
	for _, tile := range tiles {
		t.Run(tile.String(), func(t *testing.T) {
			if err := g.SetGEMMTile(&tile); err != nil {
				t.Fatal(err)
			}
			checkCases(t, gemmCases())
		})
	}
	if err := g.SetGEMMTile(&GEMMTile{BM: 64, BN: 64, BK: 16, TM: 3, TN: 4}); err == nil {
		t.Error("a tile whose BM is not a multiple of TM was accepted")
	}
}

// gemmCases are GEMM-family products on shapes that leave partial tiles
// along M, N and K.
func gemmCases() []opCase {
	r := rand.New(rand.NewPCG(39, 40))
	var cases []opCase
	for _, op := range []convOp{
		convOpOf(ref.ConvParams{N: 2, Cin: 5, Cout: 19, In: d3(5, 6, 7), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3}, false),
		convOpOf(ref.ConvParams{N: 1, Cin: 40, Cout: 3, In: d3(3, 4, 5), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3}, false),
		convOpOf(ref.ConvParams{N: 1, Cin: 3, Cout: 16, In: d3(4, 5, 20), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3}, false),
		transposeOp(ref.ConvTransposeParams{N: 1, Cin: 9, Cout: 70, In: d3(2, 3, 3), Kernel: two3, Stride: two3}, false),
		pointwiseOp(ref.PointwiseParams{N: 2, Cin: 130, Cout: 67, Size: d3(3, 5, 7)}, false),
	} {
		cases = append(cases, op.cases(r)...)
	}
	return cases
}

// Each value of the kernel choice gemm-tile computes the GEMM family's
// products right, on GPU sizes.
func TestGEMMTileChoice(t *testing.T) {
	g := gpuEngine(t)
	defer g.SetKernels(nil)
	for _, v := range []string{"wide", "k32", "k8"} {
		t.Run(v, func(t *testing.T) {
			if err := g.SetKernels([]string{"device-class=gpu", "gemm-tile=" + v}); err != nil {
				t.Fatal(err)
			}
			checkCases(t, gemmCases())
		})
	}
}

// Timed GEMM dispatches are labelled with their product, so that profiles
// and the tiling sweep can tell the data and weight gradients apart.
func TestGEMMTimingLabelsGPU(t *testing.T) {
	g := gpuEngine(t)
	p := ref.ConvParams{N: 2, Cin: 5, Cout: 5, In: d3(6, 7, 8), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3}
	ts := map[string]*Tensor{}
	for name, n := range map[string]int{"x": p.InputLen(), "w": p.WeightLen(), "b": p.BiasLen(), "y": p.OutputLen(),
		"dx": p.InputLen(), "dw": p.WeightLen(), "db": p.BiasLen()} {
		x, err := g.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Free(x)
		ts[name] = x
	}
	if err := g.SetTimed(true); err != nil {
		t.Fatal(err)
	}
	defer g.SetTimed(false)
	if err := g.Conv3d(p, ts["x"], ts["w"], ts["b"], ts["y"]); err != nil {
		t.Fatal(err)
	}
	if err := g.Conv3dBackward(p, ts["x"], ts["w"], ts["y"], ts["dx"], ts["dw"], ts["db"]); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	products := map[string]bool{}
	for _, tm := range g.TakeTimings() {
		op, _, _ := strings.Cut(tm.Label, "/")
		if prod := GEMMProduct(tm.Label); prod != "" {
			products[op+" "+prod] = true
		} else if tm.Kernel == "conv_gemm" || tm.Kernel == "conv_direct" {
			t.Errorf("%s dispatch labelled %q, without its product", tm.Kernel, tm.Label)
		}
	}
	for _, want := range []string{"Conv3d fwd", "Conv3dBackward dgrad", "Conv3dBackward wgrad"} {
		if !products[want] {
			t.Errorf("no timing labelled as %s; got %v", want, products)
		}
	}
	if GEMMProduct("ChannelSum") != "" {
		t.Error("a label without a product has one")
	}
}

// Weight gradients are split-K sums added in a fixed order: two runs give
// the same bits.
func TestConvWeightGradDeterministicGPU(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(37, 38))
	pw := ref.PointwiseParams{N: 2, Cin: 8, Cout: 8, Size: d3(16, 16, 16)}
	cv := ref.ConvParams{N: 2, Cin: 4, Cout: 8, In: d3(9, 8, 11), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3}
	tp := ref.ConvTransposeParams{N: 2, Cin: 8, Cout: 4, In: d3(6, 8, 8), Kernel: two3, Stride: two3}
	for _, op := range []convOp{pointwiseOp(pw, false), convOpOf(cv, false), transposeOp(tp, false)} {
		x, w, dy := randScaled(r, op.xLen, 3), randn(r, op.wLen), randn(r, op.yLen)
		c := opCase{
			tensors: []tensorSpec{input("x", x), input("w", w), input("dy", dy), output("dw", op.wLen)},
			run: func(e Engine, t map[string]*Tensor) error {
				return op.bwd(e, t["x"], t["w"], t["dy"], nil, t["dw"], nil)
			},
		}
		var first []float32
		for run := 0; run < 2; run++ {
			got, _, err := runOn(g, c)
			if err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
			if first == nil {
				first = got["dw"]
				continue
			}
			for i, v := range got["dw"] {
				if math.Float32bits(v) != math.Float32bits(first[i]) {
					t.Fatalf("%s: dw[%d] = %x, first run %x", op.name, i, math.Float32bits(v), math.Float32bits(first[i]))
				}
			}
		}
	}
}

// Bad lengths and missing tensors are refused with an error naming the op.
func TestConvArgumentErrorsGPU(t *testing.T) {
	g := gpuEngine(t)
	pw := ref.PointwiseParams{N: 1, Cin: 2, Cout: 3, Size: d3(2, 2, 2)}
	cv := ref.ConvParams{N: 1, Cin: 2, Cout: 3, In: d3(4, 4, 4), Kernel: d3(3, 3, 3), Stride: one3}
	tp := ref.ConvTransposeParams{N: 1, Cin: 2, Cout: 3, In: d3(2, 2, 2), Kernel: two3, Stride: two3}
	alloc := func(n int) *Tensor {
		tt, err := g.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	x, w, b := alloc(16), alloc(6), alloc(3)
	y, bad := alloc(24), alloc(5)
	cx, cw, cy := alloc(128), alloc(162), alloc(24)
	tw, ty := alloc(96), alloc(192)
	defer func() {
		for _, tt := range []*Tensor{x, w, b, y, bad, cx, cw, cy, tw, ty} {
			g.Free(tt)
		}
	}()
	badConv := cv
	badConv.Kernel = d3(5, 5, 5) // larger than the input
	for _, c := range []struct {
		op  string
		err error
	}{
		{"PointwiseConv3d", g.PointwiseConv3d(pw, x, bad, b, y)},
		{"PointwiseConv3d", g.PointwiseConv3d(pw, x, w, bad, y)},
		{"PointwiseConv3d", g.PointwiseConv3d(pw, nil, w, b, y)},
		{"PointwiseConv3dBackward", g.PointwiseConv3dBackward(pw, x, w, nil, x, w, b)},
		{"PointwiseConv3dBackward", g.PointwiseConv3dBackward(pw, x, w, y, bad, nil, nil)},
		{"Conv3d", g.Conv3d(cv, cx, cw, b, bad)},
		{"Conv3d", g.Conv3d(cv, cx, nil, b, cy)},
		{"Conv3d", g.Conv3d(badConv, cx, cw, b, cy)},
		{"Conv3dBackward", g.Conv3dBackward(cv, cx, cw, cy, nil, bad, nil)},
		{"Conv3dBackward", g.Conv3dBackward(cv, cx, cw, cy, nil, nil, bad)},
		{"ConvTranspose3d", g.ConvTranspose3d(tp, x, tw, b, bad)},
		{"ConvTranspose3d", g.ConvTranspose3d(tp, x, nil, b, ty)},
		{"ConvTranspose3dBackward", g.ConvTranspose3dBackward(tp, x, tw, ty, bad, nil, nil)},
		{"ConvTranspose3dBackward", g.ConvTranspose3dBackward(tp, x, tw, nil, x, nil, nil)},
	} {
		if c.err == nil {
			t.Errorf("%s accepted bad arguments", c.op)
		} else if !strings.Contains(c.err.Error(), "ops."+c.op+":") {
			t.Errorf("error %q does not name ops.%s", c.err, c.op)
		}
	}
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// benchConv runs fwd and fwd+bwd (every gradient) of op as sub-benchmarks.
func benchConv(b *testing.B, name string, op convOp) {
	r := rand.New(rand.NewPCG(41, 42))
	x, w, bias, dy := randn(r, op.xLen), randn(r, op.wLen), randn(r, op.bLen), randn(r, op.yLen)
	ts := []tensorSpec{input("x", x), input("w", w), input("b", bias), input("dy", dy),
		output("y", op.yLen), output("dx", op.xLen), output("dw", op.wLen), output("db", op.bLen)}
	b.Run(name+"/fwd", func(b *testing.B) {
		benchCase(b, gpuEngine(b), opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
			return op.fwd(e, t["x"], t["w"], t["b"], t["y"])
		}})
	})
	b.Run(name+"/fwd+bwd", func(b *testing.B) {
		benchCase(b, gpuEngine(b), opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
			if err := op.fwd(e, t["x"], t["w"], t["b"], t["y"]); err != nil {
				return err
			}
			return op.bwd(e, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
		}})
	})
}

// The §8 shapes of DESIGN.md (N=2, 64³), and 16³ for slow devices
// (-bench 'Conv.*/16').
var benchSizes = []int{16, 64}

func BenchmarkPointwise(b *testing.B) {
	for _, s := range benchSizes {
		p := ref.PointwiseParams{N: 2, Cin: 32, Cout: 32, Size: d3(s, s, s)}
		benchConv(b, fmt.Sprint(s), pointwiseOp(p, false))
	}
}

func BenchmarkConv3d(b *testing.B) {
	for _, s := range benchSizes {
		p := ref.ConvParams{N: 2, Cin: 32, Cout: 32, In: d3(s, s, s), Kernel: d3(3, 3, 3), Stride: one3,
			PadBefore: one3, PadAfter: one3}
		benchConv(b, fmt.Sprint(s), convOpOf(p, false))
	}
}

func BenchmarkConvStride2(b *testing.B) {
	for _, s := range benchSizes {
		p := ref.ConvParams{N: 2, Cin: 32, Cout: 64, In: d3(s, s, s), Kernel: d3(3, 3, 3), Stride: two3,
			PadAfter: one3}
		benchConv(b, fmt.Sprint(s), convOpOf(p, false))
	}
}

// BenchmarkConvTranspose up-samples the §8 input: s³ to (2s)³.
// BenchmarkConvTranspose times the network's up-sampling (kernel = stride
// 2) at the §8 shape, with conv_taps taking one voxel per invocation (the
// rule) and two ("pairs", a candidate for GPUs).
func BenchmarkConvTranspose(b *testing.B) {
	g := gpuEngine(b)
	for _, s := range benchSizes {
		p := ref.ConvTransposeParams{N: 2, Cin: 32, Cout: 16, In: d3(s, s, s), Kernel: two3, Stride: two3}
		benchConv(b, fmt.Sprint(s), transposeOp(p, false))
		g.tapsPairs = true
		benchConv(b, fmt.Sprint(s)+"/pairs", transposeOp(p, false))
		g.tapsPairs = false
	}
}

// conv_direct (the GEMM family's products on CPU devices) on the geometries
// its unrolled loops depend on: several blocks along w with a partial last
// one, result channels that leave a partial block, kernels up to
// directMaxK and strides up to directMaxStride along w (the data gradient
// walks the stride phases), padding wider than half the kernel, rows read
// as floats and as vec4s. checkCases
// runs each case under both device classes, so through conv_direct and
// conv_gemm.
func TestConvDirectGPU(t *testing.T) {
	g := gpuEngine(t)
	for _, c := range []struct {
		geo  convGeom
		want bool
	}{
		{convGeom{ks: d3(3, 3, 3), st: one3}, true},
		{convGeom{ks: d3(7, 5, 5), st: d3(7, 4, 4)}, true},
		{convGeom{ks: d3(3, 3, 6), st: one3}, false},
		{convGeom{ks: d3(3, 6, 3), st: one3}, false},
		{convGeom{ks: d3(3, 3, 3), st: d3(1, 1, 5)}, false},
		{convGeom{ks: d3(3, 3, 3), st: d3(1, 5, 1)}, false},
	} {
		on := true
		g.directOn = &on
		if got := g.directGEMM(c.geo); got != c.want {
			t.Errorf("directGEMM(kernel %v, stride %v) = %t, want %t", c.geo.ks, c.geo.st, got, c.want)
		}
	}
	g.directOn = nil
	r := rand.New(rand.NewPCG(45, 46))
	var cases []opCase
	for i, p := range []ref.ConvParams{
		{N: 2, Cin: 3, Cout: 9, In: d3(4, 5, 19), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		{N: 1, Cin: 2, Cout: 3, In: d3(5, 7, 23), Kernel: d3(3, 5, 5), Stride: d3(2, 3, 3), PadBefore: d3(1, 2, 2), PadAfter: d3(1, 2, 2)},
		{N: 1, Cin: 4, Cout: 2, In: d3(3, 6, 17), Kernel: d3(2, 4, 4), Stride: d3(1, 4, 4), PadBefore: d3(0, 1, 3)},
		{N: 1, Cin: 1, Cout: 16, In: d3(9, 8, 11), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: d3(2, 2, 2), PadAfter: d3(0, 1, 2)},
		{N: 3, Cin: 2, Cout: 2, In: d3(2, 2, 2), Kernel: d3(5, 5, 5), Stride: one3, PadBefore: d3(2, 2, 2), PadAfter: d3(2, 2, 2)},
		// Rows of a multiple of 4 voxels, read as vec4s: two blocks along
		// w (the second partial), the network's strided conv (padding 0
		// before), a 4-voxel row with padding 2, stride 2 with padding 1.
		{N: 1, Cin: 3, Cout: 5, In: d3(3, 5, 36), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
		{N: 2, Cin: 2, Cout: 3, In: d3(5, 6, 16), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3},
		{N: 1, Cin: 2, Cout: 2, In: d3(2, 3, 4), Kernel: d3(3, 5, 5), Stride: one3, PadBefore: d3(1, 2, 2), PadAfter: d3(1, 2, 2)},
		{N: 1, Cin: 4, Cout: 3, In: d3(3, 4, 24), Kernel: d3(1, 3, 3), Stride: d3(1, 1, 2), PadBefore: d3(0, 1, 1), PadAfter: d3(0, 1, 1)},
		// Kernel 7 along w: conv_gemm on every device.
		{N: 1, Cin: 2, Cout: 3, In: d3(3, 4, 9), Kernel: d3(1, 1, 7), Stride: one3, PadBefore: d3(0, 0, 3), PadAfter: d3(0, 0, 3)},
	} {
		cases = append(cases, convOpOf(p, i%2 == 1).cases(r)...)
	}
	for i, p := range []ref.ConvTransposeParams{
		{N: 1, Cin: 3, Cout: 4, In: d3(3, 4, 9), Kernel: d3(3, 3, 5), Stride: d3(2, 2, 3)},
		{N: 2, Cin: 9, Cout: 2, In: d3(2, 3, 5), Kernel: d3(2, 2, 4), Stride: d3(1, 2, 4)},
		{N: 1, Cin: 2, Cout: 3, In: d3(2, 2, 16), Kernel: d3(1, 2, 4), Stride: d3(1, 2, 2)},
	} {
		cases = append(cases, transposeOp(p, i%2 == 0).cases(r)...)
	}
	checkCases(t, cases)
}

// BenchmarkConvDirect times dense 3³ convolutions at the shapes of the
// network's levels (input layer 1→16; 16, 32 and 64 channels at 32³, 16³
// and 8³; the strided down-sampling), forward and all gradients, through
// conv_direct and through conv_gemm: -bench 'ConvDirect/.*/s1/' on slow
// devices. GPUs take conv_gemm until this compares the two there.
func BenchmarkConvDirect(b *testing.B) {
	g := gpuEngine(b)
	defer func() { g.directOn = nil }()
	for _, scale := range []int{1, 4} {
		for _, c := range []struct {
			name           string
			cin, cout, s   int
			stride, before ref.Dims3
		}{
			{"in", 1, 16, 32, one3, one3},
			{"l0", 16, 16, 32, one3, one3},
			{"l1", 32, 32, 16, one3, one3},
			{"l2", 64, 64, 8, one3, one3},
			{"down0", 16, 32, 32, two3, ref.Dims3{}},
		} {
			s := c.s * scale
			p := ref.ConvParams{N: 2, Cin: c.cin, Cout: c.cout, In: d3(s, s, s), Kernel: d3(3, 3, 3), Stride: c.stride,
				PadBefore: c.before, PadAfter: one3}
			op := convOpOf(p, false)
			r := rand.New(rand.NewPCG(47, 48))
			ts := []tensorSpec{input("x", randn(r, op.xLen)), input("w", randn(r, op.wLen)), input("b", randn(r, op.bLen)),
				input("dy", randn(r, op.yLen)), output("y", op.yLen), output("dx", op.xLen), output("dw", op.wLen),
				output("db", op.bLen)}
			for _, path := range []struct {
				name   string
				direct bool
			}{{"direct", true}, {"gemm", false}} {
				b.Run(fmt.Sprintf("%s/s%d/%s", c.name, scale, path.name), func(b *testing.B) {
					g.directOn = &path.direct
					benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
						if err := op.fwd(e, t["x"], t["w"], t["b"], t["y"]); err != nil {
							return err
						}
						return op.bwd(e, t["x"], t["w"], t["dy"], t["dx"], t["dw"], t["db"])
					}})
				})
			}
		}
	}
}
