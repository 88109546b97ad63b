package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// coordVolume returns a 3-channel volume whose channels hold each voxel's
// (z, y, x) coordinates, so a pointwise predictor can compute any function
// of position.
func coordVolume(sh [3]int) []float32 {
	vox := sh[0] * sh[1] * sh[2]
	v := make([]float32, 3*vox)
	i := 0
	for z := range sh[0] {
		for y := range sh[1] {
			for x := range sh[2] {
				v[i], v[vox+i], v[2*vox+i] = float32(z), float32(y), float32(x)
				i++
			}
		}
	}
	return v
}

// posProbs is the known function of position: a softmax over three scores.
func posProbs(z, y, x float32) [3]float32 {
	s := [3]float64{0.3 * float64(z), 0.2*float64(y) - 0.1*float64(x), 0.5 + 0.05*float64(x*z)}
	m := math.Max(s[0], math.Max(s[1], s[2]))
	var e [3]float64
	var sum float64
	for k := range 3 {
		e[k] = math.Exp(s[k] - m)
		sum += e[k]
	}
	return [3]float32{float32(e[0] / sum), float32(e[1] / sum), float32(e[2] / sum)}
}

// pointwise is a predictor over coordVolume inputs that returns posProbs of
// each voxel; it is flip-equivariant because it looks at one voxel at a time.
func pointwise(t *testing.T, maxBatch int, calls *int) Predictor {
	return func(batch []float32, n int, p [3]int, out []float32) ([]float32, error) {
		if n > maxBatch {
			t.Errorf("predictor got %d windows, batch is %d", n, maxBatch)
		}
		*calls++
		pv := p[0] * p[1] * p[2]
		if len(batch) != n*3*pv {
			t.Fatalf("batch of %d values for %d windows of %v", len(batch), n, p)
		}
		// The result goes into the buffer Predict hands out, which it
		// must no longer read: poisoned first, so that a buffer handed
		// out while it is still being stitched spoils the result.
		if len(out) != n*3*pv {
			t.Fatalf("out has %d values for %d windows of %v", len(out), n, p)
		}
		for i := range out {
			out[i] = float32(math.NaN())
		}
		for b := range n {
			in, o := batch[b*3*pv:], out[b*3*pv:]
			for i := range pv {
				pr := posProbs(in[i], in[pv+i], in[2*pv+i])
				o[i], o[pv+i], o[2*pv+i] = pr[0], pr[1], pr[2]
			}
		}
		return out, nil
	}
}

func TestStitchedEqualsFunctionOfPosition(t *testing.T) {
	cases := []struct {
		shape [3]int
		opt   Options
	}{
		{[3]int{9, 13, 17}, Options{Patch: [3]int{4, 6, 8}, Overlap: 0.5, Batch: 1}},
		{[3]int{9, 13, 17}, Options{Patch: [3]int{4, 6, 8}, Overlap: 0, Batch: 3}},
		{[3]int{9, 13, 17}, Options{Patch: [3]int{4, 6, 8}, Overlap: 0.75, Batch: 5, Mirror: [3]bool{true, true, true}}},
		{[3]int{5, 20, 11}, Options{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Batch: 2, Mirror: [3]bool{false, true, true}}},
		// Smaller than the patch on every axis: padded and cropped back.
		{[3]int{3, 5, 7}, Options{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Batch: 1, Mirror: [3]bool{true, false, false}}},
		{[3]int{6, 6, 6}, Options{Patch: [3]int{4, 4, 4}, WholeVolume: true, Multiple: [3]int{4, 4, 4}, Batch: 4, Mirror: [3]bool{true, true, true}}},
		{[3]int{1, 1, 1}, DefaultOptions([3]int{2, 2, 2})},
	}
	for _, c := range cases {
		calls := 0
		res, err := Predict(context.Background(), coordVolume(c.shape), [4]int{3, c.shape[0], c.shape[1], c.shape[2]}, 3, pointwise(t, c.opt.Batch, &calls), c.opt)
		if err != nil {
			t.Fatalf("%v %+v: %v", c.shape, c.opt, err)
		}
		size, windows, _ := Plan(c.shape, c.opt)
		if res.Window != size || res.Windows != len(windows) {
			t.Errorf("%v %+v: result says %d windows of %v, the plan %d of %v", c.shape, c.opt, res.Windows, res.Window, len(windows), size)
		}
		jobs := len(windows) * len(flips(c.opt.Mirror))
		if want := (jobs + c.opt.Batch - 1) / c.opt.Batch; calls != want {
			t.Errorf("%v %+v: %d predictor calls, want %d", c.shape, c.opt, calls, want)
		}
		vox := c.shape[0] * c.shape[1] * c.shape[2]
		i := 0
		for z := range c.shape[0] {
			for y := range c.shape[1] {
				for x := range c.shape[2] {
					want := posProbs(float32(z), float32(y), float32(x))
					wantLabel := 0
					for k := range 3 {
						// float32 sums over up to 8 windows × 8 flips.
						if d := res.Probs[k*vox+i] - want[k]; math.Abs(float64(d)) > 1e-5 {
							t.Fatalf("%v %+v: voxel (%d,%d,%d) class %d = %v, want %v", c.shape, c.opt, z, y, x, k, res.Probs[k*vox+i], want[k])
						}
						if want[k] > want[wantLabel] {
							wantLabel = k
						}
					}
					// Ties within rounding could flip the argmax; posProbs has none here.
					if int(res.Labels[i]) != wantLabel {
						t.Fatalf("%v: voxel (%d,%d,%d) label %d, want %d", c.shape, z, y, x, res.Labels[i], wantLabel)
					}
					i++
				}
			}
		}
	}
}

// windowFunc returns a predictor whose output depends on the whole window
// and on the position inside it (not flip-equivariant): class 1 gets
// x/(W−1) scaled by the window's mean input, class 0 the rest.
func windowFunc(c int) Predictor {
	return func(batch []float32, n int, p [3]int, _ []float32) ([]float32, error) {
		pv := p[0] * p[1] * p[2]
		out := make([]float32, n*2*pv)
		for b := range n {
			in := batch[b*c*pv : (b+1)*c*pv]
			var mean float64
			for _, v := range in {
				mean += float64(v)
			}
			mean /= float64(len(in))
			scale := float32(1 / (1 + math.Abs(mean)))
			for i := range pv {
				x := i % p[2]
				q := scale * float32(x) / float32(max(p[2]-1, 1))
				out[b*2*pv+pv+i] = q
				out[b*2*pv+i] = 1 - q
			}
		}
		return out, nil
	}
}

// Predict hands the predictor at most three buffers for its results, in
// turn, and none whose result is still to be stitched: a predictor faster
// than the stitching, which poisons the buffer it gets before it writes its
// result there, spoils no result.
func TestOutputBufferReusedAfterStitching(t *testing.T) {
	shape := [3]int{40, 40, 40}
	opt := Options{Patch: [3]int{16, 16, 16}, Overlap: 0.5, Batch: 2, Mirror: [3]bool{false, false, true}}
	seen := map[*float32]bool{}
	pred := func(batch []float32, n int, p [3]int, out []float32) ([]float32, error) {
		seen[&out[0]] = true
		for i := range out {
			out[i] = float32(math.NaN())
		}
		pv := p[0] * p[1] * p[2]
		for b := range n {
			o := out[b*2*pv : (b+1)*2*pv]
			for i := range pv {
				o[i], o[pv+i] = 0.25, 0.75
			}
		}
		return out, nil
	}
	res, err := Predict(context.Background(), make([]float32, 40*40*40), [4]int{1, 40, 40, 40}, 2, pred, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Probs {
		want := float32(0.25)
		if i >= len(res.Probs)/2 {
			want = 0.75
		}
		if math.Abs(float64(v-want)) > 1e-6 {
			t.Fatalf("probability %d = %v, want %v", i, v, want)
		}
	}
	if _, windows, _ := Plan(shape, opt); len(seen) > 3 || len(windows) < 20 {
		t.Errorf("%d output buffers for %d windows, want at most 3", len(seen), len(windows))
	}
}

// accumulate adds each window voxel's weighted probabilities as the
// plainest loop over the voxels would, bit for bit, for every flip and for
// windows that reach past the volume on either side of each axis.
func TestAccumulateMatchesPerVoxel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	shape, size, classes := [3]int{6, 7, 9}, [3]int{4, 5, 6}, 3
	vox, pvox := shape[0]*shape[1]*shape[2], size[0]*size[1]*size[2]
	gauss := gaussian(size)
	out := make([]float32, classes*pvox)
	for i := range out {
		out[i] = r.Float32()
	}
	for _, w := range []Window{{0, 0, 0}, {2, 2, 3}, {-2, -3, -4}, {4, 5, 6}, {-1, 4, 7}} {
		for flip := range 8 {
			got, want := make([]float32, classes*vox), make([]float32, classes*vox)
			gotW, wantW := make([]float32, vox), make([]float32, vox)
			for i := range got {
				got[i] = float32(i%5) * 0.1
				want[i] = got[i]
			}
			accumulate(got, gotW, shape, classes, out, w, size, flip, gauss, 0.5)
			for z := range size[0] {
				for y := range size[1] {
					for x := range size[2] {
						gz, gy, gx := w[0]+z, w[1]+y, w[2]+x
						if gz < 0 || gz >= shape[0] || gy < 0 || gy >= shape[1] || gx < 0 || gx >= shape[2] {
							continue
						}
						src := (flipIdx(z, size[0], flip&1 != 0)*size[1]+flipIdx(y, size[1], flip&2 != 0))*size[2] + flipIdx(x, size[2], flip&4 != 0)
						g := gauss[(z*size[1]+y)*size[2]+x] * 0.5
						dst := (gz*shape[1]+gy)*shape[2] + gx
						wantW[dst] += g
						for k := range classes {
							want[k*vox+dst] += g * out[k*pvox+src]
						}
					}
				}
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("window %v, flip %d: sum %d = %v, want %v", w, flip, i, got[i], want[i])
				}
			}
			for i := range wantW {
				if math.Float32bits(gotW[i]) != math.Float32bits(wantW[i]) {
					t.Fatalf("window %v, flip %d: weight %d = %v, want %v", w, flip, i, gotW[i], wantW[i])
				}
			}
		}
	}
}

func TestOneWindowEqualsPlainCall(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	sh := [4]int{2, 4, 6, 8}
	in := make([]float32, sh[0]*sh[1]*sh[2]*sh[3])
	for i := range in {
		in[i] = r.Float32()*4 - 1
	}
	p := windowFunc(2)
	want, _ := p(slices.Clone(in), 1, [3]int{4, 6, 8}, nil)
	for _, opt := range []Options{
		{Patch: [3]int{4, 6, 8}, Overlap: 0.5, Batch: 1},
		{Patch: [3]int{2, 2, 2}, WholeVolume: true, Batch: 1, Multiple: [3]int{2, 2, 2}},
	} {
		res, err := Predict(context.Background(), in, sh, 2, p, opt)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Abs(float64(res.Probs[i]-want[i])) > 1e-6 {
				t.Fatalf("%+v: value %d = %v, plain call %v", opt, i, res.Probs[i], want[i])
			}
		}
	}
}

// TestMirroringAverages checks that flips are applied and undone: with a
// predictor that outputs x/(W−1) in window coordinates, mirroring along W
// averages x/(W−1) and (W−1−x)/(W−1) to 1/2 everywhere, and mirroring along
// the other axes changes nothing.
func TestMirroringAverages(t *testing.T) {
	sh := [4]int{1, 4, 5, 6}
	in := make([]float32, 4*5*6) // zero input: the scale is 1
	for _, c := range []struct {
		mirror [3]bool
		want   func(x int) float32
	}{
		{[3]bool{false, false, true}, func(int) float32 { return 0.5 }},
		{[3]bool{true, true, true}, func(int) float32 { return 0.5 }},
		{[3]bool{true, true, false}, func(x int) float32 { return float32(x) / 5 }},
	} {
		res, err := Predict(context.Background(), in, sh, 2, windowFunc(1), Options{Patch: [3]int{4, 5, 6}, Batch: 3, Mirror: c.mirror})
		if err != nil {
			t.Fatal(err)
		}
		vox := 4 * 5 * 6
		for i := range vox {
			if got, want := res.Probs[vox+i], c.want(i%6); math.Abs(float64(got-want)) > 1e-6 {
				t.Fatalf("mirror %v: voxel %d class 1 = %v, want %v", c.mirror, i, got, want)
			}
		}
	}
}

// boxFilter is a flip-equivariant predictor that is not pointwise: class 1
// is a sigmoid of the 3×3×3 mean of channel 0 (zero outside the window).
// It writes every value of out, the buffer Predict hands it.
func boxFilter(batch []float32, n int, p [3]int, out []float32) ([]float32, error) {
	pv := p[0] * p[1] * p[2]
	for b := range n {
		in := batch[b*pv : (b+1)*pv]
		for z := range p[0] {
			for y := range p[1] {
				for x := range p[2] {
					var s float32
					for dz := -1; dz <= 1; dz++ {
						for dy := -1; dy <= 1; dy++ {
							for dx := -1; dx <= 1; dx++ {
								zz, yy, xx := z+dz, y+dy, x+dx
								if zz >= 0 && zz < p[0] && yy >= 0 && yy < p[1] && xx >= 0 && xx < p[2] {
									s += in[(zz*p[1]+yy)*p[2]+xx]
								}
							}
						}
					}
					q := float32(1 / (1 + math.Exp(-float64(s/27))))
					i := (z*p[1]+y)*p[2] + x
					out[b*2*pv+pv+i], out[b*2*pv+i] = q, 1-q
				}
			}
		}
	}
	return out, nil
}

func TestMirroringEquivariantIsNoOp(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	sh := [4]int{1, 7, 9, 10}
	in := make([]float32, 7*9*10)
	for i := range in {
		in[i] = r.Float32()*6 - 3
	}
	base := Options{Patch: [3]int{4, 6, 6}, Overlap: 0.5, Batch: 4}
	plain, err := Predict(context.Background(), in, sh, 2, boxFilter, base)
	if err != nil {
		t.Fatal(err)
	}
	mir := base
	mir.Mirror = [3]bool{true, true, true}
	m, err := Predict(context.Background(), in, sh, 2, boxFilter, mir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain.Probs {
		if math.Abs(float64(plain.Probs[i]-m.Probs[i])) > 1e-5 {
			t.Fatalf("value %d: %v without mirroring, %v with", i, plain.Probs[i], m.Probs[i])
		}
	}
	if !slices.Equal(plain.Labels, m.Labels) {
		t.Error("labels differ with mirroring")
	}
}

// TestPaddingCentresVolume checks where a small volume sits in the padded
// window and that the crop puts each voxel back.
func TestPaddingCentresVolume(t *testing.T) {
	patch := [3]int{8, 8, 8}
	vol := make([]float32, 3*5*8)
	for i := range vol {
		vol[i] = float32(i + 1) // non-zero, so padding (zero) is visible
	}
	var seen []float32
	identity := func(batch []float32, n int, p [3]int, _ []float32) ([]float32, error) {
		seen = slices.Clone(batch)
		pv := p[0] * p[1] * p[2]
		out := make([]float32, 2*pv)
		copy(out[pv:], batch) // class 1 carries the input through
		return out, nil
	}
	res, err := Predict(context.Background(), vol, [4]int{1, 3, 5, 8}, 2, identity, Options{Patch: patch, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vol {
		if math.Abs(float64(res.Probs[len(vol)+i]-v)) > 1e-6*float64(v) {
			t.Fatalf("voxel %d: %v after crop, want %v", i, res.Probs[len(vol)+i], v)
		}
	}
	// Offsets (8−3)/2 = 2 and (8−5)/2 = 1 before; W fits exactly.
	for z := range 8 {
		for y := range 8 {
			for x := range 8 {
				got := seen[(z*8+y)*8+x]
				var want float32
				if vz, vy := z-2, y-1; vz >= 0 && vz < 3 && vy >= 0 && vy < 5 {
					want = vol[(vz*5+vy)*8+x]
				}
				if got != want {
					t.Fatalf("window voxel (%d,%d,%d) = %v, want %v", z, y, x, got, want)
				}
			}
		}
	}
}

func TestPlan(t *testing.T) {
	cases := []struct {
		n, p    int
		overlap float64
		want    []int
	}{
		{10, 4, 0.5, []int{0, 2, 4, 6}},
		{11, 4, 0.5, []int{0, 2, 4, 5, 7}},
		{10, 4, 0, []int{0, 3, 6}},
		{4, 4, 0.5, []int{0}},
		{3, 8, 0.5, []int{-2}},
		{5, 2, 0.9, []int{0, 1, 2, 3}},
	}
	for _, c := range cases {
		if got := axisStarts(c.n, c.p, c.overlap); !slices.Equal(got, c.want) {
			t.Errorf("axisStarts(%d, %d, %v) = %v, want %v", c.n, c.p, c.overlap, got, c.want)
		}
	}
	// Property: windows start at 0, end flush with the volume, are sorted,
	// and are never further apart than the step allows.
	r := rand.New(rand.NewPCG(3, 3))
	for range 500 {
		p := 1 + r.IntN(64)
		n := p + r.IntN(300)
		ov := math.Floor(r.Float64()*100) / 100 * 0.95
		s := axisStarts(n, p, ov)
		step := int(math.Max(1, math.Floor(float64(p)*(1-ov))))
		if s[0] != 0 || s[len(s)-1] != n-p {
			t.Fatalf("n %d p %d overlap %v: starts %v do not span the axis", n, p, ov, s)
		}
		for i := 1; i < len(s); i++ {
			if d := s[i] - s[i-1]; d < 0 || d > step {
				t.Fatalf("n %d p %d overlap %v: gap %d (step %d) in %v", n, p, ov, d, step, s)
			}
		}
	}
	size, w, err := Plan([3]int{5, 17, 30}, Options{Patch: [3]int{4, 4, 4}, WholeVolume: true, Multiple: [3]int{4, 8, 16}, Batch: 1})
	if err != nil || size != [3]int{8, 24, 32} || len(w) != 1 || w[0] != (Window{-1, -3, -1}) {
		t.Errorf("whole volume: size %v windows %v err %v", size, w, err)
	}
}

func TestErrors(t *testing.T) {
	ok := func(batch []float32, n int, p [3]int, _ []float32) ([]float32, error) {
		return make([]float32, n*2*p[0]*p[1]*p[2]), nil
	}
	short := func(batch []float32, n int, p [3]int, _ []float32) ([]float32, error) { return make([]float32, 3), nil }
	failing := func([]float32, int, [3]int, []float32) ([]float32, error) { return nil, errors.New("device lost") }
	good := Options{Patch: [3]int{2, 2, 2}, Batch: 1, Overlap: 0.5}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name    string
		ctx     context.Context
		in      []float32
		shape   [4]int
		classes int
		pred    Predictor
		opt     Options
		want    string
	}{
		{"nil predictor", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, nil, good, "no predictor"},
		{"input length", context.Background(), make([]float32, 7), [4]int{1, 2, 2, 2}, 2, ok, good, "needs 8 values"},
		{"zero channels", context.Background(), nil, [4]int{0, 2, 2, 2}, 2, ok, good, "channel"},
		{"classes", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 0, ok, good, "classes"},
		{"patch", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, ok, Options{Batch: 1}, "patch"},
		{"overlap", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, ok, Options{Patch: [3]int{2, 2, 2}, Batch: 1, Overlap: 1}, "overlap"},
		{"batch", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, ok, Options{Patch: [3]int{2, 2, 2}}, "batch"},
		{"stride", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, ok, Options{Patch: [3]int{2, 2, 3}, Batch: 1, Multiple: [3]int{1, 1, 2}}, "divisible"},
		{"short output", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, short, good, "returned 3 values"},
		{"predictor error", context.Background(), make([]float32, 8), [4]int{1, 2, 2, 2}, 2, failing, good, "device lost"},
		{"cancelled", cancelled, make([]float32, 8), [4]int{1, 2, 2, 2}, 2, ok, good, "canceled"},
	}
	for _, c := range cases {
		_, err := Predict(c.ctx, c.in, c.shape, c.classes, c.pred, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

func TestSoftmax(t *testing.T) {
	logits := func(batch []float32, n int, p [3]int, _ []float32) ([]float32, error) {
		// Two windows of one voxel, three classes; large values test
		// stability.
		return []float32{1, 2, 3, 1000, 1002, 1001}, nil
	}
	out, err := Softmax(logits, 3)([]float32{0, 0}, 2, [3]int{1, 1, 1}, make([]float32, 6))
	if err != nil {
		t.Fatal(err)
	}
	e := func(a, b, c float64) []float64 {
		s := math.Exp(a) + math.Exp(b) + math.Exp(c)
		return []float64{math.Exp(a) / s, math.Exp(b) / s, math.Exp(c) / s}
	}
	want := append(e(1, 2, 3), e(0, 2, 1)...)
	for i := range want {
		if math.Abs(float64(out[i])-want[i]) > 1e-6 {
			t.Fatalf("softmax value %d = %v, want %v", i, out[i], want[i])
		}
	}
	if _, err := Softmax(logits, 4)([]float32{0, 0}, 2, [3]int{1, 1, 1}, make([]float32, 8)); err == nil {
		t.Error("wrong class count accepted")
	}
}

// The host loops split the windows' planes over the cores: a volume large
// enough for several workers gives the same bits as one worker.
func TestParallelStitchingMatchesSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	sh := [4]int{2, 37, 70, 66}
	in := make([]float32, sh[0]*sh[1]*sh[2]*sh[3])
	for i := range in {
		in[i] = r.Float32()*4 - 1
	}
	opt := Options{Patch: [3]int{24, 64, 64}, Overlap: 0.5, Batch: 2, Mirror: [3]bool{true, false, true}}
	run := func(procs int) *Result {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		res, err := Predict(context.Background(), in, sh, 2, windowFunc(2), opt)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	serial, parallel := run(1), run(4)
	for i := range serial.Probs {
		if math.Float32bits(serial.Probs[i]) != math.Float32bits(parallel.Probs[i]) {
			t.Fatalf("probability %d: %v with one worker, %v with four", i, serial.Probs[i], parallel.Probs[i])
		}
	}
	if !slices.Equal(serial.Labels, parallel.Labels) {
		t.Error("labels differ between one worker and four")
	}
}

// benchPredict predicts a volume of s³ with windows of p³ (and their
// mirrors along W) in batches of 2, for 2 classes, with a predictor that
// waits wait per batch, as the host waits for a GPU, and returns a fixed
// result.
func benchPredict(b *testing.B, s, p int, wait time.Duration) {
	in := make([]float32, s*s*s)
	for i := range in {
		in[i] = float32(i%7) * 0.1
	}
	probs := make([]float32, 2*2*p*p*p)
	for i := range probs {
		probs[i] = float32(i%5) * 0.2
	}
	pred := func(x []float32, n int, q [3]int, _ []float32) ([]float32, error) {
		time.Sleep(wait)
		return probs[:n*2*q[0]*q[1]*q[2]], nil
	}
	opt := Options{Patch: [3]int{p, p, p}, Overlap: 0.5, Batch: 2, Mirror: [3]bool{false, false, true}}
	for b.Loop() {
		if _, err := Predict(context.Background(), in, [4]int{1, s, s, s}, 2, pred, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredictHost times the host's share of a prediction: cutting the
// windows, stitching their probabilities and the labels, at the reference's
// patch (one 128³ window and its mirror along W); the predictor costs
// nothing.
func BenchmarkPredictHost(b *testing.B) { benchPredict(b, 128, 128, 0) }

// BenchmarkPredictOverlap predicts 8 windows of 64³ (and their mirrors) in
// 8 batches whose predictor waits 0 or 20 ms each: the host's cutting and
// stitching overlap the waits, so the second takes less than the first
// plus the waits.
func BenchmarkPredictOverlap(b *testing.B) {
	for _, wait := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("device-%v", wait), func(b *testing.B) { benchPredict(b, 96, 64, wait) })
	}
}
