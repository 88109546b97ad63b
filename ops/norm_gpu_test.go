package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// normShapes are awkward sizes: two voxels, odd counts (no vec4 path), one
// plane of several chunks, batch 1 and 3, 64 channels, and large planes in
// channels enough for norm_fused.
var normShapes = []struct {
	n, c int
	size ref.Dims3
}{
	{1, 1, ref.Dims3{1, 1, 2}},
	{3, 3, ref.Dims3{1, 5, 7}},
	{1, 17, ref.Dims3{3, 3, 3}},
	{3, 3, ref.Dims3{5, 6, 7}},
	{1, 3, ref.Dims3{13, 1, 9}},
	{1, 64, ref.Dims3{2, 2, 4}},
	{2, 3, ref.Dims3{17, 19, 23}}, // 7429 voxels: two chunks, scalar path
	{2, 3, ref.Dims3{16, 16, 16}}, // 4096 voxels: one chunk (norm_fused on GPUs), vec4 path
	{1, 2, ref.Dims3{15, 16, 17}}, // 4080 voxels: one chunk, scalar path
	{1, 2, ref.Dims3{17, 19, 29}}, // 9367 voxels: three chunks, scalar path
	{1, 2, ref.Dims3{16, 20, 24}}, // 7680 voxels: two chunks, vec4 path
	{1, 1, ref.Dims3{20, 25, 36}}, // 18000 voxels: five chunks, vec4 path
	{2, 1, ref.Dims3{67, 61, 65}}, // 265655 voxels: 65 chunks, more than norm_combine's workgroup
	{1, 8, ref.Dims3{63, 61, 65}}, // 249795 voxels: norm_fused (8 planes) on CPU devices, scalar path
	{2, 8, ref.Dims3{12, 20, 28}}, // norm_fused on CPU devices, vec4 path
}

// The GPU works in fp32 where ref uses float64: the statistics are two-pass
// per chunk and merged with Chan's formula, so the mean and variance keep
// about fp32 precision even for inputs 3 + 2·N(0, 1), and y and dx are a few
// ulp off (relative L2 ≤ 4e-7 seen). dgamma and dbeta are sums of ~10⁴
// mixed-sign terms that can be 10³ times smaller than the sum of their
// magnitudes, so their fp32 error is ε·√terms·10³ at worst (3e-6 seen with
// one channel); normGradTol covers that.
const (
	normTol     = 1e-6
	normGradTol = 1e-5
)

// normInput returns 3 + 2·N(0, 1) values: a mean far from zero exposes
// cancellation in one-pass variance formulas.
func normInput(r *rand.Rand, n int) []float32 {
	v := randScaled(r, n, 2)
	for i := range v {
		v[i] += 3
	}
	return v
}

func TestInstanceNormGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	var cases []opCase
	for i, s := range normShapes {
		for _, variant := range []struct {
			residual, leaky bool
		}{{false, false}, {true, false}, {false, true}, {true, true}} {
			// All four variants on a few shapes, the plain and the full one
			// on every shape, to keep the run short on lavapipe.
			if variant.residual != variant.leaky && i%3 != 0 {
				continue
			}
			p := ref.NormParams{N: s.n, C: s.c, Size: s.size, Eps: ref.DefaultNormEps,
				Residual: variant.residual, LeakyReLU: variant.leaky, Slope: ref.DefaultSlope}
			x := normInput(r, p.InputLen())
			gamma, beta := randn(r, p.C), randScaled(r, p.C, 0.5)
			dy := randn(r, p.OutputLen())
			var res []float32
			fwd := []tensorSpec{input("x", x), input("gamma", gamma), input("beta", beta),
				output("y", p.OutputLen()), output("mean", p.StatsLen()), output("invStd", p.StatsLen())}
			bwd := []tensorSpec{input("x", x), input("gamma", gamma), input("beta", beta), input("dy", dy),
				output("dgamma", p.C), output("dbeta", p.C)}
			// With two voxels x̂ = ±1 whatever x is, so dx is exactly zero
			// and both engines return rounding noise: no relative error
			// means anything there.
			if p.Size.Voxels() > 2 {
				bwd = append(bwd, output("dx", p.InputLen()))
			}
			if p.Residual {
				res = randn(r, p.InputLen())
				fwd = append(fwd, input("r", res))
				bwd = append(bwd, input("r", res), output("dr", p.InputLen()))
			}
			name := fmt.Sprintf("N%d-C%d-%v-res%t-leaky%t", s.n, s.c, s.size, p.Residual, p.LeakyReLU)
			cases = append(cases,
				opCase{name + "/fwd", fwd, func(e Engine, t map[string]*Tensor) error {
					return e.InstanceNorm3d(p, t["x"], t["r"], t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"])
				}, normTol},
				opCase{name + "/bwd", bwd, func(e Engine, t map[string]*Tensor) error {
					return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], nil, nil, t["dy"],
						t["dx"], t["dr"], t["dgamma"], t["dbeta"])
				}, normGradTol},
				// The backward pass on the statistics the forward saved.
				opCase{name + "/fwd+bwd-saved", append(bwd, output("y", p.OutputLen()),
					output("mean", p.StatsLen()), output("invStd", p.StatsLen())),
					func(e Engine, t map[string]*Tensor) error {
						if err := e.InstanceNorm3d(p, t["x"], t["r"], t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"]); err != nil {
							return err
						}
						return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], t["mean"], t["invStd"],
							t["dy"], t["dx"], t["dr"], t["dgamma"], t["dbeta"])
					}, normGradTol},
			)
		}
	}
	// Optional outputs left out.
	p := ref.NormParams{N: 2, C: 3, Size: ref.Dims3{4, 5, 6}, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: 0.2}
	x, gamma, beta, dy := normInput(r, p.InputLen()), randn(r, p.C), randn(r, p.C), randn(r, p.OutputLen())
	in := []tensorSpec{input("x", x), input("gamma", gamma), input("beta", beta), input("dy", dy)}
	with := func(outs ...tensorSpec) []tensorSpec { return append(append([]tensorSpec(nil), in...), outs...) }
	cases = append(cases,
		opCase{"fwd-no-stats", with(output("y", p.OutputLen())), func(e Engine, t map[string]*Tensor) error {
			return e.InstanceNorm3d(p, t["x"], nil, t["gamma"], t["beta"], t["y"], nil, nil)
		}, normTol},
		opCase{"fwd-invstd-only", with(output("y", p.OutputLen()), output("invStd", p.StatsLen())),
			func(e Engine, t map[string]*Tensor) error {
				return e.InstanceNorm3d(p, t["x"], nil, t["gamma"], t["beta"], t["y"], nil, t["invStd"])
			}, normTol},
		opCase{"bwd-dx-only", with(output("dx", p.InputLen())), func(e Engine, t map[string]*Tensor) error {
			return e.InstanceNorm3dBackward(p, t["x"], nil, t["gamma"], t["beta"], nil, nil, t["dy"], t["dx"], nil, nil, nil)
		}, normGradTol},
		opCase{"bwd-params-only", with(output("dgamma", p.C), output("dbeta", p.C)),
			func(e Engine, t map[string]*Tensor) error {
				return e.InstanceNorm3dBackward(p, t["x"], nil, t["gamma"], t["beta"], nil, nil, t["dy"], nil, nil, t["dgamma"], t["dbeta"])
			}, normGradTol},
		opCase{"bwd-dbeta-only", with(output("dbeta", p.C)), func(e Engine, t map[string]*Tensor) error {
			return e.InstanceNorm3dBackward(p, t["x"], nil, t["gamma"], t["beta"], nil, nil, t["dy"], nil, nil, nil, t["dbeta"])
		}, normGradTol},
	)
	// With a residual, each of its elementwise outputs alone, on the
	// chunked passes and (8 planes or channels) on norm_fused.
	for _, c := range []int{3, 8} {
		p := ref.NormParams{N: 2, C: c, Size: ref.Dims3{4, 5, 6}, Eps: ref.DefaultNormEps, Residual: true,
			LeakyReLU: true, Slope: 0.2}
		res := []tensorSpec{input("x", normInput(r, p.InputLen())), input("r", randn(r, p.InputLen())),
			input("gamma", randn(r, p.C)), input("beta", randn(r, p.C)), input("dy", randn(r, p.OutputLen()))}
		with := func(out string) []tensorSpec {
			return append(append([]tensorSpec(nil), res...), output(out, p.InputLen()))
		}
		cases = append(cases,
			opCase{fmt.Sprintf("C%d-res-bwd-dx-only", c), with("dx"), func(e Engine, t map[string]*Tensor) error {
				return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], nil, nil, t["dy"], t["dx"], nil, nil, nil)
			}, normGradTol},
			opCase{fmt.Sprintf("C%d-res-bwd-dr-only", c), with("dr"), func(e Engine, t map[string]*Tensor) error {
				return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], nil, nil, t["dy"], nil, t["dr"], nil, nil)
			}, normGradTol},
		)
	}
	checkCases(t, cases)
}

// The statistics and the gradients are split reductions: the same bits on
// every run.
func TestInstanceNormGPUDeterministic(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(43, 44))
	for _, size := range []ref.Dims3{{17, 19, 29}, {20, 25, 36}} {
		p := ref.NormParams{N: 2, C: 2, Size: size, Eps: ref.DefaultNormEps, Residual: true, LeakyReLU: true,
			Slope: ref.DefaultSlope}
		c := opCase{
			tensors: []tensorSpec{input("x", normInput(r, p.InputLen())), input("r", randn(r, p.InputLen())),
				input("gamma", randn(r, p.C)), input("beta", randn(r, p.C)), input("dy", randn(r, p.OutputLen())),
				output("y", p.OutputLen()), output("mean", p.StatsLen()), output("invStd", p.StatsLen()),
				output("dx", p.InputLen()), output("dr", p.InputLen()), output("dgamma", p.C), output("dbeta", p.C)},
			run: func(e Engine, t map[string]*Tensor) error {
				if err := e.InstanceNorm3d(p, t["x"], t["r"], t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"]); err != nil {
					return err
				}
				return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], t["mean"], t["invStd"],
					t["dy"], t["dx"], t["dr"], t["dgamma"], t["dbeta"])
			},
		}
		checkBitwiseRepeat(t, g, c, 3)
	}
}

// The saved statistics are the bits the backward pass would compute again:
// with them or without, it returns the same bits.
func TestInstanceNormGPUSavedStats(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(49, 50))
	for _, size := range []ref.Dims3{{3, 5, 7}, {17, 19, 29}, {20, 25, 36}} {
		p := ref.NormParams{N: 2, C: 3, Size: size, Eps: ref.DefaultNormEps, Residual: true, LeakyReLU: true,
			Slope: ref.DefaultSlope}
		tensors := []tensorSpec{input("x", normInput(r, p.InputLen())), input("r", randn(r, p.InputLen())),
			input("gamma", randn(r, p.C)), input("beta", randn(r, p.C)), input("dy", randn(r, p.OutputLen())),
			output("y", p.OutputLen()), output("mean", p.StatsLen()), output("invStd", p.StatsLen()),
			output("dx", p.InputLen()), output("dr", p.InputLen()), output("dgamma", p.C), output("dbeta", p.C)}
		var runs [2]map[string][]float32
		for i, saved := range []bool{false, true} {
			got, _, err := runOn(g, opCase{tensors: tensors, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.InstanceNorm3d(p, t["x"], t["r"], t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"]); err != nil {
					return err
				}
				mean, invStd := t["mean"], t["invStd"]
				if !saved {
					mean, invStd = nil, nil
				}
				return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], mean, invStd,
					t["dy"], t["dx"], t["dr"], t["dgamma"], t["dbeta"])
			}})
			if err != nil {
				t.Fatalf("%v saved %t: %v", size, saved, err)
			}
			runs[i] = got
		}
		for _, name := range []string{"dx", "dr", "dgamma", "dbeta"} {
			for i, v := range runs[1][name] {
				if w := runs[0][name][i]; math.Float32bits(v) != math.Float32bits(w) {
					t.Fatalf("%v: %s[%d] = %v with saved statistics, %v without", size, name, i, v, w)
				}
			}
		}
	}
}

func TestInstanceNormGPUErrors(t *testing.T) {
	g := gpuEngine(t)
	p := ref.NormParams{N: 1, C: 2, Size: ref.Dims3{2, 3, 4}, Eps: ref.DefaultNormEps}
	alloc := allocator(t, g)
	x, y, gamma, beta, st := alloc(p.InputLen()), alloc(p.OutputLen()), alloc(p.C), alloc(p.C), alloc(p.StatsLen())
	short := alloc(p.InputLen() - 1)
	res := p
	res.Residual = true
	one := p
	one.Size = ref.Dims3{1, 1, 1}
	const fwd, bwd = "InstanceNorm3d", "InstanceNorm3dBackward"
	cases := []struct {
		name, op string
		err      error
	}{
		{"short x", fwd, g.InstanceNorm3d(p, short, nil, gamma, beta, y, nil, nil)},
		{"missing gamma", fwd, g.InstanceNorm3d(p, x, nil, nil, beta, y, nil, nil)},
		{"mean length", fwd, g.InstanceNorm3d(p, x, nil, gamma, beta, y, x, nil)},
		{"residual without Residual", fwd, g.InstanceNorm3d(p, x, x, gamma, beta, y, st, st)},
		{"Residual without residual", fwd, g.InstanceNorm3d(res, x, nil, gamma, beta, y, st, st)},
		{"one voxel", fwd, g.InstanceNorm3d(one, gamma, nil, gamma, beta, gamma, st, st)},
		{"short dy", bwd, g.InstanceNorm3dBackward(p, x, nil, gamma, beta, nil, nil, short, x, nil, gamma, beta)},
		{"residual without Residual", bwd, g.InstanceNorm3dBackward(p, x, x, gamma, beta, nil, nil, y, x, nil, gamma, beta)},
		{"residual gradient without Residual", bwd, g.InstanceNorm3dBackward(p, x, nil, gamma, beta, nil, nil, y, x, y, gamma, beta)},
		{"short dr", bwd, g.InstanceNorm3dBackward(res, x, x, gamma, beta, nil, nil, y, x, short, gamma, beta)},
		{"dgamma length", bwd, g.InstanceNorm3dBackward(p, x, nil, gamma, beta, nil, nil, y, x, nil, x, beta)},
		{"mean without invStd", bwd, g.InstanceNorm3dBackward(p, x, nil, gamma, beta, st, nil, y, x, nil, gamma, beta)},
		{"saved mean length", bwd, g.InstanceNorm3dBackward(p, x, nil, gamma, beta, x, st, y, x, nil, gamma, beta)},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		} else if !strings.Contains(c.err.Error(), "ops."+c.op+":") {
			t.Errorf("%s: error %q does not name ops.%s", c.name, c.err, c.op)
		}
	}
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkInstanceNorm times the instance norm with LeakyReLU at the
// DESIGN.md §8 shape (2×32×64³) and at a small one that lavapipe runs
// quickly.
func BenchmarkInstanceNorm(b *testing.B) {
	for _, s := range []struct {
		name string
		p    ref.NormParams
	}{
		{"2x32x64^3", ref.NormParams{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}}},
		{"1x8x16^3", ref.NormParams{N: 1, C: 8, Size: ref.Dims3{16, 16, 16}}},
	} {
		p := s.p
		p.Eps, p.LeakyReLU, p.Slope = ref.DefaultNormEps, true, ref.DefaultSlope
		r := rand.New(rand.NewPCG(45, 46))
		x, gamma, beta, dy := normInput(r, p.InputLen()), randn(r, p.C), randn(r, p.C), randn(r, p.OutputLen())
		b.Run(s.name+"/fwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{
				tensors: []tensorSpec{input("x", x), input("gamma", gamma), input("beta", beta), output("y", p.OutputLen())},
				run: func(e Engine, t map[string]*Tensor) error {
					return e.InstanceNorm3d(p, t["x"], nil, t["gamma"], t["beta"], t["y"], nil, nil)
				}})
		})
		b.Run(s.name+"/fwd+bwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{
				tensors: []tensorSpec{input("x", x), input("gamma", gamma), input("beta", beta), input("dy", dy),
					output("y", p.OutputLen()), output("mean", p.StatsLen()), output("invStd", p.StatsLen()),
					output("dx", p.InputLen()), output("dgamma", p.C), output("dbeta", p.C)},
				run: func(e Engine, t map[string]*Tensor) error {
					if err := e.InstanceNorm3d(p, t["x"], nil, t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"]); err != nil {
						return err
					}
					return e.InstanceNorm3dBackward(p, t["x"], nil, t["gamma"], t["beta"], t["mean"], t["invStd"],
						t["dy"], t["dx"], nil, t["dgamma"], t["dbeta"])
				}})
		})
	}
}

// BenchmarkInstanceNormSmallPlanes compares norm_fused (one dispatch, what
// GPUs take for planes of one statistics chunk) with the chunked passes
// (three) at the deep levels of the reference's network (base 16, 128³,
// batch 2), forward and backward.
func BenchmarkInstanceNormSmallPlanes(b *testing.B) {
	g := gpuEngine(b)
	defer func() { g.fusedNormOn = nil }()
	for _, s := range []struct {
		name string
		p    ref.NormParams
	}{
		{"2x128x16^3", ref.NormParams{N: 2, C: 128, Size: ref.Dims3{16, 16, 16}}},
		{"2x256x8^3", ref.NormParams{N: 2, C: 256, Size: ref.Dims3{8, 8, 8}}},
		{"2x512x4^3", ref.NormParams{N: 2, C: 512, Size: ref.Dims3{4, 4, 4}}},
	} {
		p := s.p
		p.Eps, p.Residual, p.LeakyReLU, p.Slope = ref.DefaultNormEps, true, true, ref.DefaultSlope
		r := rand.New(rand.NewPCG(51, 52))
		n := p.InputLen()
		tensors := []tensorSpec{input("x", normInput(r, n)), input("r", randn(r, n)), input("gamma", randn(r, p.C)),
			input("beta", randn(r, p.C)), input("dy", randn(r, n)), output("y", n), output("mean", p.StatsLen()),
			output("invStd", p.StatsLen()), output("dx", n), output("dr", n), output("dgamma", p.C), output("dbeta", p.C)}
		for _, fused := range []bool{true, false} {
			path := map[bool]string{true: "fused", false: "chunked"}[fused]
			b.Run(s.name+"/"+path, func(b *testing.B) {
				g.fusedNormOn = &fused
				benchCase(b, g, opCase{tensors: tensors, run: func(e Engine, t map[string]*Tensor) error {
					if err := e.InstanceNorm3d(p, t["x"], t["r"], t["gamma"], t["beta"], t["y"], t["mean"], t["invStd"]); err != nil {
						return err
					}
					return e.InstanceNorm3dBackward(p, t["x"], t["r"], t["gamma"], t["beta"], t["mean"], t["invStd"],
						t["dy"], t["dx"], t["dr"], t["dgamma"], t["dbeta"])
				}})
			})
		}
	}
}

// TestDepthwiseNormProfile logs the median GPU time of each kernel of the
// DESIGN.md §8 shapes when U2NET_PROFILE is set (on a real GPU; lavapipe
// would take minutes).
func TestDepthwiseNormProfile(t *testing.T) {
	if os.Getenv("U2NET_PROFILE") == "" {
		t.Skip("set U2NET_PROFILE=1 to profile the §8 shapes")
	}
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(47, 48))
	dp := ref.DepthwiseParams{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}, Kernel: 3}
	np := ref.NormParams{N: 2, C: 32, Size: ref.Dims3{64, 64, 64}, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: ref.DefaultSlope}
	n := dp.InputLen()
	ts := map[string]*Tensor{}
	for name, l := range map[string]int{"x": n, "y": n, "dy": n, "dx": n, "w": dp.WeightLen(), "dw": dp.WeightLen(),
		"b": dp.C, "db": dp.C, "gamma": np.C, "beta": np.C, "dgamma": np.C, "dbeta": np.C,
		"mean": np.StatsLen(), "invStd": np.StatsLen()} {
		x, err := g.Alloc(l)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Write(x, normInput(r, l)); err != nil {
			t.Fatal(err)
		}
		ts[name] = x
		defer g.Free(x)
	}
	if err := g.SetTimed(true); err != nil {
		t.Fatal(err)
	}
	defer g.SetTimed(false)
	for _, c := range []struct {
		name  string
		bytes float64 // the least traffic the work needs
		run   func() error
	}{
		{"depthwise fwd", 8 * float64(n), func() error {
			return g.DepthwiseConv3d(dp, ts["x"], ts["w"], ts["b"], ts["y"])
		}},
		{"depthwise bwd", 16 * float64(n), func() error {
			return g.DepthwiseConv3dBackward(dp, ts["x"], ts["w"], ts["dy"], ts["dx"], ts["dw"], ts["db"])
		}},
		{"norm fwd", 8 * float64(n), func() error {
			return g.InstanceNorm3d(np, ts["x"], nil, ts["gamma"], ts["beta"], ts["y"], ts["mean"], ts["invStd"])
		}},
		{"norm fwd+bwd", 20 * float64(n), func() error {
			if err := g.InstanceNorm3d(np, ts["x"], nil, ts["gamma"], ts["beta"], ts["y"], ts["mean"], ts["invStd"]); err != nil {
				return err
			}
			return g.InstanceNorm3dBackward(np, ts["x"], nil, ts["gamma"], ts["beta"], ts["mean"], ts["invStd"],
				ts["dy"], ts["dx"], nil, ts["dgamma"], ts["dbeta"])
		}},
		{"norm bwd", 12 * float64(n), func() error {
			return g.InstanceNorm3dBackward(np, ts["x"], nil, ts["gamma"], ts["beta"], ts["mean"], ts["invStd"],
				ts["dy"], ts["dx"], nil, ts["dgamma"], ts["dbeta"])
		}},
	} {
		per := map[string][]float64{}
		var totals []float64
		for i := 0; i < 21; i++ {
			if err := c.run(); err != nil {
				t.Fatal(err)
			}
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			total := 0.0
			for j, tm := range g.TakeTimings() {
				ms := float64(tm.Duration) / 1e6
				key := fmt.Sprintf("%d:%s", j, tm.Kernel)
				per[key] = append(per[key], ms)
				total += ms
			}
			totals = append(totals, total)
		}
		med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
		m := med(totals)
		t.Logf("%s: %.4f ms, %.0f GB/s of the minimal traffic", c.name, m, c.bytes/m/1e6)
		keys := make([]string, 0, len(per))
		for k := range per {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.Logf("  %s: %.4f ms", k, med(per[k]))
		}
	}
}

// The pointwise convolution of a normalised input, the normalised tensor
// never built, forward and backward: few channels (pointwise_small and
// pointwise_dw normalise as they read) and many (the GEMM's, from scratch
// memory); with and without the LeakyReLU; rows of vec4s and not. The
// statistics are inputs: any positive invStd will do.
func TestPointwiseNormedGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(55, 56))
	var cases []opCase
	for _, s := range []struct {
		n, cin, cout int
		size         ref.Dims3
		leaky        bool
	}{
		{1, 1, 1, ref.Dims3{1, 1, 3}, true},
		{2, 3, 17, ref.Dims3{3, 4, 5}, true},
		{2, 16, 16, ref.Dims3{4, 6, 8}, false},
		{1, 5, 3, ref.Dims3{17, 19, 23}, true},
		{2, 8, 4, ref.Dims3{16, 16, 20}, true},
		{2, 32, 16, ref.Dims3{3, 4, 8}, true},
		{1, 70, 65, ref.Dims3{2, 3, 5}, true},
	} {
		p := ref.PointwiseParams{N: s.n, Cin: s.cin, Cout: s.cout, Size: s.size}
		np := ref.NormParams{N: s.n, C: s.cin, Size: s.size, Eps: ref.DefaultNormEps, LeakyReLU: s.leaky, Slope: ref.DefaultSlope}
		invStd := randn(r, np.StatsLen())
		for i, v := range invStd {
			invStd[i] = float32(math.Abs(float64(v))) + 0.5
		}
		ts := []tensorSpec{input("x", randScaled(r, p.InputLen(), 3)), input("gamma", randn(r, s.cin)),
			input("beta", randn(r, s.cin)), input("mean", randn(r, np.StatsLen())), input("invStd", invStd),
			input("w", randn(r, p.WeightLen())), input("b", randn(r, p.BiasLen())), input("dy", randn(r, p.OutputLen()))}
		name := fmt.Sprintf("N%d-%d→%d-%v-leaky%t", s.n, s.cin, s.cout, s.size, s.leaky)
		cases = append(cases, opCase{name + "/fwd", append(ts, output("y", p.OutputLen())),
			func(e Engine, t map[string]*Tensor) error {
				return e.PointwiseConv3dNormed(p, np, t["x"], t["gamma"], t["beta"], t["mean"], t["invStd"], t["w"], t["b"], t["y"])
			}, gemmTol},
			opCase{name + "/bwd", append(ts, output("dh", p.InputLen()), output("dw", p.WeightLen()), output("db", p.BiasLen())),
				func(e Engine, t map[string]*Tensor) error {
					return e.PointwiseConv3dNormedBackward(p, np, t["x"], t["gamma"], t["beta"], t["mean"], t["invStd"], t["w"],
						t["dy"], t["dh"], t["dw"], t["db"])
				}, gemmTol},
			opCase{name + "/bwd-db-only", append(ts, output("db", p.BiasLen())),
				func(e Engine, t map[string]*Tensor) error {
					return e.PointwiseConv3dNormedBackward(p, np, t["x"], t["gamma"], t["beta"], t["mean"], t["invStd"], t["w"],
						t["dy"], nil, nil, t["db"])
				}, gemmTol})
	}
	// InstanceNorm3d without y: its statistics alone.
	for _, size := range []ref.Dims3{{2, 3, 4}, {17, 19, 23}} {
		np := ref.NormParams{N: 2, C: 3, Size: size, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: ref.DefaultSlope}
		ts := []tensorSpec{input("x", randScaled(r, np.InputLen(), 3)), input("gamma", randn(r, 3)), input("beta", randn(r, 3)),
			output("mean", np.StatsLen()), output("invStd", np.StatsLen())}
		cases = append(cases, opCase{fmt.Sprintf("stats-only-%v", size), ts, func(e Engine, t map[string]*Tensor) error {
			return e.InstanceNorm3d(np, t["x"], nil, t["gamma"], t["beta"], nil, t["mean"], t["invStd"])
		}, normTol})
	}
	checkCases(t, cases)
}

func TestPointwiseNormedErrors(t *testing.T) {
	p := ref.PointwiseParams{N: 1, Cin: 2, Cout: 3, Size: ref.Dims3{2, 3, 4}}
	np := ref.NormParams{N: 1, C: 2, Size: ref.Dims3{2, 3, 4}, Eps: ref.DefaultNormEps}
	for _, e := range []Engine{gpuEngine(t), NewCPU()} {
		alloc := allocator(t, e)
		x, g, w, y := alloc(p.InputLen()), alloc(2), alloc(p.WeightLen()), alloc(p.OutputLen())
		other := np
		other.C = 3
		residual := np
		residual.Residual = true
		for _, c := range []struct {
			name, op string
			err      error
		}{
			{"channels", "PointwiseConv3dNormed", e.PointwiseConv3dNormed(p, other, x, g, g, g, g, w, nil, y)},
			{"residual", "PointwiseConv3dNormed", e.PointwiseConv3dNormed(p, residual, x, g, g, g, g, w, nil, y)},
			{"short y", "PointwiseConv3dNormed", e.PointwiseConv3dNormed(p, np, x, g, g, g, g, w, nil, x)},
			{"short mean", "PointwiseConv3dNormed", e.PointwiseConv3dNormed(p, np, x, g, g, w, g, w, nil, y)},
			{"short dh", "PointwiseConv3dNormedBackward", e.PointwiseConv3dNormedBackward(p, np, x, g, g, g, g, w, y, y, nil, nil)},
			{"stats-only without stats", "InstanceNorm3d", e.InstanceNorm3d(np, x, nil, g, g, nil, g, nil)},
		} {
			if c.err == nil {
				t.Errorf("%s: %s: accepted", e.Name(), c.name)
			} else if !strings.Contains(c.err.Error(), c.op) {
				t.Errorf("%s: %s: error %q does not name %s", e.Name(), c.name, c.err, c.op)
			}
		}
		if err := e.Sync(); err != nil {
			t.Errorf("%s: Sync after refused calls: %v", e.Name(), err)
		}
	}
}

// BenchmarkPointwiseNormed times an inference pass's instance norm (with
// its LeakyReLU) and the pointwise convolution after it: the normalised
// tensor built against normalised as the convolution reads it. The shapes
// are the network's level 0 at base 8, 32³, and the DESIGN.md §8 shape.
func BenchmarkPointwiseNormed(b *testing.B) {
	g := gpuEngine(b)
	for _, s := range []struct {
		n, c int
		size ref.Dims3
	}{{1, 8, ref.Dims3{32, 32, 32}}, {2, 32, ref.Dims3{64, 64, 64}}} {
		p := ref.PointwiseParams{N: s.n, Cin: s.c, Cout: s.c, Size: s.size}
		np := ref.NormParams{N: s.n, C: s.c, Size: s.size, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: ref.DefaultSlope}
		r := rand.New(rand.NewPCG(57, 58))
		ts := []tensorSpec{input("x", randn(r, p.InputLen())), input("gamma", randn(r, s.c)), input("beta", randn(r, s.c)),
			input("w", randn(r, p.WeightLen())), input("b", randn(r, s.c)), output("h", p.InputLen()),
			output("mean", np.StatsLen()), output("invStd", np.StatsLen()), output("y", p.OutputLen())}
		name := fmt.Sprintf("%dx%dx%d^3", s.n, s.c, s.size[0])
		b.Run(name+"/built", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.InstanceNorm3d(np, t["x"], nil, t["gamma"], t["beta"], t["h"], nil, nil); err != nil {
					return err
				}
				return e.PointwiseConv3d(p, t["h"], t["w"], t["b"], t["y"])
			}})
		})
		b.Run(name+"/normed", func(b *testing.B) {
			benchCase(b, g, opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				if err := e.InstanceNorm3d(np, t["x"], nil, t["gamma"], t["beta"], nil, t["mean"], t["invStd"]); err != nil {
					return err
				}
				return e.PointwiseConv3dNormed(p, np, t["x"], t["gamma"], t["beta"], t["mean"], t["invStd"], t["w"], t["b"], t["y"])
			}})
		})
	}
}
