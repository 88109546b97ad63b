package ref

import "fmt"

// ConvTransposeParams describes a transposed 3D convolution (PyTorch's
// ConvTranspose3d with groups 1, dilation 1, padding 0 and output_padding 0):
// every input voxel i adds its kernel-sized patch of w·x[i] at output voxel
// i·Stride. Out = (In − 1)·Stride + Kernel per axis, which is In·Stride in the
// network's case Kernel = Stride. Weights are [Cin, Cout, kd, kh, kw]; the
// bias is [Cout].
type ConvTransposeParams struct {
	N, Cin, Cout int   // batch size, input and output channels
	In           Dims3 // spatial size of the input
	Kernel       Dims3 // kernel size per axis
	Stride       Dims3 // stride per axis
}

func (p ConvTransposeParams) String() string {
	return fmt.Sprintf("ConvTransposeParams{N=%d Cin=%d Cout=%d In=%v Kernel=%v Stride=%v}",
		p.N, p.Cin, p.Cout, p.In, p.Kernel, p.Stride)
}

// Validate reports whether the sizes describe a valid transposed convolution.
func (p ConvTransposeParams) Validate() error {
	err := firstErr(
		checkSize("N", p.N), checkSize("Cin", p.Cin), checkSize("Cout", p.Cout),
		p.In.checkPositive("input size"), p.Kernel.checkPositive("kernel"), p.Stride.checkPositive("stride"))
	if err == nil {
		for a := range 3 {
			if _, ok := product(p.In[a]-1, p.Stride[a]); !ok || (p.In[a]-1)*p.Stride[a] > maxDim-p.Kernel[a] {
				err = fmt.Errorf("output size on axis %c exceeds %d", "DHW"[a], maxDim)
				break
			}
		}
	}
	if err == nil {
		err = firstErr(
			checkCount("input", shape5(p.N, p.Cin, p.In)...),
			checkCount("output", shape5(p.N, p.Cout, p.OutputSize())...),
			checkCount("weight", p.weightShape()...))
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputSize returns the spatial size of the output, (In − 1)·Stride + Kernel.
func (p ConvTransposeParams) OutputSize() Dims3 {
	var o Dims3
	for a := range 3 {
		o[a] = (p.In[a]-1)*p.Stride[a] + p.Kernel[a]
	}
	return o
}

// InputLen returns the number of elements of the input, N·Cin·D·H·W.
func (p ConvTransposeParams) InputLen() int { return p.N * p.Cin * p.In.Voxels() }

// OutputLen returns the number of elements of the output, N·Cout·(output voxels).
func (p ConvTransposeParams) OutputLen() int { return p.N * p.Cout * p.OutputSize().Voxels() }

// WeightLen returns the number of weights, Cin·Cout·kd·kh·kw.
func (p ConvTransposeParams) WeightLen() int { return p.Cin * p.Cout * p.Kernel.Voxels() }

// BiasLen returns the number of biases, Cout.
func (p ConvTransposeParams) BiasLen() int { return p.Cout }

func (p ConvTransposeParams) weightShape() []int {
	return []int{p.Cin, p.Cout, p.Kernel[0], p.Kernel[1], p.Kernel[2]}
}

// taps calls f for every product of the transposed convolution: the flat
// indices of an input element, a weight and the output element they
// contribute to.
func (p ConvTransposeParams) taps(f func(xi, wi, yi int)) {
	in, out, k := p.In, p.OutputSize(), p.Kernel
	inVox, outVox, kVox := in.Voxels(), out.Voxels(), k.Voxels()
	var i, kk, o Dims3
	for n := 0; n < p.N; n++ {
		for ci := 0; ci < p.Cin; ci++ {
			for i[0] = 0; i[0] < in[0]; i[0]++ {
				for i[1] = 0; i[1] < in[1]; i[1]++ {
					for i[2] = 0; i[2] < in[2]; i[2]++ {
						xi := (n*p.Cin+ci)*inVox + (i[0]*in[1]+i[1])*in[2] + i[2]
						for co := 0; co < p.Cout; co++ {
							for kk[0] = 0; kk[0] < k[0]; kk[0]++ {
								for kk[1] = 0; kk[1] < k[1]; kk[1]++ {
									for kk[2] = 0; kk[2] < k[2]; kk[2]++ {
										for a := range 3 {
											o[a] = i[a]*p.Stride[a] + kk[a]
										}
										yi := (n*p.Cout+co)*outVox + (o[0]*out[1]+o[1])*out[2] + o[2]
										wi := (ci*p.Cout+co)*kVox + (kk[0]*k[1]+kk[1])*k[2] + kk[2]
										f(xi, wi, yi)
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// ConvTranspose3d computes the transposed convolution y = convᵀ(x, w) + b.
// The bias b may be nil.
func ConvTranspose3d(p ConvTransposeParams, x, w, b, y []float32) error {
	return convTranspose3d(p, x, w, b, y)
}

// ConvTranspose3dBackward computes, from the output gradient dy, the input
// gradient dx, the weight gradient dw and the bias gradient db. Any of the
// three may be nil to skip it.
func ConvTranspose3dBackward(p ConvTransposeParams, x, w, dy, dx, dw, db []float32) error {
	return convTranspose3dBackward(p, x, w, dy, dx, dw, db)
}

func convTranspose3d[T float](p ConvTransposeParams, x, w, b, y []T) error {
	return tapForward("ref.ConvTranspose3d", p, x, w, b, y)
}

func convTranspose3dBackward[T float](p ConvTransposeParams, x, w, dy, dx, dw, db []T) error {
	return tapBackward("ref.ConvTranspose3dBackward", p, x, w, dy, dx, dw, db)
}

func (p ConvTransposeParams) ioShapes() (in, out []int) {
	return shape5(p.N, p.Cin, p.In), shape5(p.N, p.Cout, p.OutputSize())
}
