package ref

import "fmt"

// ConvParams describes a dense 3D convolution (PyTorch's Conv3d, groups 1,
// dilation 1) applied after zero padding that may differ before and after
// each axis (PyTorch's F.pad followed by Conv3d with padding 0). As in
// PyTorch, an output voxel exists for every window that fits in the padded
// input: Out = (In + PadBefore + PadAfter − Kernel) / Stride + 1, rounded
// down. Weights are [Cout, Cin, kd, kh, kw]; the bias is [Cout].
type ConvParams struct {
	N, Cin, Cout int   // batch size, input and output channels
	In           Dims3 // spatial size of the input
	Kernel       Dims3 // kernel size per axis
	Stride       Dims3 // stride per axis
	PadBefore    Dims3 // zeros added before the first voxel of each axis
	PadAfter     Dims3 // zeros added after the last voxel of each axis
}

func (p ConvParams) String() string {
	return fmt.Sprintf("ConvParams{N=%d Cin=%d Cout=%d In=%v Kernel=%v Stride=%v PadBefore=%v PadAfter=%v}",
		p.N, p.Cin, p.Cout, p.In, p.Kernel, p.Stride, p.PadBefore, p.PadAfter)
}

// Validate reports whether the sizes describe a valid convolution: positive
// sizes, kernels and strides, non-negative paddings, and a kernel that fits in
// the padded input on every axis.
func (p ConvParams) Validate() error {
	err := firstErr(
		checkSize("N", p.N), checkSize("Cin", p.Cin), checkSize("Cout", p.Cout),
		p.In.checkPositive("input size"), p.Kernel.checkPositive("kernel"), p.Stride.checkPositive("stride"),
		p.PadBefore.checkNonNegative("padding before"), p.PadAfter.checkNonNegative("padding after"))
	if err == nil {
		for a := range 3 {
			if padded := p.In[a] + p.PadBefore[a] + p.PadAfter[a]; padded < p.Kernel[a] {
				err = fmt.Errorf("kernel %d on axis %c is larger than the padded input %d", p.Kernel[a], "DHW"[a], padded)
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

// OutputSize returns the spatial size of the output.
func (p ConvParams) OutputSize() Dims3 {
	var o Dims3
	for a := range 3 {
		o[a] = (p.In[a]+p.PadBefore[a]+p.PadAfter[a]-p.Kernel[a])/p.Stride[a] + 1
	}
	return o
}

// InputLen returns the number of elements of the input, N·Cin·D·H·W.
func (p ConvParams) InputLen() int { return p.N * p.Cin * p.In.Voxels() }

// OutputLen returns the number of elements of the output, N·Cout·(output voxels).
func (p ConvParams) OutputLen() int { return p.N * p.Cout * p.OutputSize().Voxels() }

// WeightLen returns the number of weights, Cout·Cin·kd·kh·kw.
func (p ConvParams) WeightLen() int { return p.Cout * p.Cin * p.Kernel.Voxels() }

// BiasLen returns the number of biases, Cout.
func (p ConvParams) BiasLen() int { return p.Cout }

func (p ConvParams) weightShape() []int {
	return []int{p.Cout, p.Cin, p.Kernel[0], p.Kernel[1], p.Kernel[2]}
}

// taps calls f for every product of the convolution: the flat indices of an
// input element, a weight and the output element they contribute to. Taps
// that fall on padding are skipped, since padding is zero.
func (p ConvParams) taps(f func(xi, wi, yi int)) {
	in, out, k := p.In, p.OutputSize(), p.Kernel
	inVox, outVox, kVox := in.Voxels(), out.Voxels(), k.Voxels()
	var o, kk, i Dims3
	for n := 0; n < p.N; n++ {
		for co := 0; co < p.Cout; co++ {
			for o[0] = 0; o[0] < out[0]; o[0]++ {
				for o[1] = 0; o[1] < out[1]; o[1]++ {
					for o[2] = 0; o[2] < out[2]; o[2]++ {
						yi := (n*p.Cout+co)*outVox + (o[0]*out[1]+o[1])*out[2] + o[2]
						for ci := 0; ci < p.Cin; ci++ {
							for kk[0] = 0; kk[0] < k[0]; kk[0]++ {
								for kk[1] = 0; kk[1] < k[1]; kk[1]++ {
									for kk[2] = 0; kk[2] < k[2]; kk[2]++ {
										inside := true
										for a := range 3 {
											i[a] = o[a]*p.Stride[a] + kk[a] - p.PadBefore[a]
											inside = inside && i[a] >= 0 && i[a] < in[a]
										}
										if !inside {
											continue
										}
										xi := (n*p.Cin+ci)*inVox + (i[0]*in[1]+i[1])*in[2] + i[2]
										wi := (co*p.Cin+ci)*kVox + (kk[0]*k[1]+kk[1])*k[2] + kk[2]
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

// Conv3d computes y = conv(pad(x), w) + b. The bias b may be nil.
func Conv3d(p ConvParams, x, w, b, y []float32) error {
	return conv3d(p, x, w, b, y)
}

// Conv3dBackward computes, from the output gradient dy, the input gradient
// dx, the weight gradient dw and the bias gradient db. Any of the three may
// be nil to skip it.
func Conv3dBackward(p ConvParams, x, w, dy, dx, dw, db []float32) error {
	return conv3dBackward(p, x, w, dy, dx, dw, db)
}

func conv3d[T float](p ConvParams, x, w, b, y []T) error {
	return tapForward("ref.Conv3d", p, x, w, b, y)
}

func conv3dBackward[T float](p ConvParams, x, w, dy, dx, dw, db []T) error {
	return tapBackward("ref.Conv3dBackward", p, x, w, dy, dx, dw, db)
}

func (p ConvParams) ioShapes() (in, out []int) {
	return shape5(p.N, p.Cin, p.In), shape5(p.N, p.Cout, p.OutputSize())
}
