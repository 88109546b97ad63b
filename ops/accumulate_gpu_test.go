package ops

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// accumulateConvs are dense convolutions whose data gradient is added to
// through an accumulating view: stride 1 and the network's strided
// down-sampling (conv_direct on a CPU device, conv_gemm on a GPU), and a
// data gradient in split-K partials (conv_splitk adds them to dx).
var accumulateConvs = []ref.ConvParams{
	{N: 2, Cin: 3, Cout: 4, In: d3(4, 5, 6), Kernel: d3(3, 3, 3), Stride: one3, PadBefore: one3, PadAfter: one3},
	{N: 1, Cin: 17, Cout: 6, In: d3(9, 8, 11), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3},
	{N: 1, Cin: 5, Cout: 160, In: d3(5, 6, 7), Kernel: d3(3, 3, 3), Stride: two3, PadAfter: one3},
}

// accumulateTransposed are transposed convolutions: kernel = stride
// (conv_taps, both variants; rows whose results are vec4s on a CPU device)
// and an overlapping kernel (the GEMM's forward product).
var accumulateTransposed = []ref.ConvTransposeParams{
	{N: 2, Cin: 7, Cout: 5, In: d3(2, 3, 4), Kernel: two3, Stride: two3},
	{N: 1, Cin: 6, Cout: 5, In: d3(3, 2, 5), Kernel: d3(1, 2, 2), Stride: d3(1, 2, 2)},
	{N: 1, Cin: 4, Cout: 5, In: d3(3, 4, 2), Kernel: d3(3, 3, 3), Stride: two3},
}

// accumulateDepthwise are depthwise shapes for the direct and the tile
// kernels, joined at split (0: not joined).
var accumulateDepthwise = []struct {
	p     ref.DepthwiseParams
	split int
}{
	{ref.DepthwiseParams{N: 2, C: 3, Size: d3(17, 19, 23), Kernel: 3}, 0},
	{ref.DepthwiseParams{N: 1, C: 2, Size: d3(9, 10, 11), Kernel: 7}, 0},
	{ref.DepthwiseParams{N: 2, C: 3, Size: d3(6, 10, 12), Kernel: 3, Up: two3}, 0},
	{ref.DepthwiseParams{N: 2, C: 5, Size: d3(5, 7, 4), Kernel: 3}, 2},
	{ref.DepthwiseParams{N: 2, C: 5, Size: d3(5, 6, 7), Kernel: 7}, 3},
}

// accumulateCase runs one backward method with its input gradients given
// as accumulating views of the named tensors, which start with data.
type accumulateCase struct {
	name    string
	tensors []tensorSpec
	grads   []string // the input gradients, in the order run takes them
	run     func(e Engine, t map[string]*Tensor, dx []*Tensor) error
	tol     float64
}

// accumulateCases lists every case: dense and depthwise data gradients,
// and each part of a joined one alone and both together.
func accumulateCases(r *rand.Rand) []accumulateCase {
	var cases []accumulateCase
	for _, p := range accumulateConvs {
		cases = append(cases, accumulateCase{
			name: fmt.Sprintf("conv-%d→%d-%v-s%v", p.Cin, p.Cout, p.In, p.Stride),
			tensors: []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
				input("dy", randn(r, p.OutputLen())), inout("dx", randn(r, p.InputLen())),
				output("dw", p.WeightLen()), output("db", p.BiasLen())},
			grads: []string{"dx"},
			run: func(e Engine, t map[string]*Tensor, dx []*Tensor) error {
				return e.Conv3dBackward(p, t["x"], t["w"], t["dy"], dx[0], t["dw"], t["db"])
			},
			tol: gemmTol,
		})
	}
	for _, p := range accumulateTransposed {
		cases = append(cases, accumulateCase{
			name: fmt.Sprintf("transposed-%d→%d-%v-k%v-s%v", p.Cin, p.Cout, p.In, p.Kernel, p.Stride),
			tensors: []tensorSpec{input("x", randn(r, p.InputLen())), input("w", randn(r, p.WeightLen())),
				input("dy", randn(r, p.OutputLen())), inout("dx", randn(r, p.InputLen())),
				output("dw", p.WeightLen()), output("db", p.BiasLen())},
			grads: []string{"dx"},
			run: func(e Engine, t map[string]*Tensor, dx []*Tensor) error {
				return e.ConvTranspose3dBackward(p, t["x"], t["w"], t["dy"], dx[0], t["dw"], t["db"])
			},
			tol: gemmTol,
		})
	}
	for _, p := range []ref.UpsampleParams{
		{N: 2, C: 3, In: d3(3, 5, 8), Factor: two3},
		{N: 1, C: 2, In: d3(2, 3, 5), Factor: d3(1, 2, 3)},
	} {
		cases = append(cases, accumulateCase{
			name:    fmt.Sprintf("upsample-%v-x%v", p.In, p.Factor),
			tensors: []tensorSpec{input("dy", randn(r, p.OutputLen())), inout("dx", randn(r, p.InputLen()))},
			grads:   []string{"dx"},
			run: func(e Engine, t map[string]*Tensor, dx []*Tensor) error {
				return e.UpsampleBackward(p, t["dy"], dx[0])
			},
			tol: depthwiseTol,
		})
	}
	for _, s := range accumulateDepthwise {
		p, split := s.p, s.split
		name := fmt.Sprintf("depthwise-C%d-%v-k%d", p.C, p.Size, p.Kernel)
		w, dy := randn(r, p.WeightLen()), randn(r, p.OutputLen())
		if split == 0 {
			cases = append(cases, accumulateCase{
				name: name,
				tensors: []tensorSpec{input("x", randn(r, p.InputLen())), input("w", w), input("dy", dy),
					inout("dx", randn(r, p.InputLen())), output("dw", p.WeightLen()), output("db", p.BiasLen())},
				grads: []string{"dx"},
				run: func(e Engine, t map[string]*Tensor, dx []*Tensor) error {
					return e.DepthwiseConv3dBackward(p, t["x"], t["w"], t["dy"], dx[0], t["dw"], t["db"])
				},
				tol: depthwiseDWTol,
			})
			continue
		}
		x1, x2, _, _, _ := joinedTensors(r, p, split)
		for _, grads := range [][]string{{"dx1"}, {"dx2"}, {"dx1", "dx2"}} {
			cases = append(cases, accumulateCase{
				name: fmt.Sprintf("%s-split%d-%s", name, split, strings.Join(grads, "+")),
				tensors: []tensorSpec{input("x1", x1), input("x2", x2), input("w", w), input("dy", dy),
					inout("dx1", randn(r, len(x1))), inout("dx2", randn(r, len(x2))),
					output("dw", p.WeightLen()), output("db", p.BiasLen())},
				grads: grads,
				run: func(e Engine, t map[string]*Tensor, dx []*Tensor) error {
					dx1, dx2 := t["dx1"], t["dx2"]
					for i, g := range grads {
						if g == "dx1" {
							dx1 = dx[i]
						} else {
							dx2 = dx[i]
						}
					}
					return e.DepthwiseConv3dJoinedBackward(p, split, t["x1"], t["x2"], t["w"], t["dy"], dx1, dx2,
						t["dw"], t["db"])
				},
				tol: depthwiseDWTol,
			})
		}
	}
	return cases
}

// views returns c's gradients as accumulating views.
func (c accumulateCase) views(t map[string]*Tensor) []*Tensor {
	var dx []*Tensor
	for _, g := range c.grads {
		dx = append(dx, Accumulate(t[g]))
	}
	return dx
}

// Each input gradient, given as an accumulating view, ends as its old
// contents plus the gradient, on both engines and both device classes'
// kernels.
func TestAccumulateGPU(t *testing.T) {
	var cases []opCase
	for _, c := range accumulateCases(rand.New(rand.NewPCG(51, 52))) {
		cases = append(cases, opCase{c.name, c.tensors, func(e Engine, t map[string]*Tensor) error {
			return c.run(e, t, c.views(t))
		}, c.tol})
	}
	checkCases(t, cases)
}

// On the GPU an accumulated gradient has the bits of the gradient written
// to a scratch tensor and then added with Add, which it replaces.
func TestAccumulateMatchesAdd(t *testing.T) {
	for _, c := range accumulateCases(rand.New(rand.NewPCG(53, 54))) {
		// The scratch gradients of the Add path, one per accumulated one.
		ts := c.tensors
		for _, name := range c.grads {
			for _, s := range c.tensors {
				if s.name == name {
					ts = append(ts, output(name+".tmp", len(s.data)))
				}
			}
		}
		added := func(e Engine, t map[string]*Tensor) error {
			var tmp []*Tensor
			for _, name := range c.grads {
				tmp = append(tmp, t[name+".tmp"])
			}
			if err := c.run(e, t, tmp); err != nil {
				return err
			}
			for i, name := range c.grads {
				if err := e.Add(t[name], tmp[i], t[name]); err != nil {
					return err
				}
			}
			return nil
		}
		accumulated := func(e Engine, t map[string]*Tensor) error { return c.run(e, t, c.views(t)) }
		checkSameBits(t, c.name, ts, c.grads, added, accumulated)
	}
}

// Only input gradients take an accumulating view; Free ignores one.
func TestAccumulateRefused(t *testing.T) {
	p := ref.PointwiseParams{N: 1, Cin: 2, Cout: 3, Size: d3(2, 3, 4)}
	for _, e := range []Engine{gpuEngine(t), NewCPU()} {
		alloc := allocator(t, e)
		x, w, b, y := alloc(p.InputLen()), alloc(p.WeightLen()), alloc(p.BiasLen()), alloc(p.OutputLen())
		cases := []struct {
			op  string
			err error
		}{
			{"PointwiseConv3d", e.PointwiseConv3d(p, x, w, b, Accumulate(y))},
			{"PointwiseConv3d", e.PointwiseConv3d(p, Accumulate(x), w, b, y)},
			{"PointwiseConv3dBackward", e.PointwiseConv3dBackward(p, x, w, y, Accumulate(x), w, b)},
			{"Add", e.Add(x, x, Accumulate(x))},
			{"PadBackward", e.PadBackward(ref.PadParams{N: 1, C: 2, In: d3(2, 3, 4), Before: d3(1, 0, 0), After: d3(0, 0, 0)},
				alloc(1*2*3*3*4), Accumulate(x))},
		}
		for _, c := range cases {
			if c.err == nil {
				t.Errorf("%s: %s accepted an accumulating view", e.Name(), c.op)
			} else if msg := c.err.Error(); !strings.Contains(msg, "ops."+c.op+":") || !strings.Contains(msg, "accumulating view") {
				t.Errorf("%s: error %q does not name ops.%s and the accumulating view", e.Name(), msg, c.op)
			}
		}
		e.Free(Accumulate(x))
		if err := e.Write(x, make([]float32, p.InputLen())); err != nil {
			t.Errorf("%s: x after freeing a view of it: %v", e.Name(), err)
		}
		if err := e.Sync(); err != nil {
			t.Errorf("%s: Sync after refused calls: %v", e.Name(), err)
		}
	}
}
