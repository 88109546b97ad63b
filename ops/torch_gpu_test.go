package ops

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The GPU engine against PyTorch 1.13 through the fixtures in testdata/ops,
// made by testdata/ops/make_fixtures.py (the same fixtures package ref is
// tested against). Inputs there are float32 values and the expected results
// were computed by PyTorch in float64, so a result differs from them by its
// float32 rounding (at most 2⁻²⁴ ≈ 6e-8 relative per element) plus the
// kernel's own float32 arithmetic. The bounds are relative L2 errors per
// output; the worst errors seen on lavapipe are in parentheses. An indexing
// or wiring fault gives errors of 1e-2 and more, and an unwritten element
// (outputs start as NaN) gives +Inf.
const (
	// Convolutions, instance norm, losses: sums over up to a few hundred
	// float32 terms, exp and log (2.4e-7).
	torchGPUTolConv = 1e-5
	torchGPUTolNorm = 1e-5
	torchGPUTolLoss = 1e-5
	// LeakyReLU: one product, one rounding (7.6e-9).
	torchGPUTolLeaky = 1e-7
	// Nearest up-sampling: the backward sums up to 8 float32 terms (5.1e-8).
	torchGPUTolUpsample = 1e-6
	// Padding and concatenation move values without arithmetic: exact.
	torchGPUTolMove = 0
	// Adam and SGD: a few steps of elementwise updates with scalars rounded
	// to float32 (1.0e-7).
	torchGPUTolOptim = 1e-6
)

// torchFixtureRoot is the fixtures' folder, relative to the module root.
const torchFixtureRoot = "testdata/ops"

// torchFix is one case folder of testdata/ops.
type torchFix struct {
	t   *testing.T
	dir string
}

func openTorchFix(t *testing.T, name string) *torchFix {
	t.Helper()
	dir := filepath.Join("..", filepath.FromSlash(torchFixtureRoot), name)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("fixture %s is missing (run testdata/ops/make_fixtures.py): %v", name, err)
	}
	return &torchFix{t: t, dir: dir}
}

func (f *torchFix) has(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name+".npy"))
	return err == nil
}

// read loads an array, checks its shape when shape is given, and returns
// float arrays as float64 and int32 arrays as int32.
func (f *torchFix) read(name string, shape []int) ([]float64, []int32) {
	f.t.Helper()
	file, err := os.Open(filepath.Join(f.dir, name+".npy"))
	if err != nil {
		f.t.Fatalf("fixture %s: %v", f.dir, err)
	}
	defer file.Close()
	r, err := npyio.NewReader(file)
	if err != nil {
		f.t.Fatalf("fixture %s/%s: %v", f.dir, name, err)
	}
	if shape != nil && !slices.Equal(r.Header.Descr.Shape, shape) {
		f.t.Fatalf("fixture %s/%s has shape %v, the test's parameters want %v", f.dir, name, r.Header.Descr.Shape, shape)
	}
	var fv []float64
	var iv []int32
	switch typ := r.Header.Descr.Type; {
	case strings.Contains(typ, "f4"):
		var v []float32
		err = r.Read(&v)
		fv = make([]float64, len(v))
		for i, x := range v {
			fv[i] = float64(x)
		}
	case strings.Contains(typ, "f8"):
		err = r.Read(&fv)
	case strings.Contains(typ, "i4"):
		err = r.Read(&iv)
	default:
		err = fmt.Errorf("unexpected element type %s", typ)
	}
	if err != nil {
		f.t.Fatalf("fixture %s/%s: %v", f.dir, name, err)
	}
	return fv, iv
}

// input loads a float input as float32 (the fixtures store inputs as
// float32, so this is exact).
func (f *torchFix) input(name string, shape ...int) []float32 {
	f.t.Helper()
	v, _ := f.read(name, shape)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func (f *torchFix) labels(name string, shape ...int) []int32 {
	f.t.Helper()
	_, v := f.read(name, shape)
	if v == nil {
		f.t.Fatalf("fixture %s/%s is not int32", f.dir, name)
	}
	return v
}

// torchDims5 returns the shape [n, c, d, h, w].
func torchDims5(n, c int, s ref.Dims3) []int { return []int{n, c, s[0], s[1], s[2]} }

// torchSession holds a case's tensors on the GPU engine.
type torchSession struct {
	t  *testing.T
	g  *GPU
	ts []*Tensor
}

func (s *torchSession) alloc(n int) *Tensor {
	s.t.Helper()
	x, err := s.g.Alloc(n)
	if err != nil {
		s.t.Fatal(err)
	}
	s.ts = append(s.ts, x)
	return x
}

// upload returns a tensor holding v.
func (s *torchSession) upload(v []float32) *Tensor {
	s.t.Helper()
	x := s.alloc(len(v))
	if err := s.g.Write(x, v); err != nil {
		s.t.Fatal(err)
	}
	return x
}

// poisoned returns a tensor of n NaNs, so an element a kernel leaves
// unwritten fails any comparison.
func (s *torchSession) poisoned(n int) *Tensor {
	s.t.Helper()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return s.upload(v)
}

func (s *torchSession) uploadLabels(v []int32) *Tensor {
	s.t.Helper()
	x, err := s.g.AllocLabels(len(v))
	if err != nil {
		s.t.Fatal(err)
	}
	s.ts = append(s.ts, x)
	if err := s.g.WriteLabels(x, v); err != nil {
		s.t.Fatal(err)
	}
	return x
}

func (s *torchSession) read(x *Tensor) []float32 {
	s.t.Helper()
	v := make([]float32, x.Len())
	if err := s.g.Read(x, v); err != nil {
		s.t.Fatal(err)
	}
	return v
}

func (s *torchSession) readLabels(x *Tensor) []int32 {
	s.t.Helper()
	v := make([]int32, x.Len())
	if err := s.g.ReadLabels(x, v); err != nil {
		s.t.Fatal(err)
	}
	return v
}

// check fails on an error returned while recording.
func (s *torchSession) check(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

func (s *torchSession) free() {
	for _, x := range s.ts {
		s.g.Free(x)
	}
	s.ts = nil
}

// torchResults maps a fixture's result names to the GPU's values.
type torchResults map[string][]float32

// torchRun runs one fixture case on the GPU engine.
type torchRun func(s *torchSession, f *torchFix) torchResults

func torchConvLike(s *torchSession, f *torchFix, xs, ws, ys []int, cout int,
	fwd func(x, w, b, y *Tensor) error, bwd func(x, w, dy, dx, dw, db *Tensor) error) torchResults {
	x, w := f.input("x", xs...), f.input("w", ws...)
	b, dy := f.input("b", cout), f.input("dy", ys...)
	tx, tw, tb, tdy := s.upload(x), s.upload(w), s.upload(b), s.upload(dy)
	y, dx, dw, db := s.poisoned(len(dy)), s.poisoned(len(x)), s.poisoned(len(w)), s.poisoned(cout)
	s.check(fwd(tx, tw, tb, y))
	s.check(bwd(tx, tw, tdy, dx, dw, db))
	return torchResults{"y": s.read(y), "dx": s.read(dx), "dw": s.read(dw), "db": s.read(db)}
}

func torchDepthwise(p ref.DepthwiseParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		k := p.Kernel
		return torchConvLike(s, f, torchDims5(p.N, p.C, p.Size), []int{p.C, 1, k, k, k}, torchDims5(p.N, p.C, p.Size), p.C,
			func(x, w, b, y *Tensor) error { return s.g.DepthwiseConv3d(p, x, w, b, y) },
			func(x, w, dy, dx, dw, db *Tensor) error { return s.g.DepthwiseConv3dBackward(p, x, w, dy, dx, dw, db) })
	}
}

func torchPointwise(p ref.PointwiseParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		return torchConvLike(s, f, torchDims5(p.N, p.Cin, p.Size), []int{p.Cout, p.Cin, 1, 1, 1}, torchDims5(p.N, p.Cout, p.Size), p.Cout,
			func(x, w, b, y *Tensor) error { return s.g.PointwiseConv3d(p, x, w, b, y) },
			func(x, w, dy, dx, dw, db *Tensor) error { return s.g.PointwiseConv3dBackward(p, x, w, dy, dx, dw, db) })
	}
}

func torchConv(p ref.ConvParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		k := p.Kernel
		return torchConvLike(s, f, torchDims5(p.N, p.Cin, p.In), []int{p.Cout, p.Cin, k[0], k[1], k[2]},
			torchDims5(p.N, p.Cout, p.OutputSize()), p.Cout,
			func(x, w, b, y *Tensor) error { return s.g.Conv3d(p, x, w, b, y) },
			func(x, w, dy, dx, dw, db *Tensor) error { return s.g.Conv3dBackward(p, x, w, dy, dx, dw, db) })
	}
}

func torchConvTranspose(p ref.ConvTransposeParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		k := p.Kernel
		return torchConvLike(s, f, torchDims5(p.N, p.Cin, p.In), []int{p.Cin, p.Cout, k[0], k[1], k[2]},
			torchDims5(p.N, p.Cout, p.OutputSize()), p.Cout,
			func(x, w, b, y *Tensor) error { return s.g.ConvTranspose3d(p, x, w, b, y) },
			func(x, w, dy, dx, dw, db *Tensor) error { return s.g.ConvTranspose3dBackward(p, x, w, dy, dx, dw, db) })
	}
}

func torchNorm(p ref.NormParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		xs := torchDims5(p.N, p.C, p.Size)
		x := s.upload(f.input("x", xs...))
		var r *Tensor
		if p.Residual {
			r = s.upload(f.input("r", xs...))
		} else if f.has("r") {
			s.t.Fatalf("fixture %s has a residual but the parameters have none", f.dir)
		}
		gamma, beta := s.upload(f.input("gamma", p.C)), s.upload(f.input("beta", p.C))
		dy := s.upload(f.input("dy", xs...))
		n := x.Len()
		y, mean, invStd := s.poisoned(n), s.poisoned(p.N*p.C), s.poisoned(p.N*p.C)
		dx, dgamma, dbeta := s.poisoned(n), s.poisoned(p.C), s.poisoned(p.C)
		var dr *Tensor
		if p.Residual {
			dr = s.poisoned(n)
		}
		s.check(s.g.InstanceNorm3d(p, x, r, gamma, beta, y, mean, invStd))
		// The backward pass reads the saved statistics, as PyTorch's does.
		s.check(s.g.InstanceNorm3dBackward(p, x, r, gamma, beta, mean, invStd, dy, dx, dr, dgamma, dbeta))
		out := torchResults{"y": s.read(y), "mean": s.read(mean), "inv_std": s.read(invStd),
			"dx": s.read(dx), "dgamma": s.read(dgamma), "dbeta": s.read(dbeta)}
		if p.Residual {
			out["dr"] = s.read(dr)
		}
		return out
	}
}

func torchLeaky(slope float64, shape ...int) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		x, dy := s.upload(f.input("x", shape...)), s.upload(f.input("dy", shape...))
		y, dx := s.poisoned(x.Len()), s.poisoned(x.Len())
		s.check(s.g.LeakyReLU(slope, x, y))
		s.check(s.g.LeakyReLUBackward(slope, x, dy, dx))
		return torchResults{"y": s.read(y), "dx": s.read(dx)}
	}
}

func torchUpsample(p ref.UpsampleParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		x := s.upload(f.input("x", torchDims5(p.N, p.C, p.In)...))
		dy := s.upload(f.input("dy", torchDims5(p.N, p.C, p.OutputSize())...))
		y, dx := s.poisoned(dy.Len()), s.poisoned(x.Len())
		s.check(s.g.Upsample(p, x, y))
		s.check(s.g.UpsampleBackward(p, dy, dx))
		return torchResults{"y": s.read(y), "dx": s.read(dx)}
	}
}

func torchPad(p ref.PadParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		x := s.upload(f.input("x", torchDims5(p.N, p.C, p.In)...))
		dy := s.upload(f.input("dy", torchDims5(p.N, p.C, p.OutputSize())...))
		y, dx := s.poisoned(dy.Len()), s.poisoned(x.Len())
		s.check(s.g.Pad(p, x, y))
		s.check(s.g.PadBackward(p, dy, dx))
		return torchResults{"y": s.read(y), "dx": s.read(dx)}
	}
}

func torchConcat(p ref.ConcatParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		parts := make([]*Tensor, len(p.Channels))
		grads := make([]*Tensor, len(p.Channels))
		total := 0
		for i, c := range p.Channels {
			parts[i] = s.upload(f.input(fmt.Sprintf("x%d", i), torchDims5(p.N, c, p.Size)...))
			grads[i] = s.poisoned(parts[i].Len())
			total += c
		}
		dy := s.upload(f.input("dy", torchDims5(p.N, total, p.Size)...))
		y := s.poisoned(dy.Len())
		s.check(s.g.Concat(p, parts, y))
		s.check(s.g.Split(p, dy, grads))
		out := torchResults{"y": s.read(y)}
		for i, g := range grads {
			out[fmt.Sprintf("dx%d", i)] = s.read(g)
		}
		return out
	}
}

func torchCrossEntropy(p ref.LossParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		ls := []int{p.N, p.Size[0], p.Size[1], p.Size[2]}
		logits := s.upload(f.input("logits", torchDims5(p.N, p.Classes, p.Size)...))
		labels := s.uploadLabels(f.labels("labels", ls...))
		dl, probs, loss := s.poisoned(logits.Len()), s.poisoned(logits.Len()), s.poisoned(1)
		poison := make([]int32, labels.Len())
		for i := range poison {
			poison[i] = -1
		}
		am := s.uploadLabels(poison)
		s.check(s.g.CrossEntropy(p, logits, labels, dl, loss))
		s.check(s.g.Softmax(p, logits, probs))
		s.check(s.g.Argmax(p, logits, am))
		got, want := s.readLabels(am), f.labels("argmax", ls...)
		for i := range want {
			if got[i] != want[i] {
				s.t.Errorf("argmax at %d: got %d, want %d", i, got[i], want[i])
				break
			}
		}
		return torchResults{"loss": s.read(loss), "dlogits": s.read(dl), "probs": s.read(probs)}
	}
}

func torchDice(p ref.DiceParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		logits := s.upload(f.input("logits", torchDims5(p.N, p.Classes, p.Size)...))
		labels := s.uploadLabels(f.labels("labels", p.N, p.Size[0], p.Size[1], p.Size[2]))
		dl, loss := s.poisoned(logits.Len()), s.poisoned(1)
		s.check(s.g.SoftDice(p, logits, labels, dl, loss))
		return torchResults{"loss": s.read(loss), "dlogits": s.read(dl)}
	}
}

// torchOptim runs a few optimiser steps on one parameter tensor: Adam when
// sgd is nil. Adam's moments start at zero; SGD's momentum buffer starts
// poisoned, since the first step sets it without reading it.
func torchOptim(size, steps int, adam ref.AdamParams, sgd *ref.SGDParams) torchRun {
	return func(s *torchSession, f *torchFix) torchResults {
		param := s.upload(f.input("param0", size))
		grads := f.input("grads", steps, size)
		grad := s.poisoned(size)
		var m, v, buf *Tensor
		if sgd == nil {
			m, v = s.upload(make([]float32, size)), s.upload(make([]float32, size))
		} else if sgd.Momentum != 0 {
			buf = s.poisoned(size)
		}
		var params []float32
		for step := 1; step <= steps; step++ {
			s.check(s.g.Write(grad, grads[(step-1)*size:step*size]))
			if sgd != nil {
				s.check(s.g.SGDStep(*sgd, step, param, grad, buf))
			} else {
				s.check(s.g.AdamStep(adam, step, param, grad, m, v))
			}
			params = append(params, s.read(param)...)
		}
		out := torchResults{"params": params}
		switch {
		case sgd == nil:
			out["m"], out["v"] = s.read(m), s.read(v)
		case buf != nil:
			out["buf"] = s.read(buf)
		}
		return out
	}
}

// torchInputs are the fixture arrays that hold inputs rather than results.
var torchInputs = map[string]bool{
	"x": true, "w": true, "b": true, "dy": true, "r": true, "gamma": true, "beta": true,
	"logits": true, "labels": true, "argmax": true, "param0": true, "grads": true,
}

func TestGPUAgainstPyTorch(t *testing.T) {
	g := gpuEngine(t)
	if vk.ValidationRequested() && !g.Device().Validating() {
		t.Fatal("U2NET_VK_VALIDATE is set but the validation layer is not on")
	}
	sgdNesterov := ref.SGDParams{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-3, Nesterov: true}
	sgdDamp := ref.SGDParams{LR: 0.05, Momentum: 0.8, Dampening: 0.3, WeightDecay: 1e-2}
	sgdPlain := ref.SGDParams{LR: 0.2, WeightDecay: 0.1}
	adamWD := ref.DefaultAdam(1e-2)
	adamWD.WeightDecay = 1e-2
	eps := ref.DefaultNormEps
	cases := []struct {
		name string
		run  torchRun
		tol  float64
	}{
		{"depthwise_k3", torchDepthwise(ref.DepthwiseParams{N: 3, C: 3, Size: ref.Dims3{5, 1, 7}, Kernel: 3}), torchGPUTolConv},
		{"depthwise_k1", torchDepthwise(ref.DepthwiseParams{N: 1, C: 17, Size: ref.Dims3{2, 3, 5}, Kernel: 1}), torchGPUTolConv},
		{"depthwise_k5", torchDepthwise(ref.DepthwiseParams{N: 1, C: 3, Size: ref.Dims3{3, 4, 2}, Kernel: 5}), torchGPUTolConv},

		{"pointwise_17to3", torchPointwise(ref.PointwiseParams{N: 3, Cin: 17, Cout: 3, Size: ref.Dims3{1, 3, 5}}), torchGPUTolConv},
		{"pointwise_1to17", torchPointwise(ref.PointwiseParams{N: 1, Cin: 1, Cout: 17, Size: ref.Dims3{2, 2, 3}}), torchGPUTolConv},

		{"conv_k3_pad1", torchConv(ref.ConvParams{N: 1, Cin: 3, Cout: 5, In: ref.Dims3{3, 4, 5}, Kernel: ref.Dims3{3, 3, 3},
			Stride: ref.Dims3{1, 1, 1}, PadBefore: ref.Dims3{1, 1, 1}, PadAfter: ref.Dims3{1, 1, 1}}), torchGPUTolConv},
		{"conv_k3_s122_asym", torchConv(ref.ConvParams{N: 3, Cin: 3, Cout: 2, In: ref.Dims3{3, 6, 7}, Kernel: ref.Dims3{3, 3, 3},
			Stride: ref.Dims3{1, 2, 2}, PadBefore: ref.Dims3{1, 0, 0}, PadAfter: ref.Dims3{1, 1, 1}}), torchGPUTolConv},
		{"conv_k3_s2_nopad", torchConv(ref.ConvParams{N: 1, Cin: 2, Cout: 3, In: ref.Dims3{5, 5, 4}, Kernel: ref.Dims3{3, 3, 3},
			Stride: ref.Dims3{2, 2, 2}}), torchGPUTolConv},
		{"conv_k132_mixed", torchConv(ref.ConvParams{N: 1, Cin: 17, Cout: 1, In: ref.Dims3{1, 3, 4}, Kernel: ref.Dims3{1, 3, 2},
			Stride: ref.Dims3{1, 1, 2}, PadBefore: ref.Dims3{0, 2, 0}, PadAfter: ref.Dims3{0, 0, 1}}), torchGPUTolConv},
		{"conv_k1", torchConv(ref.ConvParams{N: 3, Cin: 3, Cout: 4, In: ref.Dims3{2, 1, 3}, Kernel: ref.Dims3{1, 1, 1},
			Stride: ref.Dims3{1, 1, 1}}), torchGPUTolConv},

		{"convt_222", torchConvTranspose(ref.ConvTransposeParams{N: 3, Cin: 3, Cout: 2, In: ref.Dims3{2, 1, 3},
			Kernel: ref.Dims3{2, 2, 2}, Stride: ref.Dims3{2, 2, 2}}), torchGPUTolConv},
		{"convt_122", torchConvTranspose(ref.ConvTransposeParams{N: 1, Cin: 17, Cout: 3, In: ref.Dims3{3, 2, 1},
			Kernel: ref.Dims3{1, 2, 2}, Stride: ref.Dims3{1, 2, 2}}), torchGPUTolConv},
		{"convt_k321_s211", torchConvTranspose(ref.ConvTransposeParams{N: 1, Cin: 2, Cout: 3, In: ref.Dims3{2, 3, 2},
			Kernel: ref.Dims3{3, 2, 1}, Stride: ref.Dims3{2, 1, 1}}), torchGPUTolConv},

		{"norm_residual_leaky", torchNorm(ref.NormParams{N: 3, C: 3, Size: ref.Dims3{3, 1, 5}, Eps: eps, Residual: true,
			LeakyReLU: true, Slope: ref.DefaultSlope}), torchGPUTolNorm},
		{"norm_plain", torchNorm(ref.NormParams{N: 1, C: 17, Size: ref.Dims3{2, 2, 2}, Eps: eps}), torchGPUTolNorm},
		{"norm_leaky02", torchNorm(ref.NormParams{N: 1, C: 1, Size: ref.Dims3{7, 1, 1}, Eps: eps, LeakyReLU: true,
			Slope: 0.2}), torchGPUTolNorm},

		{"leaky_001", torchLeaky(ref.DefaultSlope, 2, 3, 1, 2, 5), torchGPUTolLeaky},
		{"leaky_02", torchLeaky(0.2, 1, 1, 3, 1, 7), torchGPUTolLeaky},

		{"upsample_222", torchUpsample(ref.UpsampleParams{N: 1, C: 3, In: ref.Dims3{2, 1, 3}, Factor: ref.Dims3{2, 2, 2}}), torchGPUTolUpsample},
		{"upsample_122", torchUpsample(ref.UpsampleParams{N: 3, C: 1, In: ref.Dims3{3, 2, 2}, Factor: ref.Dims3{1, 2, 2}}), torchGPUTolUpsample},
		{"upsample_312", torchUpsample(ref.UpsampleParams{N: 1, C: 2, In: ref.Dims3{1, 3, 2}, Factor: ref.Dims3{3, 1, 2}}), torchGPUTolUpsample},

		{"pad_asym", torchPad(ref.PadParams{N: 3, C: 3, In: ref.Dims3{2, 3, 1}, Before: ref.Dims3{0, 1, 2},
			After: ref.Dims3{1, 0, 3}}), torchGPUTolMove},
		{"pad_same_s2", torchPad(ref.PadParams{N: 1, C: 2, In: ref.Dims3{4, 3, 5}, Before: ref.Dims3{1, 0, 0},
			After: ref.Dims3{1, 1, 1}}), torchGPUTolMove},

		{"concat_3parts", torchConcat(ref.ConcatParams{N: 3, Channels: []int{1, 3, 2}, Size: ref.Dims3{2, 1, 3}}), torchGPUTolMove},

		{"cross_entropy_k3", torchCrossEntropy(ref.LossParams{N: 3, Classes: 3, Size: ref.Dims3{2, 1, 5}}), torchGPUTolLoss},
		{"cross_entropy_k17", torchCrossEntropy(ref.LossParams{N: 1, Classes: 17, Size: ref.Dims3{3, 2, 1}}), torchGPUTolLoss},

		{"dice_background", torchDice(ref.DiceParams{LossParams: ref.LossParams{N: 3, Classes: 3, Size: ref.Dims3{2, 3, 1}},
			Eps: 1e-5, IncludeBackground: true}), torchGPUTolLoss},
		{"dice_no_background", torchDice(ref.DiceParams{LossParams: ref.LossParams{N: 1, Classes: 4, Size: ref.Dims3{3, 1, 5}},
			Eps: 1e-5}), torchGPUTolLoss},
		{"dice_eps1", torchDice(ref.DiceParams{LossParams: ref.LossParams{N: 3, Classes: 2, Size: ref.Dims3{1, 1, 7}},
			Eps: 1}), torchGPUTolLoss},

		{"adam_wd", torchOptim(37, 4, adamWD, nil), torchGPUTolOptim},
		{"adam_betas", torchOptim(11, 3, ref.AdamParams{LR: 0.1, Beta1: 0.5, Beta2: 0.9, Eps: 1e-3}, nil), torchGPUTolOptim},
		{"sgd_nesterov", torchOptim(37, 4, ref.AdamParams{}, &sgdNesterov), torchGPUTolOptim},
		{"sgd_momentum_dampening", torchOptim(13, 3, ref.AdamParams{}, &sgdDamp), torchGPUTolOptim},
		{"sgd_plain", torchOptim(5, 2, ref.AdamParams{}, &sgdPlain), torchGPUTolOptim},
	}
	tested := map[string]bool{}
	for _, c := range cases {
		tested[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			f := openTorchFix(t, c.name)
			s := &torchSession{t: t, g: g}
			defer s.free()
			got := c.run(s, f)
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for name, v := range got {
				want, _ := f.read(name, nil)
				e := torchRelL2(v, want)
				worst = max(worst, e)
				if !(e <= c.tol) {
					t.Errorf("%s: relative L2 error %.3g > %g%s", name, e, c.tol, torchFirstBad(v, want))
				}
			}
			t.Logf("worst relative L2 error %.3g (bound %g)", worst, c.tol)
			torchCheckAllCompared(t, f, got)
		})
	}
	// Every case folder must be in the table, so none is silently skipped.
	entries, err := os.ReadDir(filepath.Join("..", filepath.FromSlash(torchFixtureRoot)))
	if err != nil {
		t.Fatalf("fixtures missing (run testdata/ops/make_fixtures.py): %v", err)
	}
	for _, e := range entries {
		if e.IsDir() && !tested[e.Name()] {
			t.Errorf("fixture %s is not compared by any test case", e.Name())
		}
	}
	if err := g.Device().ValidationErrors(); err != nil {
		t.Error(err)
	}
}

// torchRelL2 returns ‖got − want‖ / ‖want‖ in float64; +Inf when the
// lengths differ or got holds a NaN or an infinity.
func torchRelL2(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, n float64
	for i, x := range got {
		g := float64(x)
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		d += (g - want[i]) * (g - want[i])
		n += want[i] * want[i]
	}
	if n == 0 {
		if d == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(d / n)
}

// torchFirstBad describes the first NaN or the worst element.
func torchFirstBad(got []float32, want []float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf(" (%d elements, want %d)", len(got), len(want))
	}
	worst, at := -1.0, -1
	for i, x := range got {
		if math.IsNaN(float64(x)) {
			return fmt.Sprintf(" (element %d is NaN: never written?)", i)
		}
		if d := math.Abs(float64(x) - want[i]); d > worst {
			worst, at = d, i
		}
	}
	if at < 0 {
		return ""
	}
	return fmt.Sprintf(" (worst element %d: got %g, want %g)", at, got[at], want[at])
}

// torchCheckAllCompared fails when the fixture holds a result the run did
// not produce.
func torchCheckAllCompared(t *testing.T, f *torchFix, got torchResults) {
	t.Helper()
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".npy")
		isPart := len(name) == 2 && name[0] == 'x' && name[1] >= '0' && name[1] <= '9'
		if _, ok := got[name]; !ok && !torchInputs[name] && !isPart {
			t.Errorf("fixture %s/%s is not compared", f.dir, e.Name())
		}
	}
}
