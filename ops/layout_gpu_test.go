package ops

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// Tolerances of the shape operations: Concat, Split, Upsample, Pad and its
// crop copy values, so they must match exactly. UpsampleBackward adds up to
// 8 values per voxel in fp32 where ref adds in float64 and rounds once: a
// few ulp at most.
const (
	layoutCopyTol  = 0
	upsampleBwdTol = 1e-6
)

// layoutSizes are awkward spatial sizes: single voxels, primes, rows of 4
// (the vec4 path) and rows that are not.
var layoutSizes = []ref.Dims3{{1, 1, 1}, {3, 5, 7}, {2, 2, 4}, {1, 1, 13}, {2, 3, 8}}

func TestConcatGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	var cases []opCase
	for i, parts := range [][]int{{1}, {3, 1}, {17, 64}, {1, 3, 17}} {
		for j, size := range layoutSizes {
			if (i+j)%2 == 1 && len(parts) > 1 && parts[1] == 64 {
				continue // 64 channels on a few sizes only: lavapipe is slow
			}
			n := 1 + 2*((i+j)%2) // batch 1 and 3
			p := ref.ConcatParams{N: n, Channels: parts, Size: size}
			var fwd, bwd []tensorSpec
			names := make([]string, len(parts))
			for k := range parts {
				names[k] = fmt.Sprintf("p%d", k)
				fwd = append(fwd, input(names[k], randn(r, p.PartLen(k))))
				bwd = append(bwd, output(names[k], p.PartLen(k)))
			}
			fwd = append(fwd, output("y", p.OutputLen()))
			bwd = append(bwd, input("x", randn(r, p.OutputLen())))
			pick := func(ts map[string]*Tensor) []*Tensor {
				out := make([]*Tensor, len(names))
				for k, nm := range names {
					out[k] = ts[nm]
				}
				return out
			}
			name := fmt.Sprintf("N%d-C%v-%v", n, parts, size)
			cases = append(cases,
				opCase{"concat/" + name, fwd, func(e Engine, ts map[string]*Tensor) error {
					return e.Concat(p, pick(ts), ts["y"])
				}, layoutCopyTol},
				opCase{"split/" + name, bwd, func(e Engine, ts map[string]*Tensor) error {
					return e.Split(p, ts["x"], pick(ts))
				}, layoutCopyTol})
		}
	}
	checkCases(t, cases)
}

func TestUpsampleGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	var cases []opCase
	shapes := []struct {
		n, c int
		in   ref.Dims3
	}{
		{1, 1, ref.Dims3{1, 1, 1}},
		{3, 3, ref.Dims3{3, 5, 7}},
		{1, 17, ref.Dims3{2, 3, 4}},
		{1, 64, ref.Dims3{1, 2, 2}},
		{3, 1, ref.Dims3{5, 1, 2}},
	}
	for _, s := range shapes {
		for _, f := range []ref.Dims3{{1, 2, 2}, {2, 2, 2}, {1, 1, 3}, {1, 1, 1}, {3, 1, 2}} {
			p := ref.UpsampleParams{N: s.n, C: s.c, In: s.in, Factor: f}
			name := fmt.Sprintf("N%d-C%d-%v-x%v", s.n, s.c, s.in, f)
			cases = append(cases,
				opCase{"fwd/" + name, []tensorSpec{input("x", randn(r, p.InputLen())), output("y", p.OutputLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.Upsample(p, ts["x"], ts["y"]) }, layoutCopyTol},
				opCase{"bwd/" + name, []tensorSpec{input("dy", randn(r, p.OutputLen())), output("dx", p.InputLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.UpsampleBackward(p, ts["dy"], ts["dx"]) }, upsampleBwdTol})
		}
	}
	checkCases(t, cases)
}

func TestPadGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(55, 56))
	var cases []opCase
	shapes := []struct {
		n, c int
		in   ref.Dims3
	}{
		{1, 1, ref.Dims3{1, 1, 1}},
		{3, 3, ref.Dims3{3, 5, 7}},
		{1, 17, ref.Dims3{2, 3, 4}},
		{1, 64, ref.Dims3{2, 2, 3}},
	}
	pads := [][2]ref.Dims3{
		{{0, 0, 0}, {1, 1, 1}}, // "same" before a stride-2 convolution
		{{1, 1, 1}, {1, 1, 1}},
		{{1, 2, 0}, {0, 1, 3}},
		{{0, 0, 0}, {0, 0, 0}},
		{{2, 0, 1}, {0, 3, 0}}, // padded rows of 4 from 3: the vec4 path
	}
	for _, s := range shapes {
		for _, pd := range pads {
			p := ref.PadParams{N: s.n, C: s.c, In: s.in, Before: pd[0], After: pd[1]}
			name := fmt.Sprintf("N%d-C%d-%v-%v-%v", s.n, s.c, s.in, pd[0], pd[1])
			cases = append(cases,
				opCase{"fwd/" + name, []tensorSpec{input("x", randn(r, p.InputLen())), output("y", p.OutputLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.Pad(p, ts["x"], ts["y"]) }, layoutCopyTol},
				opCase{"bwd/" + name, []tensorSpec{input("dy", randn(r, p.OutputLen())), output("dx", p.InputLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.PadBackward(p, ts["dy"], ts["dx"]) }, layoutCopyTol})
		}
	}
	checkCases(t, cases)
}

// wantOpError fails unless err is an error that names ops.<op>.
func wantOpError(t *testing.T, what, op string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted bad arguments", what)
	} else if !strings.Contains(err.Error(), "ops."+op) {
		t.Errorf("%s: error %q does not name ops.%s", what, err, op)
	}
}

func TestLayoutErrorsGPU(t *testing.T) {
	g := gpuEngine(t)
	cp := ref.ConcatParams{N: 1, Channels: []int{2, 3}, Size: ref.Dims3{2, 2, 2}}
	up := ref.UpsampleParams{N: 1, C: 2, In: ref.Dims3{2, 2, 2}, Factor: ref.Dims3{1, 2, 2}}
	pp := ref.PadParams{N: 1, C: 2, In: ref.Dims3{2, 2, 2}, After: ref.Dims3{1, 1, 1}}
	a, _ := g.Alloc(cp.PartLen(0))
	b, _ := g.Alloc(cp.PartLen(1))
	y, _ := g.Alloc(cp.OutputLen())
	short, _ := g.Alloc(cp.OutputLen() - 1)
	lab, _ := g.AllocLabels(cp.PartLen(0))
	ux, _ := g.Alloc(up.InputLen())
	uy, _ := g.Alloc(up.OutputLen())
	px, _ := g.Alloc(pp.InputLen())
	py, _ := g.Alloc(pp.OutputLen())
	defer func() {
		for _, t := range []*Tensor{a, b, y, short, lab, ux, uy, px, py} {
			g.Free(t)
		}
	}()
	wantOpError(t, "Concat part count", "Concat", g.Concat(cp, []*Tensor{a}, y))
	wantOpError(t, "Concat short output", "Concat", g.Concat(cp, []*Tensor{a, b}, short))
	wantOpError(t, "Concat swapped parts", "Concat", g.Concat(cp, []*Tensor{b, a}, y))
	wantOpError(t, "Concat labels part", "Concat", g.Concat(cp, []*Tensor{lab, b}, y))
	wantOpError(t, "Concat nil part", "Concat", g.Concat(cp, []*Tensor{a, nil}, y))
	wantOpError(t, "Concat no parts", "Concat", g.Concat(ref.ConcatParams{N: 1, Size: cp.Size}, nil, y))
	wantOpError(t, "Split nil input", "Split", g.Split(cp, nil, []*Tensor{a, b}))
	wantOpError(t, "Upsample swapped", "Upsample", g.Upsample(up, uy, ux))
	wantOpError(t, "Upsample zero factor", "Upsample", g.Upsample(ref.UpsampleParams{N: 1, C: 2, In: up.In}, ux, uy))
	wantOpError(t, "UpsampleBackward nil", "UpsampleBackward", g.UpsampleBackward(up, uy, nil))
	wantOpError(t, "Pad swapped", "Pad", g.Pad(pp, py, px))
	wantOpError(t, "Pad negative", "Pad", g.Pad(ref.PadParams{N: 1, C: 2, In: pp.In, Before: ref.Dims3{-1, 0, 0}}, px, py))
	wantOpError(t, "PadBackward labels", "PadBackward", g.PadBackward(pp, py, lab))
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkUpsample times nearest up-sampling by 2 on every axis, forward
// and forward+backward, to the DESIGN.md §8 output 2×32×64³ and to a small
// 2×32×16³ that lavapipe runs. Bytes moved per fwd: in + out = 9/8 of the
// output; bwd the same. "copy" is the baseline: a one-part Concat, the
// layout kernel copying as many bytes as the output.
func BenchmarkUpsample(b *testing.B) {
	for _, out := range []int{64, 16} {
		p := ref.UpsampleParams{N: 2, C: 32, In: ref.Dims3{out / 2, out / 2, out / 2}, Factor: ref.Dims3{2, 2, 2}}
		b.Run(fmt.Sprintf("copy/2x32x%d^3", out), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			cp := ref.ConcatParams{N: 2, Channels: []int{32}, Size: p.OutputSize()}
			benchCase(b, gpuEngine(b), opCase{tensors: []tensorSpec{input("x", randn(r, cp.OutputLen())), output("y", cp.OutputLen())},
				run: func(e Engine, ts map[string]*Tensor) error { return e.Concat(cp, []*Tensor{ts["x"]}, ts["y"]) }})
		})
		b.Run(fmt.Sprintf("fwd/2x32x%d^3", out), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			benchCase(b, gpuEngine(b), opCase{tensors: []tensorSpec{input("x", randn(r, p.InputLen())), output("y", p.OutputLen())},
				run: func(e Engine, ts map[string]*Tensor) error { return e.Upsample(p, ts["x"], ts["y"]) }})
		})
		b.Run(fmt.Sprintf("fwd+bwd/2x32x%d^3", out), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			benchCase(b, gpuEngine(b), opCase{tensors: []tensorSpec{input("x", randn(r, p.InputLen())), output("y", p.OutputLen()),
				input("dy", randn(r, p.OutputLen())), output("dx", p.InputLen())},
				run: func(e Engine, ts map[string]*Tensor) error {
					if err := e.Upsample(p, ts["x"], ts["y"]); err != nil {
						return err
					}
					return e.UpsampleBackward(p, ts["dy"], ts["dx"])
				}})
		})
	}
}
