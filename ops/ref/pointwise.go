package ref

import "fmt"

// PointwiseParams describes a 1×1×1 3D convolution from Cin to Cout
// channels (PyTorch's Conv3d with kernel_size 1): a matrix product applied
// at every voxel. Weights are [Cout, Cin, 1, 1, 1]; the bias is [Cout].
type PointwiseParams struct {
	N, Cin, Cout int   // batch size, input and output channels
	Size         Dims3 // spatial size of the input and of the output
}

func (p PointwiseParams) String() string {
	return fmt.Sprintf("PointwiseParams{N=%d Cin=%d Cout=%d Size=%v}", p.N, p.Cin, p.Cout, p.Size)
}

// Validate reports whether the sizes describe a valid pointwise convolution.
func (p PointwiseParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("Cin", p.Cin), checkSize("Cout", p.Cout), p.Size.checkPositive("size"))
	if err == nil {
		err = firstErr(
			checkCount("input", shape5(p.N, p.Cin, p.Size)...),
			checkCount("output", shape5(p.N, p.Cout, p.Size)...),
			checkCount("weight", p.Cout, p.Cin))
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputSize returns the spatial size of the output, equal to the input's.
func (p PointwiseParams) OutputSize() Dims3 { return p.Size }

// InputLen returns the number of elements of the input, N·Cin·D·H·W.
func (p PointwiseParams) InputLen() int { return p.N * p.Cin * p.Size.Voxels() }

// OutputLen returns the number of elements of the output, N·Cout·D·H·W.
func (p PointwiseParams) OutputLen() int { return p.N * p.Cout * p.Size.Voxels() }

// WeightLen returns the number of weights, Cout·Cin.
func (p PointwiseParams) WeightLen() int { return p.Cout * p.Cin }

// BiasLen returns the number of biases, Cout.
func (p PointwiseParams) BiasLen() int { return p.Cout }

func (p PointwiseParams) weightShape() []int { return []int{p.Cout, p.Cin, 1, 1, 1} }

// taps calls f for every product of the convolution: the flat indices of an
// input element, a weight and the output element they contribute to.
func (p PointwiseParams) taps(f func(xi, wi, yi int)) {
	vox := p.Size.Voxels()
	for n := 0; n < p.N; n++ {
		for co := 0; co < p.Cout; co++ {
			for ci := 0; ci < p.Cin; ci++ {
				wi := co*p.Cin + ci
				xb := (n*p.Cin + ci) * vox
				yb := (n*p.Cout + co) * vox
				for v := 0; v < vox; v++ {
					f(xb+v, wi, yb+v)
				}
			}
		}
	}
}

// PointwiseConv3d computes y = w·x + b at every voxel. The bias b may be nil.
func PointwiseConv3d(p PointwiseParams, x, w, b, y []float32) error {
	return pointwiseConv3d(p, x, w, b, y)
}

// PointwiseConv3dBackward computes, from the output gradient dy, the input
// gradient dx, the weight gradient dw and the bias gradient db. Any of the
// three may be nil to skip it.
func PointwiseConv3dBackward(p PointwiseParams, x, w, dy, dx, dw, db []float32) error {
	return pointwiseConv3dBackward(p, x, w, dy, dx, dw, db)
}

func pointwiseConv3d[T float](p PointwiseParams, x, w, b, y []T) error {
	return tapForward("ref.PointwiseConv3d", p, x, w, b, y)
}

func pointwiseConv3dBackward[T float](p PointwiseParams, x, w, dy, dx, dw, db []T) error {
	return tapBackward("ref.PointwiseConv3dBackward", p, x, w, dy, dx, dw, db)
}

func (p PointwiseParams) ioShapes() (in, out []int) {
	return shape5(p.N, p.Cin, p.Size), shape5(p.N, p.Cout, p.Size)
}

// PointwiseConv3dNormed computes the pointwise convolution of the instance
// norm of x (np, with its LeakyReLU when set, without a residual) from the
// norm's statistics mean and invStd (one per plane, as InstanceNorm3d
// gives them): y = PointwiseConv3d(p, h), h = act(gamma·(x − mean)·invStd +
// beta). np must describe p's input.
func PointwiseConv3dNormed(p PointwiseParams, np NormParams, x, gamma, beta, mean, invStd, w, b, y []float32) error {
	const op = "ref.PointwiseConv3dNormed"
	h, err := normedInput(op, p, np, x, gamma, beta, mean, invStd)
	if err != nil {
		return err
	}
	if err := PointwiseConv3d(p, h, w, b, y); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// PointwiseConv3dNormedBackward computes the gradients of
// PointwiseConv3dNormed but that of x: dh, the normalised input's (for
// InstanceNorm3dBackward to take on), dw and db; any may be nil.
func PointwiseConv3dNormedBackward(p PointwiseParams, np NormParams, x, gamma, beta, mean, invStd, w, dy, dh, dw, db []float32) error {
	const op = "ref.PointwiseConv3dNormedBackward"
	h, err := normedInput(op, p, np, x, gamma, beta, mean, invStd)
	if err != nil {
		return err
	}
	if err := PointwiseConv3dBackward(p, h, w, dy, dh, dw, db); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// normedInput checks np against p and returns h, the normalised input of
// PointwiseConv3dNormed, each value computed in float64 and rounded once.
func normedInput(op string, p PointwiseParams, np NormParams, x, gamma, beta, mean, invStd []float32) ([]float32, error) {
	if err := firstErr(p.Validate(), np.Validate()); err != nil {
		return nil, wrap(op, err)
	}
	if np.N != p.N || np.C != p.Cin || np.Size != p.Size || np.Residual {
		return nil, fmt.Errorf("%s: %v does not normalise the input of %v without a residual", op, np, p)
	}
	if err := firstErr(
		np.checkInputs(op, len(x), 0, len(gamma), len(beta)),
		checkLen(op, "mean", len(mean), np.N, np.C),
		checkLen(op, "inverse std", len(invStd), np.N, np.C),
	); err != nil {
		return nil, err
	}
	vox := p.Size.Voxels()
	h := make([]float32, len(x))
	for nc := 0; nc < np.N*np.C; nc++ {
		c := nc % np.C
		m, s, ga, be := float64(mean[nc]), float64(invStd[nc]), float64(gamma[c]), float64(beta[c])
		for i := nc * vox; i < (nc+1)*vox; i++ {
			h[i] = float32(np.activate(ga*(float64(x[i])-m)*s + be))
		}
	}
	return h, nil
}
