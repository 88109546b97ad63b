package ref

import "fmt"

// DepthwiseParams describes a depthwise 3D convolution: one Kernel³ filter
// per channel (PyTorch's Conv3d with groups = in = out channels), stride 1
// and zero padding Kernel/2 on every side, so the output has the input's
// size. Weights are [C, 1, k, k, k]; the bias is [C].
//
// With Up set, the input is first up-sampled by those factors per axis
// (nearest, as by Upsample): the input is Size/Up, and its gradient is the
// up-sampled input's summed over each block (UpsampleBackward's). A
// decoder's convolution of its up-sampled path then reads the deeper level
// in place, the up-sampled tensor never built.
type DepthwiseParams struct {
	N, C   int   // batch size and channels
	Size   Dims3 // spatial size of the output, and of the input unless Up
	Kernel int   // odd kernel size, the same on every axis
	Up     Dims3 // the input's up-sampling factors; zero: none
}

func (p DepthwiseParams) String() string {
	if p.Up != (Dims3{}) {
		return fmt.Sprintf("DepthwiseParams{N=%d C=%d Size=%v Kernel=%d Up=%v}", p.N, p.C, p.Size, p.Kernel, p.Up)
	}
	return fmt.Sprintf("DepthwiseParams{N=%d C=%d Size=%v Kernel=%d}", p.N, p.C, p.Size, p.Kernel)
}

// UpFactor returns the input's up-sampling factors, 1 on every axis when
// Up is zero.
func (p DepthwiseParams) UpFactor() Dims3 {
	if p.Up == (Dims3{}) {
		return Dims3{1, 1, 1}
	}
	return p.Up
}

// InputSize returns the spatial size of the input: Size, or Size/Up.
func (p DepthwiseParams) InputSize() Dims3 {
	u := p.UpFactor()
	return Dims3{p.Size[0] / u[0], p.Size[1] / u[1], p.Size[2] / u[2]}
}

// Validate reports whether the sizes describe a valid depthwise convolution.
func (p DepthwiseParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("C", p.C), p.Size.checkPositive("size"), checkSize("kernel", p.Kernel))
	if err == nil && p.Kernel%2 == 0 {
		err = fmt.Errorf("kernel %d is not odd", p.Kernel)
	}
	if err == nil && p.Up != (Dims3{}) {
		err = p.Up.checkPositive("up-sampling factor")
		for a := 0; err == nil && a < 3; a++ {
			if p.Size[a]%p.Up[a] != 0 {
				err = fmt.Errorf("size %v is not a multiple of the up-sampling factor %v", p.Size, p.Up)
			}
		}
	}
	if err == nil {
		k := p.Kernel
		err = firstErr(checkCount("input", shape5(p.N, p.C, p.Size)...), checkCount("weight", p.C, 1, k, k, k))
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputSize returns the spatial size of the output, equal to the input's.
func (p DepthwiseParams) OutputSize() Dims3 { return p.Size }

// InputLen returns the number of elements of the input, N·C·D·H·W of its
// size.
func (p DepthwiseParams) InputLen() int { return p.N * p.C * p.InputSize().Voxels() }

// OutputLen returns the number of elements of the output, N·C·D·H·W.
func (p DepthwiseParams) OutputLen() int { return p.N * p.C * p.Size.Voxels() }

// WeightLen returns the number of weights, C·k³.
func (p DepthwiseParams) WeightLen() int { return p.C * p.Kernel * p.Kernel * p.Kernel }

// BiasLen returns the number of biases, C.
func (p DepthwiseParams) BiasLen() int { return p.C }

func (p DepthwiseParams) weightShape() []int {
	return []int{p.C, 1, p.Kernel, p.Kernel, p.Kernel}
}

// taps calls f for every product of the convolution: the flat indices of an
// input element, a weight and the output element they contribute to. An
// up-sampled input's element is the one the up-sampled voxel repeats.
func (p DepthwiseParams) taps(f func(xi, wi, yi int)) {
	D, H, W := p.Size[0], p.Size[1], p.Size[2]
	// Where each up-sampled coordinate's voxel starts in an input plane,
	// per axis: lookups rather than a division per product.
	u, in := p.UpFactor(), p.InputSize()
	offD, offH, offW := make([]int, D), make([]int, H), make([]int, W)
	for i := range offD {
		offD[i] = i / u[0] * in[1] * in[2]
	}
	for i := range offH {
		offH[i] = i / u[1] * in[2]
	}
	for i := range offW {
		offW[i] = i / u[2]
	}
	k, pad := p.Kernel, p.Kernel/2
	for n := 0; n < p.N; n++ {
		for c := 0; c < p.C; c++ {
			base := (n*p.C + c) * D * H * W
			inBase := (n*p.C + c) * in.Voxels()
			for od := 0; od < D; od++ {
				for oh := 0; oh < H; oh++ {
					for ow := 0; ow < W; ow++ {
						yi := base + (od*H+oh)*W + ow
						for kd := 0; kd < k; kd++ {
							id := od + kd - pad
							if id < 0 || id >= D {
								continue
							}
							for kh := 0; kh < k; kh++ {
								ih := oh + kh - pad
								if ih < 0 || ih >= H {
									continue
								}
								row := inBase + offD[id] + offH[ih]
								wRow := ((c*k+kd)*k + kh) * k
								for kw := 0; kw < k; kw++ {
									iw := ow + kw - pad
									if iw < 0 || iw >= W {
										continue
									}
									f(row+offW[iw], wRow+kw, yi)
								}
							}
						}
					}
				}
			}
		}
	}
}

// DepthwiseConv3d computes y = conv(x, w) + b. The bias b may be nil.
func DepthwiseConv3d(p DepthwiseParams, x, w, b, y []float32) error {
	return depthwiseConv3d(p, x, w, b, y)
}

// DepthwiseConv3dBackward computes, from the output gradient dy, the input
// gradient dx, the weight gradient dw and the bias gradient db. Any of the
// three may be nil to skip it.
func DepthwiseConv3dBackward(p DepthwiseParams, x, w, dy, dx, dw, db []float32) error {
	return depthwiseConv3dBackward(p, x, w, dy, dx, dw, db)
}

func depthwiseConv3d[T float](p DepthwiseParams, x, w, b, y []T) error {
	return tapForward("ref.DepthwiseConv3d", p, x, w, b, y)
}

func depthwiseConv3dBackward[T float](p DepthwiseParams, x, w, dy, dx, dw, db []T) error {
	return tapBackward("ref.DepthwiseConv3dBackward", p, x, w, dy, dx, dw, db)
}

func (p DepthwiseParams) ioShapes() (in, out []int) {
	return shape5(p.N, p.C, p.InputSize()), shape5(p.N, p.C, p.Size)
}
