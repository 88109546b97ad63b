package ref

import (
	"fmt"
	"testing"
)

// Finite-difference checks of every backward, run on the float64
// instantiation of the kernels. The scalar checked is L = Σ dy·y with random
// weights dy, so the backward's gradients must equal the central differences
// (L(v + h) − L(v − h))/2h of every input element v. With h = 1e-5 in float64
// the truncation and rounding errors are near 1e-10, far below the tolerance.
const (
	fdStep = 1e-5
	fdTol  = 1e-6 // relative L2 error of each gradient
)

type gradCase struct {
	name     string
	names    []string    // names of the differentiable inputs
	inputs   [][]float64 // their values
	outLen   int
	forward  func(in [][]float64, y []float64) error
	backward func(in [][]float64, dy []float64, grads [][]float64) error
}

func (c gradCase) run(t *testing.T) {
	r := newRand(7)
	dy := randn(r, c.outLen)
	loss := func() float64 {
		y := poisoned[float64](c.outLen)
		checkNoErr(t, c.forward(c.inputs, y))
		return dot(dy, y)
	}
	grads := make([][]float64, len(c.inputs))
	for i, v := range c.inputs {
		grads[i] = poisoned[float64](len(v))
	}
	checkNoErr(t, c.backward(c.inputs, dy, grads))
	for i, v := range c.inputs {
		fd := make([]float64, len(v))
		for e := range v {
			orig := v[e]
			v[e] = orig + fdStep
			lp := loss()
			v[e] = orig - fdStep
			lm := loss()
			v[e] = orig
			fd[e] = (lp - lm) / (2 * fdStep)
		}
		if err := relL2(grads[i], fd); err > fdTol {
			t.Errorf("gradient of %s: relative L2 error %.3g against finite differences > %g\nbackward %v\nfinite   %v",
				c.names[i], err, fdTol, grads[i], fd)
		}
	}
}

func depthwiseGrad(p DepthwiseParams) gradCase {
	r := newRand(1)
	return gradCase{
		name:   p.String(),
		names:  []string{"input", "weight", "bias"},
		inputs: [][]float64{randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())},
		outLen: p.OutputLen(),
		forward: func(in [][]float64, y []float64) error {
			return depthwiseConv3d(p, in[0], in[1], in[2], y)
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			return depthwiseConv3dBackward(p, in[0], in[1], dy, g[0], g[1], g[2])
		},
	}
}

func pointwiseGrad(p PointwiseParams) gradCase {
	r := newRand(2)
	return gradCase{
		name:   p.String(),
		names:  []string{"input", "weight", "bias"},
		inputs: [][]float64{randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())},
		outLen: p.OutputLen(),
		forward: func(in [][]float64, y []float64) error {
			return pointwiseConv3d(p, in[0], in[1], in[2], y)
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			return pointwiseConv3dBackward(p, in[0], in[1], dy, g[0], g[1], g[2])
		},
	}
}

func convGrad(p ConvParams) gradCase {
	r := newRand(3)
	return gradCase{
		name:   p.String(),
		names:  []string{"input", "weight", "bias"},
		inputs: [][]float64{randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())},
		outLen: p.OutputLen(),
		forward: func(in [][]float64, y []float64) error {
			return conv3d(p, in[0], in[1], in[2], y)
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			return conv3dBackward(p, in[0], in[1], dy, g[0], g[1], g[2])
		},
	}
}

func convTransposeGrad(p ConvTransposeParams) gradCase {
	r := newRand(4)
	return gradCase{
		name:   p.String(),
		names:  []string{"input", "weight", "bias"},
		inputs: [][]float64{randn(r, p.InputLen()), randn(r, p.WeightLen()), randn(r, p.BiasLen())},
		outLen: p.OutputLen(),
		forward: func(in [][]float64, y []float64) error {
			return convTranspose3d(p, in[0], in[1], in[2], y)
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			return convTranspose3dBackward(p, in[0], in[1], dy, g[0], g[1], g[2])
		},
	}
}

func normGrad(p NormParams) gradCase {
	r := newRand(5)
	gamma, beta := randn(r, p.C), randn(r, p.C)
	for i := range gamma {
		gamma[i] += 1
	}
	c := gradCase{
		name:   p.String(),
		names:  []string{"input", "gamma", "beta"},
		inputs: [][]float64{randn(r, p.InputLen()), gamma, beta},
		outLen: p.OutputLen(),
	}
	if p.Residual {
		c.names = append(c.names, "residual")
		c.inputs = append(c.inputs, randn(r, p.InputLen()))
	}
	res := func(in [][]float64) []float64 {
		if p.Residual {
			return in[3]
		}
		return nil
	}
	c.forward = func(in [][]float64, y []float64) error {
		return instanceNorm3d(p, in[0], res(in), in[1], in[2], y, nil, nil)
	}
	c.backward = func(in [][]float64, dy []float64, g [][]float64) error {
		var dr []float64
		if p.Residual {
			dr = g[3]
		}
		return instanceNorm3dBackward(p, in[0], res(in), in[1], in[2], dy, g[0], dr, g[1], g[2])
	}
	return c
}

func leakyGrad(slope float64, n int) gradCase {
	r := newRand(6)
	return gradCase{
		name:    fmt.Sprintf("LeakyReLU slope %g, %d elements", slope, n),
		names:   []string{"input"},
		inputs:  [][]float64{randn(r, n)},
		outLen:  n,
		forward: func(in [][]float64, y []float64) error { return leakyReLU(slope, in[0], y) },
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			return leakyReLUBackward(slope, in[0], dy, g[0])
		},
	}
}

func addGrad(n int) gradCase {
	r := newRand(8)
	return gradCase{
		name:    fmt.Sprintf("Add, %d elements", n),
		names:   []string{"first input", "second input"},
		inputs:  [][]float64{randn(r, n), randn(r, n)},
		outLen:  n,
		forward: func(in [][]float64, y []float64) error { return add(in[0], in[1], y) },
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			copy(g[0], dy)
			copy(g[1], dy)
			return nil
		},
	}
}

func upsampleGrad(p UpsampleParams) gradCase {
	r := newRand(9)
	return gradCase{
		name:     p.String(),
		names:    []string{"input"},
		inputs:   [][]float64{randn(r, p.InputLen())},
		outLen:   p.OutputLen(),
		forward:  func(in [][]float64, y []float64) error { return upsample(p, in[0], y) },
		backward: func(in [][]float64, dy []float64, g [][]float64) error { return upsampleBackward(p, dy, g[0]) },
	}
}

func padGrad(p PadParams) gradCase {
	r := newRand(10)
	return gradCase{
		name:     p.String(),
		names:    []string{"input"},
		inputs:   [][]float64{randn(r, p.InputLen())},
		outLen:   p.OutputLen(),
		forward:  func(in [][]float64, y []float64) error { return pad(p, in[0], y) },
		backward: func(in [][]float64, dy []float64, g [][]float64) error { return padBackward(p, dy, g[0]) },
	}
}

func concatGrad(p ConcatParams) gradCase {
	r := newRand(11)
	c := gradCase{name: p.String(), outLen: p.OutputLen()}
	for i := range p.Channels {
		c.names = append(c.names, fmt.Sprintf("part %d", i))
		c.inputs = append(c.inputs, randn(r, p.PartLen(i)))
	}
	c.forward = func(in [][]float64, y []float64) error { return concat(p, in, y) }
	c.backward = func(in [][]float64, dy []float64, g [][]float64) error { return split(p, dy, g) }
	return c
}

func crossEntropyGrad(p LossParams) gradCase {
	r := newRand(12)
	labels := randLabels(r, p.LabelsLen(), p.Classes)
	return gradCase{
		name:   "CrossEntropy " + p.String(),
		names:  []string{"logits"},
		inputs: [][]float64{randn(r, p.LogitsLen())},
		outLen: 1,
		forward: func(in [][]float64, y []float64) error {
			l, err := crossEntropy(p, in[0], labels, nil)
			y[0] = l
			return err
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			_, err := crossEntropy(p, in[0], labels, g[0])
			for i := range g[0] {
				g[0][i] *= dy[0]
			}
			return err
		},
	}
}

func diceGrad(p DiceParams) gradCase {
	r := newRand(13)
	labels := randLabels(r, p.LabelsLen(), p.Classes)
	return gradCase{
		name:   "SoftDice " + p.String(),
		names:  []string{"logits"},
		inputs: [][]float64{randn(r, p.LogitsLen())},
		outLen: 1,
		forward: func(in [][]float64, y []float64) error {
			l, err := softDice(p, in[0], labels, nil)
			y[0] = l
			return err
		},
		backward: func(in [][]float64, dy []float64, g [][]float64) error {
			_, err := softDice(p, in[0], labels, g[0])
			for i := range g[0] {
				g[0][i] *= dy[0]
			}
			return err
		},
	}
}

func TestGradientsFiniteDifferences(t *testing.T) {
	cases := []gradCase{
		depthwiseGrad(DepthwiseParams{N: 1, C: 1, Size: Dims3{1, 1, 1}, Kernel: 3}),
		depthwiseGrad(DepthwiseParams{N: 3, C: 3, Size: Dims3{5, 1, 3}, Kernel: 3}),
		depthwiseGrad(DepthwiseParams{N: 1, C: 17, Size: Dims3{2, 3, 1}, Kernel: 1}),
		depthwiseGrad(DepthwiseParams{N: 1, C: 3, Size: Dims3{3, 2, 2}, Kernel: 5}),
		depthwiseGrad(DepthwiseParams{N: 3, C: 17, Size: Dims3{3, 1, 2}, Kernel: 3}),
		depthwiseGrad(DepthwiseParams{N: 2, C: 3, Size: Dims3{4, 2, 6}, Kernel: 3, Up: Dims3{2, 1, 2}}),

		pointwiseGrad(PointwiseParams{N: 3, Cin: 17, Cout: 3, Size: Dims3{1, 2, 3}}),
		pointwiseGrad(PointwiseParams{N: 1, Cin: 1, Cout: 1, Size: Dims3{1, 1, 1}}),
		pointwiseGrad(PointwiseParams{N: 1, Cin: 3, Cout: 17, Size: Dims3{2, 1, 1}}),

		convGrad(ConvParams{N: 3, Cin: 3, Cout: 2, In: Dims3{3, 5, 7}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{1, 2, 2},
			PadBefore: Dims3{1, 0, 0}, PadAfter: Dims3{1, 1, 1}}),
		convGrad(ConvParams{N: 1, Cin: 17, Cout: 1, In: Dims3{2, 2, 3}, Kernel: Dims3{1, 2, 3}, Stride: Dims3{2, 1, 3},
			PadBefore: Dims3{0, 1, 1}, PadAfter: Dims3{1, 0, 2}}),
		convGrad(ConvParams{N: 1, Cin: 1, Cout: 1, In: Dims3{1, 1, 1}, Kernel: Dims3{1, 1, 1}, Stride: Dims3{1, 1, 1}}),
		convGrad(ConvParams{N: 1, Cin: 2, Cout: 3, In: Dims3{5, 3, 4}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{2, 2, 2}}),
		convGrad(ConvParams{N: 3, Cin: 17, Cout: 3, In: Dims3{3, 2, 5}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{1, 2, 2},
			PadBefore: Dims3{1, 0, 0}, PadAfter: Dims3{1, 1, 1}}),

		convTransposeGrad(ConvTransposeParams{N: 3, Cin: 3, Cout: 2, In: Dims3{2, 1, 3}, Kernel: Dims3{2, 2, 2}, Stride: Dims3{2, 2, 2}}),
		convTransposeGrad(ConvTransposeParams{N: 1, Cin: 17, Cout: 3, In: Dims3{3, 2, 1}, Kernel: Dims3{1, 2, 2}, Stride: Dims3{1, 2, 2}}),
		convTransposeGrad(ConvTransposeParams{N: 1, Cin: 2, Cout: 3, In: Dims3{2, 3, 2}, Kernel: Dims3{3, 2, 1}, Stride: Dims3{2, 1, 1}}),
		convTransposeGrad(ConvTransposeParams{N: 1, Cin: 1, Cout: 1, In: Dims3{1, 1, 1}, Kernel: Dims3{3, 1, 2}, Stride: Dims3{3, 1, 2}}),

		normGrad(NormParams{N: 3, C: 3, Size: Dims3{3, 1, 5}, Eps: DefaultNormEps, Residual: true, LeakyReLU: true, Slope: DefaultSlope}),
		normGrad(NormParams{N: 1, C: 17, Size: Dims3{2, 1, 2}, Eps: DefaultNormEps}),
		normGrad(NormParams{N: 3, C: 1, Size: Dims3{2, 1, 1}, Eps: DefaultNormEps, LeakyReLU: true, Slope: 0.2}),
		normGrad(NormParams{N: 1, C: 3, Size: Dims3{1, 7, 1}, Eps: 0.5, Residual: true}),

		leakyGrad(DefaultSlope, 37),
		leakyGrad(0.2, 1),
		addGrad(17),

		upsampleGrad(UpsampleParams{N: 1, C: 3, In: Dims3{2, 1, 3}, Factor: Dims3{2, 2, 2}}),
		upsampleGrad(UpsampleParams{N: 3, C: 1, In: Dims3{3, 2, 1}, Factor: Dims3{1, 2, 3}}),

		padGrad(PadParams{N: 3, C: 3, In: Dims3{2, 3, 1}, Before: Dims3{0, 1, 2}, After: Dims3{1, 0, 3}}),
		padGrad(PadParams{N: 1, C: 1, In: Dims3{1, 1, 1}}),

		concatGrad(ConcatParams{N: 3, Channels: []int{1, 3, 2}, Size: Dims3{2, 1, 3}}),
		concatGrad(ConcatParams{N: 1, Channels: []int{17}, Size: Dims3{1, 1, 1}}),

		crossEntropyGrad(LossParams{N: 3, Classes: 3, Size: Dims3{2, 1, 5}}),
		crossEntropyGrad(LossParams{N: 1, Classes: 17, Size: Dims3{1, 3, 1}}),
		crossEntropyGrad(LossParams{N: 1, Classes: 1, Size: Dims3{1, 1, 2}}),

		diceGrad(DiceParams{LossParams: LossParams{N: 3, Classes: 3, Size: Dims3{2, 1, 5}}, Eps: DefaultDiceEps, IncludeBackground: true}),
		diceGrad(DiceParams{LossParams: LossParams{N: 1, Classes: 4, Size: Dims3{3, 1, 2}}, Eps: DefaultDiceEps}),
		diceGrad(DiceParams{LossParams: LossParams{N: 1, Classes: 17, Size: Dims3{1, 1, 3}}, Eps: 1}),
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}
