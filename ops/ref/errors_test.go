package ref

import (
	"math"
	"strings"
	"testing"
)

func TestBadInputs(t *testing.T) {
	f := func(n int) []float32 { return make([]float32, n) }
	big := 1 << 20
	dw := DepthwiseParams{N: 1, C: 3, Size: Dims3{5, 5, 5}, Kernel: 3}
	pw := PointwiseParams{N: 1, Cin: 3, Cout: 32, Size: Dims3{2, 2, 2}}
	cv := ConvParams{N: 1, Cin: 2, Cout: 4, In: Dims3{4, 4, 4}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{2, 2, 2},
		PadBefore: Dims3{0, 0, 0}, PadAfter: Dims3{1, 1, 1}}
	ct := ConvTransposeParams{N: 1, Cin: 4, Cout: 2, In: Dims3{2, 2, 2}, Kernel: Dims3{2, 2, 2}, Stride: Dims3{2, 2, 2}}
	nm := NormParams{N: 1, C: 2, Size: Dims3{2, 2, 2}, Eps: DefaultNormEps}
	lp := LossParams{N: 1, Classes: 3, Size: Dims3{1, 2, 2}}
	cases := []struct {
		name string
		call func() error
		want []string // substrings of the error
	}{
		{"pointwise weight length", func() error { return PointwiseConv3d(pw, f(24), f(95), f(32), f(256)) },
			[]string{"ref.PointwiseConv3d: weight has 95 elements, want 32×3×1×1×1 = 96"}},
		{"pointwise output length", func() error { return PointwiseConv3d(pw, f(24), f(96), nil, f(255)) },
			[]string{"ref.PointwiseConv3d: output has 255 elements, want 1×32×2×2×2 = 256"}},
		{"pointwise bias length", func() error { return PointwiseConv3d(pw, f(24), f(96), f(3), f(256)) },
			[]string{"ref.PointwiseConv3d: bias has 3 elements, want 32"}},
		{"pointwise zero channels", func() error {
			return PointwiseConv3d(PointwiseParams{N: 1, Cin: 0, Cout: 2, Size: Dims3{1, 1, 1}}, nil, nil, nil, nil)
		}, []string{"ref.PointwiseConv3d", "Cin=0", "Cin = 0 must be positive"}},
		{"depthwise even kernel", func() error {
			p := dw
			p.Kernel = 4
			return DepthwiseConv3d(p, f(375), f(192), nil, f(375))
		}, []string{"ref.DepthwiseConv3d", "Size=5×5×5", "kernel 4 is not odd"}},
		{"depthwise negative size", func() error {
			p := dw
			p.Size[1] = -2
			return DepthwiseConv3d(p, nil, nil, nil, nil)
		}, []string{"ref.DepthwiseConv3d", "size 5×-2×5 must be positive"}},
		{"depthwise backward gradient length", func() error { return DepthwiseConv3dBackward(dw, f(375), f(81), f(375), f(375), f(80), nil) },
			[]string{"ref.DepthwiseConv3dBackward: weight gradient has 80 elements, want 3×1×3×3×3 = 81"}},
		{"depthwise overflow", func() error {
			return DepthwiseConv3d(DepthwiseParams{N: big, C: big, Size: Dims3{big, big, 1}, Kernel: 1}, nil, nil, nil, nil)
		}, []string{"ref.DepthwiseConv3d", "more elements than an int can count"}},
		{"conv kernel larger than padded input", func() error {
			p := cv
			p.In = Dims3{1, 4, 4}
			return Conv3d(p, nil, nil, nil, nil)
		}, []string{"ref.Conv3d", "kernel 3 on axis D is larger than the padded input 2"}},
		{"conv zero stride", func() error {
			p := cv
			p.Stride = Dims3{1, 0, 2}
			return Conv3d(p, nil, nil, nil, nil)
		}, []string{"ref.Conv3d", "stride 1×0×2 must be positive"}},
		{"conv negative padding", func() error {
			p := cv
			p.PadBefore = Dims3{0, -1, 0}
			return Conv3dBackward(p, nil, nil, nil, nil, nil, nil)
		}, []string{"ref.Conv3dBackward", "padding before 0×-1×0 must be non-negative"}},
		{"conv output gradient length", func() error {
			return Conv3dBackward(cv, f(128), f(216), f(4*8-1), nil, nil, nil)
		}, []string{"ref.Conv3dBackward: output gradient has 31 elements, want 1×4×2×2×2 = 32"}},
		{"conv transpose weight layout", func() error {
			return ConvTranspose3d(ct, f(32), f(2*4*8-8), nil, f(128))
		}, []string{"ref.ConvTranspose3d: weight has 56 elements, want 4×2×2×2×2 = 64"}},
		{"conv transpose output too large", func() error {
			p := ct
			p.In, p.Stride = Dims3{big, 1, 1}, Dims3{big * 4, 1, 1}
			return ConvTranspose3d(p, nil, nil, nil, nil)
		}, []string{"ref.ConvTranspose3d", "output size on axis D exceeds"}},
		{"norm one voxel", func() error {
			p := nm
			p.Size = Dims3{1, 1, 1}
			return InstanceNorm3d(p, f(2), nil, f(2), f(2), f(2), nil, nil)
		}, []string{"ref.InstanceNorm3d", "more than one voxel"}},
		{"norm zero eps", func() error {
			p := nm
			p.Eps = 0
			return InstanceNorm3d(p, f(16), nil, f(2), f(2), f(16), nil, nil)
		}, []string{"ref.InstanceNorm3d", "eps 0 must be positive"}},
		{"norm stats short mean", func() error { return InstanceNormStats(nm, f(16), f(1), f(2)) },
			[]string{"ref.InstanceNormStats", "mean"}},
		{"norm stats one voxel", func() error {
			p := nm
			p.Size = Dims3{1, 1, 1}
			return InstanceNormStats(p, f(2), f(2), f(2))
		}, []string{"ref.InstanceNormStats", "more than one voxel"}},
		{"norm unexpected residual", func() error { return InstanceNorm3d(nm, f(16), f(16), f(2), f(2), f(16), nil, nil) },
			[]string{"ref.InstanceNorm3d: residual given (16 elements) but Residual is false"}},
		{"norm missing residual", func() error {
			p := nm
			p.Residual = true
			return InstanceNorm3dBackward(p, f(16), nil, f(2), f(2), f(16), f(16), nil, nil, nil)
		}, []string{"ref.InstanceNorm3dBackward: residual has 0 elements, want 1×2×2×2×2 = 16"}},
		{"norm unexpected residual gradient", func() error {
			return InstanceNorm3dBackward(nm, f(16), nil, f(2), f(2), f(16), f(16), f(16), nil, nil)
		}, []string{"ref.InstanceNorm3dBackward: residual gradient given (16 elements) but Residual is false"}},
		{"norm NaN slope", func() error {
			p := nm
			p.LeakyReLU, p.Slope = true, math.NaN()
			return InstanceNorm3d(p, f(16), nil, f(2), f(2), f(16), nil, nil)
		}, []string{"ref.InstanceNorm3d", "slope NaN must be finite"}},
		{"leaky lengths", func() error { return LeakyReLUBackward(0.01, f(4), f(4), f(5)) },
			[]string{"ref.LeakyReLUBackward: input gradient has 5 elements, want 4 like input"}},
		{"leaky empty", func() error { return LeakyReLU(0.01, nil, nil) }, []string{"ref.LeakyReLU: input is empty"}},
		{"add lengths", func() error { return Add(f(3), f(2), f(3)) }, []string{"ref.Add: second input has 2 elements, want 3"}},
		{"upsample zero factor", func() error {
			return Upsample(UpsampleParams{N: 1, C: 1, In: Dims3{2, 2, 2}, Factor: Dims3{2, 0, 2}}, f(8), f(0))
		}, []string{"ref.Upsample", "factor 2×0×2 must be positive"}},
		{"upsample backward length", func() error {
			return UpsampleBackward(UpsampleParams{N: 1, C: 2, In: Dims3{2, 1, 2}, Factor: Dims3{1, 2, 2}}, f(32), f(7))
		}, []string{"ref.UpsampleBackward: input gradient has 7 elements, want 1×2×2×1×2 = 8"}},
		{"pad output length", func() error {
			return Pad(PadParams{N: 1, C: 1, In: Dims3{2, 2, 2}, Before: Dims3{1, 0, 0}, After: Dims3{0, 0, 1}}, f(8), f(8))
		}, []string{"ref.Pad: output has 8 elements, want 1×1×3×2×3 = 18"}},
		{"concat part count", func() error {
			return Concat(ConcatParams{N: 1, Channels: []int{1, 2}, Size: Dims3{1, 1, 1}}, [][]float32{f(1)}, f(3))
		}, []string{"ref.Concat: 1 part given, want 2"}},
		{"split part length", func() error {
			return Split(ConcatParams{N: 2, Channels: []int{1, 2}, Size: Dims3{1, 1, 1}}, f(6), [][]float32{f(2), f(3)})
		}, []string{"ref.Split: part 1 has 3 elements, want 2×2×1×1×1 = 4"}},
		{"concat zero channels", func() error {
			return Concat(ConcatParams{N: 1, Channels: []int{1, 0}, Size: Dims3{1, 1, 1}}, nil, nil)
		}, []string{"ref.Concat", "channels of part 1 = 0 must be positive"}},
		{"cross-entropy label range", func() error {
			_, err := CrossEntropy(lp, f(12), []int32{0, 1, 3, 2}, nil)
			return err
		}, []string{"ref.CrossEntropy: label 3 at index 2 is outside [0, 3)"}},
		{"cross-entropy negative label", func() error {
			_, err := CrossEntropy(lp, f(12), []int32{0, -100, 1, 2}, nil)
			return err
		}, []string{"ref.CrossEntropy: label -100 at index 1 is outside [0, 3)"}},
		{"cross-entropy labels length", func() error {
			_, err := CrossEntropy(lp, f(12), []int32{0, 1}, nil)
			return err
		}, []string{"ref.CrossEntropy: labels has 2 elements, want 1×1×1×2×2 = 4"}},
		{"dice background only", func() error {
			_, err := SoftDice(DiceParams{LossParams: LossParams{N: 1, Classes: 1, Size: Dims3{1, 1, 1}}, Eps: 1}, f(1), []int32{0}, nil)
			return err
		}, []string{"ref.SoftDice", "no class left once the background is excluded"}},
		{"dice negative eps", func() error {
			_, err := SoftDice(DiceParams{LossParams: lp, Eps: -1}, f(12), make([]int32, 4), nil)
			return err
		}, []string{"ref.SoftDice", "eps -1 must be non-negative"}},
		{"softmax length", func() error { return Softmax(lp, f(12), f(11)) },
			[]string{"ref.Softmax: probabilities has 11 elements, want 1×3×1×2×2 = 12"}},
		{"argmax length", func() error { return Argmax(lp, f(12), make([]int32, 3)) },
			[]string{"ref.Argmax: labels has 3 elements, want 1×1×1×2×2 = 4"}},
		{"adam beta", func() error { return AdamStep(AdamParams{LR: 1, Beta1: 1, Beta2: 0.9}, 1, f(2), f(2), f(2), f(2)) },
			[]string{"ref.AdamStep", "beta1 1 must be in [0, 1)"}},
		{"adam step zero", func() error { return AdamStep(DefaultAdam(1e-3), 0, f(2), f(2), f(2), f(2)) },
			[]string{"ref.AdamStep: step 0 must be at least 1"}},
		{"adam lengths", func() error { return AdamStep(DefaultAdam(1e-3), 1, f(2), f(2), f(2), f(3)) },
			[]string{"ref.AdamStep: second moment has 3 elements, want 2 like parameter"}},
		{"sgd nesterov without momentum", func() error { return SGDStep(SGDParams{LR: 0.1, Nesterov: true}, 1, f(2), f(2), f(2)) },
			[]string{"ref.SGDStep", "Nesterov momentum needs a positive momentum"}},
		{"sgd missing buffer", func() error { return SGDStep(SGDParams{LR: 0.1, Momentum: 0.9}, 1, f(2), f(2), nil) },
			[]string{"ref.SGDStep: momentum buffer has 0 elements, want 2 like parameter"}},
		{"sgd negative lr", func() error { return SGDStep(SGDParams{LR: -1}, 1, f(2), f(2), nil) },
			[]string{"ref.SGDStep", "learning rate -1 must be non-negative"}},
		{"channel sum length", func() error { return ChannelSum(2, 3, Dims3{1, 1, 2}, f(12), f(2)) },
			[]string{"ref.ChannelSum: sums has 2 elements, want 3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if err == nil {
				t.Fatalf("no error, want one containing %q", c.want)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Zero-valued parameters and nil slices give an error from every function,
// never a panic.
func TestZeroValuesGiveErrors(t *testing.T) {
	calls := map[string]func() error{
		"DepthwiseConv3d":         func() error { return DepthwiseConv3d(DepthwiseParams{}, nil, nil, nil, nil) },
		"DepthwiseConv3dBackward": func() error { return DepthwiseConv3dBackward(DepthwiseParams{}, nil, nil, nil, nil, nil, nil) },
		"PointwiseConv3d":         func() error { return PointwiseConv3d(PointwiseParams{}, nil, nil, nil, nil) },
		"PointwiseConv3dBackward": func() error { return PointwiseConv3dBackward(PointwiseParams{}, nil, nil, nil, nil, nil, nil) },
		"Conv3d":                  func() error { return Conv3d(ConvParams{}, nil, nil, nil, nil) },
		"Conv3dBackward":          func() error { return Conv3dBackward(ConvParams{}, nil, nil, nil, nil, nil, nil) },
		"ConvTranspose3d":         func() error { return ConvTranspose3d(ConvTransposeParams{}, nil, nil, nil, nil) },
		"ConvTranspose3dBackward": func() error {
			return ConvTranspose3dBackward(ConvTransposeParams{}, nil, nil, nil, nil, nil, nil)
		},
		"InstanceNorm3d": func() error { return InstanceNorm3d(NormParams{}, nil, nil, nil, nil, nil, nil, nil) },
		"InstanceNorm3dBackward": func() error {
			return InstanceNorm3dBackward(NormParams{}, nil, nil, nil, nil, nil, nil, nil, nil, nil)
		},
		"LeakyReLU":         func() error { return LeakyReLU(0, nil, nil) },
		"LeakyReLUBackward": func() error { return LeakyReLUBackward(0, nil, nil, nil) },
		"Add":               func() error { return Add(nil, nil, nil) },
		"Concat":            func() error { return Concat(ConcatParams{}, nil, nil) },
		"Split":             func() error { return Split(ConcatParams{}, nil, nil) },
		"Upsample":          func() error { return Upsample(UpsampleParams{}, nil, nil) },
		"UpsampleBackward":  func() error { return UpsampleBackward(UpsampleParams{}, nil, nil) },
		"Pad":               func() error { return Pad(PadParams{}, nil, nil) },
		"PadBackward":       func() error { return PadBackward(PadParams{}, nil, nil) },
		"Softmax":           func() error { return Softmax(LossParams{}, nil, nil) },
		"Argmax":            func() error { return Argmax(LossParams{}, nil, nil) },
		"CrossEntropy":      func() error { _, err := CrossEntropy(LossParams{}, nil, nil, nil); return err },
		"SoftDice":          func() error { _, err := SoftDice(DiceParams{}, nil, nil, nil); return err },
		"AdamStep":          func() error { return AdamStep(AdamParams{}, 0, nil, nil, nil, nil) },
		"SGDStep":           func() error { return SGDStep(SGDParams{}, 0, nil, nil, nil) },
		"ChannelSum":        func() error { return ChannelSum(0, 0, Dims3{}, nil, nil) },
	}
	for name, call := range calls {
		if err := call(); err == nil || !strings.HasPrefix(err.Error(), "ref."+name+":") {
			t.Errorf("%s: error %v, want one starting with %q", name, err, "ref."+name+":")
		}
	}
}
