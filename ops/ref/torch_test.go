package ref

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Comparisons with PyTorch 1.13 through the fixtures in testdata/ops, made by
// testdata/ops/make_fixtures.py. The inputs there are float32 values and the
// expected outputs were computed in float64, so the float32 functions differ
// from them only by the rounding of their outputs, and the float64
// instantiation of the same code only by float64 rounding.
const (
	torchTol32 = 1e-6  // relative L2 error, float32 functions
	torchTol64 = 1e-12 // relative L2 error, float64 instantiation
)

// fixtureRun runs one case in element type float64 (wide) or float32 and
// returns the outputs by the names the fixture stores their expected values
// under.
type fixtureRun func(t *testing.T, f *fixture, wide bool) results

// dual picks the float32 or float64 instantiation of a generic runner.
func dual[P any](p P, r32, r64 func(*testing.T, *fixture, P) results) fixtureRun {
	return func(t *testing.T, f *fixture, wide bool) results {
		if wide {
			return r64(t, f, p)
		}
		return r32(t, f, p)
	}
}

func runDepthwise[T float](t *testing.T, f *fixture, p DepthwiseParams) results {
	x := input[T](f, "x", shape5(p.N, p.C, p.Size)...)
	w := input[T](f, "w", p.weightShape()...)
	b := input[T](f, "b", p.C)
	dy := input[T](f, "dy", shape5(p.N, p.C, p.Size)...)
	y, dx, dw, db := poisoned[T](p.OutputLen()), poisoned[T](len(x)), poisoned[T](len(w)), poisoned[T](len(b))
	checkNoErr(t, depthwiseConv3d(p, x, w, b, y))
	checkNoErr(t, depthwiseConv3dBackward(p, x, w, dy, dx, dw, db))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	put(r, "dw", dw)
	put(r, "db", db)
	return r
}

func runPointwise[T float](t *testing.T, f *fixture, p PointwiseParams) results {
	x := input[T](f, "x", shape5(p.N, p.Cin, p.Size)...)
	w := input[T](f, "w", p.weightShape()...)
	b := input[T](f, "b", p.Cout)
	dy := input[T](f, "dy", shape5(p.N, p.Cout, p.Size)...)
	y, dx, dw, db := poisoned[T](p.OutputLen()), poisoned[T](len(x)), poisoned[T](len(w)), poisoned[T](len(b))
	checkNoErr(t, pointwiseConv3d(p, x, w, b, y))
	checkNoErr(t, pointwiseConv3dBackward(p, x, w, dy, dx, dw, db))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	put(r, "dw", dw)
	put(r, "db", db)
	return r
}

func runConv[T float](t *testing.T, f *fixture, p ConvParams) results {
	x := input[T](f, "x", shape5(p.N, p.Cin, p.In)...)
	w := input[T](f, "w", p.weightShape()...)
	b := input[T](f, "b", p.Cout)
	dy := input[T](f, "dy", shape5(p.N, p.Cout, p.OutputSize())...)
	y, dx, dw, db := poisoned[T](p.OutputLen()), poisoned[T](len(x)), poisoned[T](len(w)), poisoned[T](len(b))
	checkNoErr(t, conv3d(p, x, w, b, y))
	checkNoErr(t, conv3dBackward(p, x, w, dy, dx, dw, db))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	put(r, "dw", dw)
	put(r, "db", db)
	return r
}

func runConvTranspose[T float](t *testing.T, f *fixture, p ConvTransposeParams) results {
	x := input[T](f, "x", shape5(p.N, p.Cin, p.In)...)
	w := input[T](f, "w", p.weightShape()...)
	b := input[T](f, "b", p.Cout)
	dy := input[T](f, "dy", shape5(p.N, p.Cout, p.OutputSize())...)
	y, dx, dw, db := poisoned[T](p.OutputLen()), poisoned[T](len(x)), poisoned[T](len(w)), poisoned[T](len(b))
	checkNoErr(t, convTranspose3d(p, x, w, b, y))
	checkNoErr(t, convTranspose3dBackward(p, x, w, dy, dx, dw, db))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	put(r, "dw", dw)
	put(r, "db", db)
	return r
}

func runNorm[T float](t *testing.T, f *fixture, p NormParams) results {
	xs := shape5(p.N, p.C, p.Size)
	x := input[T](f, "x", xs...)
	var res []T
	if p.Residual {
		res = input[T](f, "r", xs...)
	} else if f.has("r") {
		t.Fatalf("fixture %s has a residual but the parameters have none", f.dir)
	}
	gamma, beta := input[T](f, "gamma", p.C), input[T](f, "beta", p.C)
	dy := input[T](f, "dy", xs...)
	y, mean, invStd := poisoned[T](p.OutputLen()), poisoned[T](p.StatsLen()), poisoned[T](p.StatsLen())
	dx, dgamma, dbeta := poisoned[T](len(x)), poisoned[T](p.C), poisoned[T](p.C)
	var dr []T
	if p.Residual {
		dr = poisoned[T](len(x))
	}
	checkNoErr(t, instanceNorm3d(p, x, res, gamma, beta, y, mean, invStd))
	checkNoErr(t, instanceNorm3dBackward(p, x, res, gamma, beta, dy, dx, dr, dgamma, dbeta))
	r := results{}
	put(r, "y", y)
	put(r, "mean", mean)
	put(r, "inv_std", invStd)
	put(r, "dx", dx)
	put(r, "dgamma", dgamma)
	put(r, "dbeta", dbeta)
	if p.Residual {
		put(r, "dr", dr)
	}
	return r
}

type leakyCase struct {
	slope float64
	shape []int
}

func runLeaky[T float](t *testing.T, f *fixture, c leakyCase) results {
	x := input[T](f, "x", c.shape...)
	dy := input[T](f, "dy", c.shape...)
	y, dx := poisoned[T](len(x)), poisoned[T](len(x))
	checkNoErr(t, leakyReLU(c.slope, x, y))
	checkNoErr(t, leakyReLUBackward(c.slope, x, dy, dx))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	return r
}

func runUpsample[T float](t *testing.T, f *fixture, p UpsampleParams) results {
	x := input[T](f, "x", shape5(p.N, p.C, p.In)...)
	dy := input[T](f, "dy", shape5(p.N, p.C, p.OutputSize())...)
	y, dx := poisoned[T](p.OutputLen()), poisoned[T](p.InputLen())
	checkNoErr(t, upsample(p, x, y))
	checkNoErr(t, upsampleBackward(p, dy, dx))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	return r
}

func runPad[T float](t *testing.T, f *fixture, p PadParams) results {
	x := input[T](f, "x", shape5(p.N, p.C, p.In)...)
	dy := input[T](f, "dy", shape5(p.N, p.C, p.OutputSize())...)
	y, dx := poisoned[T](p.OutputLen()), poisoned[T](p.InputLen())
	checkNoErr(t, pad(p, x, y))
	checkNoErr(t, padBackward(p, dy, dx))
	r := results{}
	put(r, "y", y)
	put(r, "dx", dx)
	return r
}

func runConcat[T float](t *testing.T, f *fixture, p ConcatParams) results {
	parts := make([][]T, len(p.Channels))
	grads := make([][]T, len(p.Channels))
	for i, c := range p.Channels {
		parts[i] = input[T](f, "x"+string(rune('0'+i)), shape5(p.N, c, p.Size)...)
		grads[i] = poisoned[T](p.PartLen(i))
	}
	dy := input[T](f, "dy", shape5(p.N, p.OutputChannels(), p.Size)...)
	y := poisoned[T](p.OutputLen())
	checkNoErr(t, concat(p, parts, y))
	checkNoErr(t, split(p, dy, grads))
	r := results{}
	put(r, "y", y)
	for i := range grads {
		put(r, "dx"+string(rune('0'+i)), grads[i])
	}
	return r
}

func runCrossEntropy[T float](t *testing.T, f *fixture, p LossParams) results {
	logits := input[T](f, "logits", shape5(p.N, p.Classes, p.Size)...)
	labels := f.int32s("labels", p.N, p.Size[0], p.Size[1], p.Size[2])
	dl, probs := poisoned[T](len(logits)), poisoned[T](len(logits))
	argmaxed := make([]int32, p.LabelsLen())
	for i := range argmaxed {
		argmaxed[i] = -1
	}
	loss, err := crossEntropy(p, logits, labels, dl)
	checkNoErr(t, err)
	checkNoErr(t, softmax(p, logits, probs))
	checkNoErr(t, argmax(p, logits, argmaxed))
	want := f.int32s("argmax", p.N, p.Size[0], p.Size[1], p.Size[2])
	for i := range want {
		if argmaxed[i] != want[i] {
			t.Fatalf("argmax at %d: got %d, want %d", i, argmaxed[i], want[i])
		}
	}
	r := results{"loss": {loss}}
	put(r, "dlogits", dl)
	put(r, "probs", probs)
	return r
}

func runDice[T float](t *testing.T, f *fixture, p DiceParams) results {
	logits := input[T](f, "logits", shape5(p.N, p.Classes, p.Size)...)
	labels := f.int32s("labels", p.N, p.Size[0], p.Size[1], p.Size[2])
	dl := poisoned[T](len(logits))
	loss, err := softDice(p, logits, labels, dl)
	checkNoErr(t, err)
	r := results{"loss": {loss}}
	put(r, "dlogits", dl)
	return r
}

// optimCase is a run of a few optimiser steps on one parameter tensor.
type optimCase struct {
	size, steps int
	adam        AdamParams
	sgd         *SGDParams // SGD when set, else Adam
}

func runOptim[T float](t *testing.T, f *fixture, c optimCase) results {
	param := input[T](f, "param0", c.size)
	grads := input[T](f, "grads", c.steps, c.size)
	m, v, buf := make([]T, c.size), make([]T, c.size), make([]T, c.size)
	var params []T
	for s := 1; s <= c.steps; s++ {
		g := grads[(s-1)*c.size : s*c.size]
		if c.sgd != nil {
			checkNoErr(t, sgdStep(*c.sgd, s, param, g, buf))
		} else {
			checkNoErr(t, adamStep(c.adam, s, param, g, m, v))
		}
		params = append(params, param...)
	}
	r := results{}
	put(r, "params", params)
	if c.sgd != nil {
		if c.sgd.Momentum != 0 {
			put(r, "buf", buf)
		}
	} else {
		put(r, "m", m)
		put(r, "v", v)
	}
	return r
}

func TestAgainstPyTorch(t *testing.T) {
	sgdNesterov := SGDParams{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-3, Nesterov: true}
	sgdDamp := SGDParams{LR: 0.05, Momentum: 0.8, Dampening: 0.3, WeightDecay: 1e-2}
	sgdPlain := SGDParams{LR: 0.2, WeightDecay: 0.1}
	adamWD := DefaultAdam(1e-2)
	adamWD.WeightDecay = 1e-2
	cases := []struct {
		name string
		run  fixtureRun
	}{
		{"depthwise_k3", dual(DepthwiseParams{N: 3, C: 3, Size: Dims3{5, 1, 7}, Kernel: 3}, runDepthwise[float32], runDepthwise[float64])},
		{"depthwise_k1", dual(DepthwiseParams{N: 1, C: 17, Size: Dims3{2, 3, 5}, Kernel: 1}, runDepthwise[float32], runDepthwise[float64])},
		{"depthwise_k5", dual(DepthwiseParams{N: 1, C: 3, Size: Dims3{3, 4, 2}, Kernel: 5}, runDepthwise[float32], runDepthwise[float64])},

		{"pointwise_17to3", dual(PointwiseParams{N: 3, Cin: 17, Cout: 3, Size: Dims3{1, 3, 5}}, runPointwise[float32], runPointwise[float64])},
		{"pointwise_1to17", dual(PointwiseParams{N: 1, Cin: 1, Cout: 17, Size: Dims3{2, 2, 3}}, runPointwise[float32], runPointwise[float64])},

		{"conv_k3_pad1", dual(ConvParams{N: 1, Cin: 3, Cout: 5, In: Dims3{3, 4, 5}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{1, 1, 1},
			PadBefore: Dims3{1, 1, 1}, PadAfter: Dims3{1, 1, 1}}, runConv[float32], runConv[float64])},
		{"conv_k3_s122_asym", dual(ConvParams{N: 3, Cin: 3, Cout: 2, In: Dims3{3, 6, 7}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{1, 2, 2},
			PadBefore: Dims3{1, 0, 0}, PadAfter: Dims3{1, 1, 1}}, runConv[float32], runConv[float64])},
		{"conv_k3_s2_nopad", dual(ConvParams{N: 1, Cin: 2, Cout: 3, In: Dims3{5, 5, 4}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{2, 2, 2}},
			runConv[float32], runConv[float64])},
		{"conv_k132_mixed", dual(ConvParams{N: 1, Cin: 17, Cout: 1, In: Dims3{1, 3, 4}, Kernel: Dims3{1, 3, 2}, Stride: Dims3{1, 1, 2},
			PadBefore: Dims3{0, 2, 0}, PadAfter: Dims3{0, 0, 1}}, runConv[float32], runConv[float64])},
		{"conv_k1", dual(ConvParams{N: 3, Cin: 3, Cout: 4, In: Dims3{2, 1, 3}, Kernel: Dims3{1, 1, 1}, Stride: Dims3{1, 1, 1}},
			runConv[float32], runConv[float64])},

		{"convt_222", dual(ConvTransposeParams{N: 3, Cin: 3, Cout: 2, In: Dims3{2, 1, 3}, Kernel: Dims3{2, 2, 2}, Stride: Dims3{2, 2, 2}},
			runConvTranspose[float32], runConvTranspose[float64])},
		{"convt_122", dual(ConvTransposeParams{N: 1, Cin: 17, Cout: 3, In: Dims3{3, 2, 1}, Kernel: Dims3{1, 2, 2}, Stride: Dims3{1, 2, 2}},
			runConvTranspose[float32], runConvTranspose[float64])},
		{"convt_k321_s211", dual(ConvTransposeParams{N: 1, Cin: 2, Cout: 3, In: Dims3{2, 3, 2}, Kernel: Dims3{3, 2, 1}, Stride: Dims3{2, 1, 1}},
			runConvTranspose[float32], runConvTranspose[float64])},

		{"norm_residual_leaky", dual(NormParams{N: 3, C: 3, Size: Dims3{3, 1, 5}, Eps: DefaultNormEps, Residual: true, LeakyReLU: true, Slope: DefaultSlope},
			runNorm[float32], runNorm[float64])},
		{"norm_plain", dual(NormParams{N: 1, C: 17, Size: Dims3{2, 2, 2}, Eps: DefaultNormEps}, runNorm[float32], runNorm[float64])},
		{"norm_leaky02", dual(NormParams{N: 1, C: 1, Size: Dims3{7, 1, 1}, Eps: DefaultNormEps, LeakyReLU: true, Slope: 0.2},
			runNorm[float32], runNorm[float64])},

		{"leaky_001", dual(leakyCase{DefaultSlope, []int{2, 3, 1, 2, 5}}, runLeaky[float32], runLeaky[float64])},
		{"leaky_02", dual(leakyCase{0.2, []int{1, 1, 3, 1, 7}}, runLeaky[float32], runLeaky[float64])},

		{"upsample_222", dual(UpsampleParams{N: 1, C: 3, In: Dims3{2, 1, 3}, Factor: Dims3{2, 2, 2}}, runUpsample[float32], runUpsample[float64])},
		{"upsample_122", dual(UpsampleParams{N: 3, C: 1, In: Dims3{3, 2, 2}, Factor: Dims3{1, 2, 2}}, runUpsample[float32], runUpsample[float64])},
		{"upsample_312", dual(UpsampleParams{N: 1, C: 2, In: Dims3{1, 3, 2}, Factor: Dims3{3, 1, 2}}, runUpsample[float32], runUpsample[float64])},

		{"pad_asym", dual(PadParams{N: 3, C: 3, In: Dims3{2, 3, 1}, Before: Dims3{0, 1, 2}, After: Dims3{1, 0, 3}}, runPad[float32], runPad[float64])},
		{"pad_same_s2", dual(PadParams{N: 1, C: 2, In: Dims3{4, 3, 5}, Before: Dims3{1, 0, 0}, After: Dims3{1, 1, 1}}, runPad[float32], runPad[float64])},

		{"concat_3parts", dual(ConcatParams{N: 3, Channels: []int{1, 3, 2}, Size: Dims3{2, 1, 3}}, runConcat[float32], runConcat[float64])},

		{"cross_entropy_k3", dual(LossParams{N: 3, Classes: 3, Size: Dims3{2, 1, 5}}, runCrossEntropy[float32], runCrossEntropy[float64])},
		{"cross_entropy_k17", dual(LossParams{N: 1, Classes: 17, Size: Dims3{3, 2, 1}}, runCrossEntropy[float32], runCrossEntropy[float64])},

		{"dice_background", dual(DiceParams{LossParams: LossParams{N: 3, Classes: 3, Size: Dims3{2, 3, 1}}, Eps: 1e-5, IncludeBackground: true},
			runDice[float32], runDice[float64])},
		{"dice_no_background", dual(DiceParams{LossParams: LossParams{N: 1, Classes: 4, Size: Dims3{3, 1, 5}}, Eps: 1e-5},
			runDice[float32], runDice[float64])},
		{"dice_eps1", dual(DiceParams{LossParams: LossParams{N: 3, Classes: 2, Size: Dims3{1, 1, 7}}, Eps: 1}, runDice[float32], runDice[float64])},

		{"adam_wd", dual(optimCase{size: 37, steps: 4, adam: adamWD}, runOptim[float32], runOptim[float64])},
		{"adam_betas", dual(optimCase{size: 11, steps: 3, adam: AdamParams{LR: 0.1, Beta1: 0.5, Beta2: 0.9, Eps: 1e-3}},
			runOptim[float32], runOptim[float64])},
		{"sgd_nesterov", dual(optimCase{size: 37, steps: 4, sgd: &sgdNesterov}, runOptim[float32], runOptim[float64])},
		{"sgd_momentum_dampening", dual(optimCase{size: 13, steps: 3, sgd: &sgdDamp}, runOptim[float32], runOptim[float64])},
		{"sgd_plain", dual(optimCase{size: 5, steps: 2, sgd: &sgdPlain}, runOptim[float32], runOptim[float64])},
	}
	tested := map[string]bool{}
	for _, c := range cases {
		tested[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			f := loadFixture(t, c.name)
			for _, wide := range []bool{false, true} {
				got := c.run(t, f, wide)
				tol, kind := torchTol32, "float32"
				if wide {
					tol, kind = torchTol64, "float64"
				}
				for name, g := range got {
					want := f.floats(name)
					if err := relL2(g, want); !(err <= tol) {
						t.Errorf("%s %s: relative L2 error %.3g > %g\ngot  %v\nwant %v", kind, name, err, tol, g, want)
					}
				}
				checkAllCompared(t, f, got)
			}
		})
	}
	// Every case folder must be in the table, so none is silently skipped.
	entries, err := os.ReadDir(filepath.Join("..", "..", "testdata", "ops"))
	checkNoErr(t, err)
	for _, e := range entries {
		if e.IsDir() && !tested[e.Name()] {
			t.Errorf("fixture %s is not compared by any test case", e.Name())
		}
	}
}

// fixtureInputs are the array names that hold inputs rather than results.
var fixtureInputs = map[string]bool{
	"x": true, "w": true, "b": true, "dy": true, "r": true, "gamma": true, "beta": true,
	"logits": true, "labels": true, "argmax": true, "param0": true, "grads": true,
}

// checkAllCompared fails when the fixture holds a result that the run did not
// produce.
func checkAllCompared(t *testing.T, f *fixture, got results) {
	t.Helper()
	entries, err := os.ReadDir(f.dir)
	checkNoErr(t, err)
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".npy")
		isPart := len(name) == 2 && name[0] == 'x' && name[1] >= '0' && name[1] <= '9'
		if _, ok := got[name]; !ok && !fixtureInputs[name] && !isPart {
			t.Errorf("fixture %s/%s is not compared", f.dir, e.Name())
		}
	}
}
