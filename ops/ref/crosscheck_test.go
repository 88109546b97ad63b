package ref

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// Checks where two definitions overlap, on the float32 functions. Both sides
// accumulate in float64, so they agree up to float32 rounding.
const crossTol = 1e-6

func rand32(seed uint64, n int) []float32 { return convert[float32](randn(newRand(seed), n)) }

func expectClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if err := RelL2(got, want); !(err <= tol) {
		t.Errorf("%s: relative L2 error %.3g > %g\ngot  %v\nwant %v", what, err, tol, got, want)
	}
}

// convResults holds the output and the three gradients of a convolution.
type convResults struct{ y, dx, dw, db []float32 }

func TestPointwiseEqualsDenseKernel1(t *testing.T) {
	for _, p := range []PointwiseParams{
		{N: 3, Cin: 17, Cout: 3, Size: Dims3{1, 2, 5}},
		{N: 1, Cin: 1, Cout: 3, Size: Dims3{3, 1, 1}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			d := ConvParams{N: p.N, Cin: p.Cin, Cout: p.Cout, In: p.Size, Kernel: Dims3{1, 1, 1}, Stride: Dims3{1, 1, 1}}
			x, w, b := rand32(1, p.InputLen()), rand32(2, p.WeightLen()), rand32(3, p.BiasLen())
			dy := rand32(4, p.OutputLen())
			var a, c convResults
			for _, r := range []*convResults{&a, &c} {
				r.y, r.dx, r.dw, r.db = poisoned[float32](p.OutputLen()), poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](len(b))
			}
			checkNoErr(t, PointwiseConv3d(p, x, w, b, a.y))
			checkNoErr(t, PointwiseConv3dBackward(p, x, w, dy, a.dx, a.dw, a.db))
			checkNoErr(t, Conv3d(d, x, w, b, c.y))
			checkNoErr(t, Conv3dBackward(d, x, w, dy, c.dx, c.dw, c.db))
			expectClose(t, "y", a.y, c.y, crossTol)
			expectClose(t, "dx", a.dx, c.dx, crossTol)
			expectClose(t, "dw", a.dw, c.dw, crossTol)
			expectClose(t, "db", a.db, c.db, crossTol)
		})
	}
}

func TestDepthwiseEqualsBlockDiagonalDense(t *testing.T) {
	for _, p := range []DepthwiseParams{
		{N: 3, C: 3, Size: Dims3{5, 1, 3}, Kernel: 3},
		{N: 1, C: 17, Size: Dims3{2, 3, 1}, Kernel: 1},
		{N: 1, C: 1, Size: Dims3{3, 2, 4}, Kernel: 5},
	} {
		t.Run(p.String(), func(t *testing.T) {
			k, h := p.Kernel, p.Kernel/2
			d := ConvParams{N: p.N, Cin: p.C, Cout: p.C, In: p.Size, Kernel: Dims3{k, k, k}, Stride: Dims3{1, 1, 1},
				PadBefore: Dims3{h, h, h}, PadAfter: Dims3{h, h, h}}
			x, w, b := rand32(1, p.InputLen()), rand32(2, p.WeightLen()), rand32(3, p.BiasLen())
			dy := rand32(4, p.OutputLen())
			k3 := k * k * k
			// Dense weights [C, C, k, k, k], zero off the diagonal blocks.
			wd := make([]float32, d.WeightLen())
			for c := 0; c < p.C; c++ {
				copy(wd[(c*p.C+c)*k3:(c*p.C+c+1)*k3], w[c*k3:(c+1)*k3])
			}
			var a, c convResults
			a.y, a.dx, a.dw, a.db = poisoned[float32](p.OutputLen()), poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](len(b))
			c.y, c.dx, c.dw, c.db = poisoned[float32](p.OutputLen()), poisoned[float32](len(x)), poisoned[float32](len(wd)), poisoned[float32](len(b))
			checkNoErr(t, DepthwiseConv3d(p, x, w, b, a.y))
			checkNoErr(t, DepthwiseConv3dBackward(p, x, w, dy, a.dx, a.dw, a.db))
			checkNoErr(t, Conv3d(d, x, wd, b, c.y))
			checkNoErr(t, Conv3dBackward(d, x, wd, dy, c.dx, c.dw, c.db))
			diag := make([]float32, len(w))
			for ch := 0; ch < p.C; ch++ {
				copy(diag[ch*k3:(ch+1)*k3], c.dw[(ch*p.C+ch)*k3:(ch*p.C+ch+1)*k3])
			}
			expectClose(t, "y", a.y, c.y, crossTol)
			expectClose(t, "dx", a.dx, c.dx, crossTol)
			expectClose(t, "dw", a.dw, diag, crossTol)
			expectClose(t, "db", a.db, c.db, crossTol)
		})
	}
}

// A depthwise convolution of an up-sampled input is Upsample then the
// convolution, and its input gradient the convolution's then
// UpsampleBackward.
func TestDepthwiseUpIsUpsampleThenConv(t *testing.T) {
	for _, p := range []DepthwiseParams{
		{N: 2, C: 3, Size: Dims3{4, 6, 6}, Kernel: 3, Up: Dims3{2, 2, 2}},
		{N: 1, C: 2, Size: Dims3{3, 4, 6}, Kernel: 5, Up: Dims3{1, 2, 3}},
		{N: 1, C: 1, Size: Dims3{2, 2, 2}, Kernel: 3, Up: Dims3{2, 2, 2}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			u := UpsampleParams{N: p.N, C: p.C, In: p.InputSize(), Factor: p.Up}
			plain := p
			plain.Up = Dims3{}
			x, w, b := rand32(1, p.InputLen()), rand32(2, p.WeightLen()), rand32(3, p.BiasLen())
			dy := rand32(4, p.OutputLen())
			var a, c convResults
			a.y, a.dx, a.dw, a.db = poisoned[float32](p.OutputLen()), poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](len(b))
			c.y, c.dx, c.dw, c.db = poisoned[float32](p.OutputLen()), poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](len(b))
			checkNoErr(t, DepthwiseConv3d(p, x, w, b, a.y))
			checkNoErr(t, DepthwiseConv3dBackward(p, x, w, dy, a.dx, a.dw, a.db))
			up, dup := poisoned[float32](u.OutputLen()), poisoned[float32](u.OutputLen())
			checkNoErr(t, Upsample(u, x, up))
			checkNoErr(t, DepthwiseConv3d(plain, up, w, b, c.y))
			checkNoErr(t, DepthwiseConv3dBackward(plain, up, w, dy, dup, c.dw, c.db))
			checkNoErr(t, UpsampleBackward(u, dup, c.dx))
			expectClose(t, "y", a.y, c.y, crossTol)
			expectClose(t, "dx", a.dx, c.dx, crossTol)
			expectClose(t, "dw", a.dw, c.dw, crossTol)
			expectClose(t, "db", a.db, c.db, crossTol)
		})
	}
	bad := DepthwiseParams{N: 1, C: 1, Size: Dims3{3, 4, 4}, Kernel: 3, Up: Dims3{2, 2, 2}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "not a multiple of the up-sampling factor") {
		t.Errorf("size 3 up-sampled by 2: error %v", err)
	}
}

// A transposed convolution is the input gradient of the convolution with the
// same weights, and its input gradient is that convolution's forward.
func TestConvTransposeIsConvGradient(t *testing.T) {
	for _, p := range []ConvTransposeParams{
		{N: 3, Cin: 3, Cout: 2, In: Dims3{2, 1, 3}, Kernel: Dims3{2, 2, 2}, Stride: Dims3{2, 2, 2}},
		{N: 1, Cin: 17, Cout: 3, In: Dims3{3, 2, 1}, Kernel: Dims3{1, 2, 2}, Stride: Dims3{1, 2, 2}},
		{N: 1, Cin: 2, Cout: 3, In: Dims3{2, 3, 2}, Kernel: Dims3{3, 2, 1}, Stride: Dims3{2, 1, 1}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			d := ConvParams{N: p.N, Cin: p.Cout, Cout: p.Cin, In: p.OutputSize(), Kernel: p.Kernel, Stride: p.Stride}
			if d.OutputSize() != p.In {
				t.Fatalf("conv output %v, want the transposed conv's input %v", d.OutputSize(), p.In)
			}
			x, w, dy := rand32(1, p.InputLen()), rand32(2, p.WeightLen()), rand32(3, p.OutputLen())

			y := poisoned[float32](p.OutputLen())
			checkNoErr(t, ConvTranspose3d(p, x, w, nil, y))
			dxConv := poisoned[float32](d.InputLen())
			checkNoErr(t, Conv3dBackward(d, dy, w, x, dxConv, nil, nil))
			expectClose(t, "forward vs conv input gradient", y, dxConv, crossTol)

			dx, dw := poisoned[float32](len(x)), poisoned[float32](len(w))
			checkNoErr(t, ConvTranspose3dBackward(p, x, w, dy, dx, dw, nil))
			yConv, dwConv := poisoned[float32](d.OutputLen()), poisoned[float32](len(w))
			checkNoErr(t, Conv3d(d, dy, w, nil, yConv))
			checkNoErr(t, Conv3dBackward(d, dy, w, x, nil, dwConv, nil))
			expectClose(t, "input gradient vs conv forward", dx, yConv, crossTol)
			expectClose(t, "weight gradient vs conv weight gradient", dw, dwConv, crossTol)
		})
	}
}

// adjoint checks ⟨f(x), y⟩ = ⟨x, fᵀ(y)⟩ in float64.
func adjoint(t *testing.T, inLen, outLen int, f, ft func(a, b []float64) error) {
	t.Helper()
	x, y := randn(newRand(1), inLen), randn(newRand(2), outLen)
	fx, fty := poisoned[float64](outLen), poisoned[float64](inLen)
	checkNoErr(t, f(x, fx))
	checkNoErr(t, ft(y, fty))
	if l, r := dot(fx, y), dot(x, fty); math.Abs(l-r) > 1e-12*math.Max(1, math.Abs(l)) {
		t.Errorf("⟨f(x), y⟩ = %.17g, ⟨x, fᵀ(y)⟩ = %.17g", l, r)
	}
}

func TestUpsampleAdjoint(t *testing.T) {
	for _, p := range []UpsampleParams{
		{N: 1, C: 3, In: Dims3{2, 1, 3}, Factor: Dims3{2, 2, 2}},
		{N: 3, C: 1, In: Dims3{3, 2, 1}, Factor: Dims3{1, 2, 3}},
		{N: 1, C: 1, In: Dims3{1, 1, 1}, Factor: Dims3{1, 1, 1}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			adjoint(t, p.InputLen(), p.OutputLen(),
				func(x, y []float64) error { return upsample(p, x, y) },
				func(y, x []float64) error { return upsampleBackward(p, y, x) })
		})
	}
}

func TestPadAdjoint(t *testing.T) {
	for _, p := range []PadParams{
		{N: 3, C: 3, In: Dims3{2, 3, 1}, Before: Dims3{0, 1, 2}, After: Dims3{1, 0, 3}},
		{N: 1, C: 2, In: Dims3{4, 4, 4}, Before: Dims3{0, 0, 0}, After: Dims3{1, 1, 1}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			adjoint(t, p.InputLen(), p.OutputLen(),
				func(x, y []float64) error { return pad(p, x, y) },
				func(y, x []float64) error { return padBackward(p, y, x) })
			// Cropping the padded tensor gives the input back exactly.
			x := rand32(5, p.InputLen())
			y, back := poisoned[float32](p.OutputLen()), poisoned[float32](p.InputLen())
			checkNoErr(t, Pad(p, x, y))
			checkNoErr(t, PadBackward(p, y, back))
			if !slices.Equal(x, back) {
				t.Errorf("crop(pad(x)) differs from x")
			}
		})
	}
}

func TestConcatSplitRoundTrip(t *testing.T) {
	p := ConcatParams{N: 3, Channels: []int{1, 17, 2}, Size: Dims3{2, 1, 3}}
	parts := make([][]float32, len(p.Channels))
	back := make([][]float32, len(p.Channels))
	for i := range parts {
		parts[i] = rand32(uint64(i), p.PartLen(i))
		back[i] = poisoned[float32](p.PartLen(i))
	}
	y := poisoned[float32](p.OutputLen())
	checkNoErr(t, Concat(p, parts, y))
	checkNoErr(t, Split(p, y, back))
	for i := range parts {
		if !slices.Equal(parts[i], back[i]) {
			t.Errorf("part %d differs after Concat then Split", i)
		}
	}
	// Channel c of sample n of the output is channel c − offset of its part.
	vox := p.Size.Voxels()
	if got, want := y[(1*20+1)*vox], parts[1][(1*17+0)*vox]; got != want {
		t.Errorf("sample 1, channel 1: got %g, want part 1's channel 0, %g", got, want)
	}
}

func TestSoftmaxAndArgmax(t *testing.T) {
	p := LossParams{N: 3, Classes: 4, Size: Dims3{2, 1, 3}}
	logits := rand32(1, p.LogitsLen())
	vox := p.Size.Voxels()
	// A tie at one voxel (classes 1 and 3) and a NaN at another.
	logits[(0*4+1)*vox+0], logits[(0*4+3)*vox+0] = 50, 50
	probs, labels := poisoned[float32](len(logits)), make([]int32, p.LabelsLen())
	checkNoErr(t, Softmax(p, logits, probs))
	checkNoErr(t, Argmax(p, logits, labels))
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			var s float64
			best := 0
			for k := 0; k < p.Classes; k++ {
				q := probs[(n*p.Classes+k)*vox+v]
				s += float64(q)
				if q > probs[(n*p.Classes+best)*vox+v] {
					best = k
				}
			}
			if math.Abs(s-1) > 1e-6 {
				t.Errorf("sample %d voxel %d: probabilities sum to %g", n, v, s)
			}
			if int(labels[n*vox+v]) != best {
				t.Errorf("sample %d voxel %d: argmax %d, the largest probability is class %d", n, v, labels[n*vox+v], best)
			}
		}
	}
	if labels[0] != 1 {
		t.Errorf("tie between classes 1 and 3: got %d, want the first, 1", labels[0])
	}
	logits[(1*4+2)*vox+4] = float32(math.NaN())
	checkNoErr(t, Argmax(p, logits, labels))
	if labels[vox+4] != 2 {
		t.Errorf("NaN logit of class 2: argmax %d, want 2 as torch.argmax", labels[vox+4])
	}
}

func TestLossValues(t *testing.T) {
	p := LossParams{N: 2, Classes: 5, Size: Dims3{1, 3, 1}}
	labels := randLabels(newRand(3), p.LabelsLen(), p.Classes)
	// Equal logits: the cross-entropy is log(classes).
	uniform := make([]float32, p.LogitsLen())
	loss, err := CrossEntropy(p, uniform, labels, nil)
	checkNoErr(t, err)
	if math.Abs(loss-math.Log(5)) > 1e-12 {
		t.Errorf("cross-entropy of equal logits: %g, want log 5 = %g", loss, math.Log(5))
	}
	// Logits that put all the mass on the labels: both losses near zero.
	sure := make([]float32, p.LogitsLen())
	vox := p.Size.Voxels()
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			sure[(n*p.Classes+int(labels[n*vox+v]))*vox+v] = 60
		}
	}
	if loss, err = CrossEntropy(p, sure, labels, nil); err != nil || loss > 1e-20 {
		t.Errorf("cross-entropy of certain logits: %g, %v", loss, err)
	}
	// Classes absent from the labels and not predicted score (0 + eps)/(0 + eps) = 1.
	for _, bg := range []bool{true, false} {
		d := DiceParams{LossParams: p, Eps: DefaultDiceEps, IncludeBackground: bg}
		if loss, err = SoftDice(d, sure, labels, nil); err != nil || math.Abs(loss) > 1e-9 {
			t.Errorf("soft Dice of certain logits (background %t): %g, %v", bg, loss, err)
		}
	}
}

func TestNormStatistics(t *testing.T) {
	p := NormParams{N: 3, C: 2, Size: Dims3{3, 1, 7}, Eps: DefaultNormEps, Residual: true}
	x, r := rand32(1, p.InputLen()), rand32(2, p.InputLen())
	gamma, beta := []float32{2, -0.5}, []float32{0.25, 1}
	y, mean, invStd := poisoned[float32](p.OutputLen()), poisoned[float32](p.StatsLen()), poisoned[float32](p.StatsLen())
	checkNoErr(t, InstanceNorm3d(p, x, r, gamma, beta, y, mean, invStd))
	vox := p.Size.Voxels()
	for nc := 0; nc < p.N*p.C; nc++ {
		c := nc % p.C
		// The residual is added after the norm: y − r is normalised x.
		var m, v, mu, vu float64
		for i := nc * vox; i < (nc+1)*vox; i++ {
			m += float64(y[i]) - float64(r[i])
			mu += float64(x[i])
		}
		m, mu = m/float64(vox), mu/float64(vox)
		for i := nc * vox; i < (nc+1)*vox; i++ {
			d := float64(y[i]) - float64(r[i]) - m
			v += d * d
			vu += (float64(x[i]) - mu) * (float64(x[i]) - mu)
		}
		v, vu = v/float64(vox), vu/float64(vox)
		g := float64(gamma[c])
		wantVar := g * g * vu / (vu + p.Eps)
		if math.Abs(m-float64(beta[c])) > 1e-6 || math.Abs(v-wantVar) > 1e-5 {
			t.Errorf("plane %d: mean %g var %g, want %g and %g", nc, m, v, beta[c], wantVar)
		}
		if math.Abs(float64(mean[nc])-mu) > 1e-6 || math.Abs(float64(invStd[nc])-1/math.Sqrt(vu+p.Eps)) > 1e-5 {
			t.Errorf("plane %d: saved statistics %g, %g", nc, mean[nc], invStd[nc])
		}
	}
}

// InstanceNormStats gives the statistics InstanceNorm3d saves, whatever
// the norm's residual and activation.
func TestInstanceNormStats(t *testing.T) {
	p := NormParams{N: 2, C: 3, Size: Dims3{2, 5, 3}, Eps: DefaultNormEps, Residual: true, LeakyReLU: true, Slope: 0.1}
	x, r := rand32(3, p.InputLen()), rand32(4, p.InputLen())
	gamma, beta := rand32(5, p.C), rand32(6, p.C)
	y, mean, invStd := make([]float32, p.OutputLen()), make([]float32, p.StatsLen()), make([]float32, p.StatsLen())
	checkNoErr(t, InstanceNorm3d(p, x, r, gamma, beta, y, mean, invStd))
	m, is := poisoned[float32](p.StatsLen()), poisoned[float32](p.StatsLen())
	checkNoErr(t, InstanceNormStats(p, x, m, is))
	if !slices.Equal(m, mean) || !slices.Equal(is, invStd) {
		t.Errorf("InstanceNormStats: %v, %v; InstanceNorm3d saved %v, %v", m, is, mean, invStd)
	}
}

// Optional outputs: a backward with some gradients skipped gives the others
// unchanged, and a nil bias is a zero bias.
func TestOptionalArguments(t *testing.T) {
	p := ConvParams{N: 1, Cin: 3, Cout: 2, In: Dims3{3, 4, 2}, Kernel: Dims3{3, 3, 3}, Stride: Dims3{1, 2, 1},
		PadBefore: Dims3{1, 1, 1}, PadAfter: Dims3{1, 0, 1}}
	x, w, dy := rand32(1, p.InputLen()), rand32(2, p.WeightLen()), rand32(3, p.OutputLen())
	dx, dw, db := poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](p.Cout)
	checkNoErr(t, Conv3dBackward(p, x, w, dy, dx, dw, db))
	dx2, dw2, db2 := poisoned[float32](len(x)), poisoned[float32](len(w)), poisoned[float32](p.Cout)
	checkNoErr(t, Conv3dBackward(p, x, w, dy, dx2, nil, nil))
	checkNoErr(t, Conv3dBackward(p, x, w, dy, nil, dw2, nil))
	checkNoErr(t, Conv3dBackward(p, x, w, dy, nil, nil, db2))
	if !slices.Equal(dx, dx2) || !slices.Equal(dw, dw2) || !slices.Equal(db, db2) {
		t.Errorf("skipping gradients changed the others")
	}
	sums := poisoned[float32](p.Cout)
	checkNoErr(t, ChannelSum(p.N, p.Cout, p.OutputSize(), dy, sums))
	if !slices.Equal(sums, db) {
		t.Errorf("ChannelSum %v differs from the bias gradient %v", sums, db)
	}
	y1, y2 := poisoned[float32](p.OutputLen()), poisoned[float32](p.OutputLen())
	checkNoErr(t, Conv3d(p, x, w, nil, y1))
	checkNoErr(t, Conv3d(p, x, w, make([]float32, p.Cout), y2))
	if !slices.Equal(y1, y2) {
		t.Errorf("nil bias differs from zero bias")
	}

	np := NormParams{N: 1, C: 2, Size: Dims3{2, 2, 1}, Eps: DefaultNormEps, LeakyReLU: true, Slope: DefaultSlope}
	nx, gamma, beta, ndy := rand32(4, np.InputLen()), rand32(5, 2), rand32(6, 2), rand32(7, np.InputLen())
	ndx, dg, dbeta := poisoned[float32](len(nx)), poisoned[float32](2), poisoned[float32](2)
	checkNoErr(t, InstanceNorm3dBackward(np, nx, nil, gamma, beta, ndy, ndx, nil, dg, dbeta))
	ndx2 := poisoned[float32](len(nx))
	checkNoErr(t, InstanceNorm3dBackward(np, nx, nil, gamma, beta, ndy, ndx2, nil, nil, nil))
	if !slices.Equal(ndx, ndx2) {
		t.Errorf("instance norm: skipping dgamma and dbeta changed dx")
	}
}

func TestInPlace(t *testing.T) {
	x := rand32(1, 23)
	want := make([]float32, len(x))
	checkNoErr(t, LeakyReLU(0.1, x, want))
	checkNoErr(t, LeakyReLU(0.1, x, x))
	if !slices.Equal(x, want) {
		t.Errorf("LeakyReLU in place differs")
	}
	a, b := rand32(2, 9), rand32(3, 9)
	sum := make([]float32, 9)
	checkNoErr(t, Add(a, b, sum))
	checkNoErr(t, Add(a, b, a))
	if !slices.Equal(a, sum) {
		t.Errorf("Add in place differs")
	}
}

func TestRelL2(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		name      string
		got, want []float32
		err       float64
	}{
		{"equal", []float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{"scaled", []float32{1.5, 0}, []float32{1, 0}, 0.5},
		{"orthogonal", []float32{0, 1}, []float32{1, 0}, math.Sqrt2},
		{"NaN", []float32{1, nan}, []float32{1, 2}, math.Inf(1)},
		{"infinity", []float32{inf, 1}, []float32{1, 2}, math.Inf(1)},
		{"length", []float32{1}, []float32{1, 2}, math.Inf(1)},
		{"zeros", []float32{0, 0}, []float32{0, 0}, 0},
		{"zero want", []float32{0, 1e-30}, []float32{0, 0}, math.Inf(1)},
		{"empty", nil, nil, 0},
	} {
		if got := RelL2(c.got, c.want); got != c.err {
			t.Errorf("%s: RelL2 = %g, want %g", c.name, got, c.err)
		}
	}
}
