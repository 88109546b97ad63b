package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// vol is a test helper: a [D][H][W] label volume.
type vol struct {
	shape [3]int
	data  []uint8
}

func newVol(d, h, w int) *vol { return &vol{shape: [3]int{d, h, w}, data: make([]uint8, d*h*w)} }

func (v *vol) set(z, y, x int, c uint8) { v.data[(z*v.shape[1]+y)*v.shape[2]+x] = c }

// fill sets the box [lo, hi) to c.
func (v *vol) fill(lo, hi [3]int, c uint8) *vol {
	for z := lo[0]; z < hi[0]; z++ {
		for y := lo[1]; y < hi[1]; y++ {
			for x := lo[2]; x < hi[2]; x++ {
				v.set(z, y, x, c)
			}
		}
	}
	return v
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

func TestCompareHandComputed(t *testing.T) {
	cube := func(lo [3]int) *vol {
		return newVol(10, 10, 10).fill(lo, [3]int{lo[0] + 4, lo[1] + 4, lo[2] + 4}, 1)
	}
	iso := [3]float64{1, 1, 1}
	cases := []struct {
		name      string
		pred, ref *vol
		spacing   [3]float64
		class     int
		dice, hd  float64
	}{
		// A 4³ cube shifted by one voxel: each direction has 56 surface
		// voxels, 16 of them (the face left behind) at distance one voxel
		// and 40 at distance 0. Pooled: 80 zeros, 32 ones; h = 0.95·111 =
		// 105.45 falls among the ones. Dice = 2·48/128.
		{"cube shifted along W", cube([3]int{2, 2, 2}), cube([3]int{2, 2, 3}), iso, 1, 0.75, 1},
		{"cube shifted along W, 2.5 mm", cube([3]int{2, 2, 2}), cube([3]int{2, 2, 3}), [3]float64{1, 1, 2.5}, 1, 0.75, 2.5},
		{"cube shifted along D, 3 mm", cube([3]int{2, 2, 2}), cube([3]int{3, 2, 2}), [3]float64{3, 0.5, 0.5}, 1, 0.75, 3},
		{"cube shifted along H, anisotropic", cube([3]int{2, 2, 2}), cube([3]int{2, 3, 2}), [3]float64{5, 0.7, 0.8}, 1, 0.75, 0.7},
		{"identical cubes", cube([3]int{1, 2, 3}), cube([3]int{1, 2, 3}), iso, 1, 1, 0},
		// Single voxels at (0,0,0) and (1,2,3): distance
		// sqrt((1·2)² + (2·1)² + (3·0.5)²) both ways.
		{"single voxels, anisotropic",
			newVol(3, 4, 5).fill([3]int{0, 0, 0}, [3]int{1, 1, 1}, 1),
			newVol(3, 4, 5).fill([3]int{1, 2, 3}, [3]int{2, 3, 4}, 1),
			[3]float64{2, 1, 0.5}, 1, 0, math.Sqrt(4 + 4 + 2.25)},
		{"same single voxel", newVol(3, 3, 3).fill([3]int{1, 1, 1}, [3]int{2, 2, 2}, 2),
			newVol(3, 3, 3).fill([3]int{1, 1, 1}, [3]int{2, 2, 2}, 2), iso, 2, 1, 0},
		{"both empty", newVol(4, 4, 4), newVol(4, 4, 4), iso, 1, 1, 0},
		{"prediction empty", newVol(4, 4, 4), newVol(4, 4, 4).fill([3]int{0, 0, 0}, [3]int{1, 1, 1}, 1), iso, 1, 0, math.NaN()},
		{"reference empty", newVol(4, 4, 4).fill([3]int{0, 0, 0}, [3]int{2, 2, 2}, 3), newVol(4, 4, 4), iso, 3, 0, math.NaN()},
		// Background is a class like any other: the complement of a 2³
		// cube in the corner of a 4³ volume (56 voxels) against the whole
		// volume (64). HD95 -1 means: take it from bruteHD95.
		{"background", newVol(4, 4, 4).fill([3]int{0, 0, 0}, [3]int{2, 2, 2}, 1), newVol(4, 4, 4), iso, 0, 2 * 56.0 / 120, -1},
	}
	for _, c := range cases {
		if c.hd == -1 {
			c.hd = bruteHD95(c.pred, c.ref, c.spacing, uint8(c.class))
		}
		rs, err := Compare(c.pred.data, c.ref.data, c.pred.shape, c.spacing, []int{c.class})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		r := rs[0]
		if !near(r.Dice, c.dice) || !near(r.HD95, c.hd) {
			t.Errorf("%s: Dice %v HD95 %v, want %v and %v", c.name, r.Dice, r.HD95, c.dice, c.hd)
		}
		d, err := Dice(c.pred.data, c.ref.data, uint8(c.class))
		if err != nil || !near(d, c.dice) {
			t.Errorf("%s: Dice() = %v, %v", c.name, d, err)
		}
		h, err := HD95(c.pred.data, c.ref.data, c.pred.shape, c.spacing, uint8(c.class))
		if err != nil || !near(h, c.hd) {
			t.Errorf("%s: HD95() = %v, %v", c.name, h, err)
		}
	}
}

// bruteHD95 computes HD95 straight from the definition: surfaces by looking
// at the six neighbours, distances between every pair of surface voxels.
func bruteHD95(pred, ref *vol, sp [3]float64, c uint8) float64 {
	sh := pred.shape
	surf := func(v *vol) [][3]int {
		var out [][3]int
		at := func(z, y, x int) bool {
			if z < 0 || y < 0 || x < 0 || z >= sh[0] || y >= sh[1] || x >= sh[2] {
				return false
			}
			return v.data[(z*sh[1]+y)*sh[2]+x] == c
		}
		for z := range sh[0] {
			for y := range sh[1] {
				for x := range sh[2] {
					if !at(z, y, x) {
						continue
					}
					nbrs := [6][3]int{{z - 1, y, x}, {z + 1, y, x}, {z, y - 1, x}, {z, y + 1, x}, {z, y, x - 1}, {z, y, x + 1}}
					for _, n := range nbrs {
						if !at(n[0], n[1], n[2]) {
							out = append(out, [3]int{z, y, x})
							break
						}
					}
				}
			}
		}
		return out
	}
	sa, sb := surf(pred), surf(ref)
	if len(sa) == 0 || len(sb) == 0 {
		return math.NaN()
	}
	dist := func(from, to [][3]int) []float64 {
		var out []float64
		for _, p := range from {
			best := math.Inf(1)
			for _, q := range to {
				var s float64
				for a := range 3 {
					d := float64(p[a]-q[a]) * sp[a]
					s += d * d
				}
				best = math.Min(best, math.Sqrt(s))
			}
			out = append(out, best)
		}
		return out
	}
	all := append(dist(sa, sb), dist(sb, sa)...)
	slices.Sort(all)
	h := 0.95 * float64(len(all)-1)
	i := int(h)
	if i+1 >= len(all) {
		return all[len(all)-1]
	}
	return all[i] + (h-float64(i))*(all[i+1]-all[i])
}

// randomBlobs fills a volume with a few random boxes of classes 1..k.
func randomBlobs(r *rand.Rand, sh [3]int, k int) *vol {
	v := newVol(sh[0], sh[1], sh[2])
	for range 1 + r.IntN(5) {
		var lo, hi [3]int
		for a := range 3 {
			lo[a] = r.IntN(sh[a])
			hi[a] = lo[a] + 1 + r.IntN(sh[a]-lo[a])
		}
		v.fill(lo, hi, uint8(1+r.IntN(k)))
	}
	// Salt: isolated voxels make ragged surfaces.
	for range r.IntN(10) {
		v.set(r.IntN(sh[0]), r.IntN(sh[1]), r.IntN(sh[2]), uint8(r.IntN(k+1)))
	}
	return v
}

func TestCompareBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 60 {
		sh := [3]int{1 + r.IntN(7), 1 + r.IntN(8), 1 + r.IntN(9)}
		sp := [3]float64{0.5 + 3*r.Float64(), 0.5 + 3*r.Float64(), 0.5 + 3*r.Float64()}
		pred, ref := randomBlobs(r, sh, 2), randomBlobs(r, sh, 2)
		rs, err := Compare(pred.data, ref.data, sh, sp, []int{0, 1, 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range rs {
			c := uint8(res.Class)
			na, nb, both := 0, 0, 0
			for i := range pred.data {
				a, b := pred.data[i] == c, ref.data[i] == c
				if a {
					na++
				}
				if b {
					nb++
				}
				if a && b {
					both++
				}
			}
			wantDice := 1.0
			if na+nb > 0 {
				wantDice = 2 * float64(both) / float64(na+nb)
			}
			wantHD := bruteHD95(pred, ref, sp, c)
			if na == 0 && nb == 0 {
				wantHD = 0
			}
			if !near(res.Dice, wantDice) || !near(res.HD95, wantHD) || res.PredVoxels != na || res.RefVoxels != nb {
				t.Errorf("trial %d shape %v spacing %v class %d: got %+v, want Dice %v HD95 %v |A| %d |B| %d",
					trial, sh, sp, c, res, wantDice, wantHD, na, nb)
			}
		}
	}
}

func TestSquaredEDTBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 30 {
		// Large enough on some trials to take the parallel path.
		sh := [3]int{1 + r.IntN(12), 1 + r.IntN(40), 1 + r.IntN(40)}
		sp := [3]float64{0.3 + 4*r.Float64(), 0.3 + 4*r.Float64(), 0.3 + 4*r.Float64()}
		n := sh[0] * sh[1] * sh[2]
		sites := make([]bool, n)
		var pts [][3]int
		density := []float64{0, 0.001, 0.01, 0.2}[trial%4]
		i := 0
		for z := range sh[0] {
			for y := range sh[1] {
				for x := range sh[2] {
					if r.Float64() < density {
						sites[i] = true
						pts = append(pts, [3]int{z, y, x})
					}
					i++
				}
			}
		}
		d, err := SquaredEDT(sites, sh, sp)
		if err != nil {
			t.Fatal(err)
		}
		i = 0
		for z := range sh[0] {
			for y := range sh[1] {
				for x := range sh[2] {
					want := math.Inf(1)
					for _, p := range pts {
						dz, dy, dx := float64(z-p[0])*sp[0], float64(y-p[1])*sp[1], float64(x-p[2])*sp[2]
						want = math.Min(want, dz*dz+dy*dy+dx*dx)
					}
					if !(d[i] == want || math.Abs(d[i]-want) <= 1e-9*want) {
						t.Fatalf("trial %d shape %v: voxel (%d,%d,%d) = %v, want %v", trial, sh, z, y, x, d[i], want)
					}
					i++
				}
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	cases := []struct {
		x    []float64
		p    float64
		want float64
	}{
		{[]float64{4, 1, 3, 2}, 50, 2.5},
		{[]float64{4, 1, 3, 2}, 95, 3.85},
		{[]float64{4, 1, 3, 2}, 100, 4},
		{[]float64{4, 1, 3, 2}, 0, 1},
		{[]float64{7}, 95, 7},
		{nil, 95, math.NaN()},
	}
	for _, c := range cases {
		if got := Percentile(slices.Clone(c.x), c.p); !near(got, c.want) {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.x, c.p, got, c.want)
		}
	}
}

func TestErrors(t *testing.T) {
	a := make([]uint8, 8)
	cases := []struct {
		name    string
		pred    []uint8
		shape   [3]int
		spacing [3]float64
		classes []int
	}{
		{"length mismatch", make([]uint8, 7), [3]int{2, 2, 2}, [3]float64{1, 1, 1}, []int{1}},
		{"shape mismatch", a, [3]int{2, 2, 3}, [3]float64{1, 1, 1}, []int{1}},
		{"zero spacing", a, [3]int{2, 2, 2}, [3]float64{1, 0, 1}, []int{1}},
		{"NaN spacing", a, [3]int{2, 2, 2}, [3]float64{1, math.NaN(), 1}, []int{1}},
		{"bad class", a, [3]int{2, 2, 2}, [3]float64{1, 1, 1}, []int{256}},
		{"empty axis", a, [3]int{0, 2, 2}, [3]float64{1, 1, 1}, []int{1}},
	}
	for _, c := range cases {
		if _, err := Compare(c.pred, a, c.shape, c.spacing, c.classes); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// sphere returns a 256³-style volume with a ball of class 1.
func sphere(n int, centre [3]float64, radius float64) []uint8 {
	v := make([]uint8, n*n*n)
	i := 0
	for z := range n {
		for y := range n {
			for x := range n {
				dz, dy, dx := float64(z)-centre[0], float64(y)-centre[1], float64(x)-centre[2]
				if dz*dz+dy*dy+dx*dx <= radius*radius {
					v[i] = 1
				}
				i++
			}
		}
	}
	return v
}

// TestLargeVolume checks that a realistic case runs in reasonable time and
// that two concentric balls whose radii differ by 10 voxels are 10 mm apart
// (within the voxelisation's ±1).
func TestLargeVolume(t *testing.T) {
	n := 128
	if testing.Short() {
		n = 64
	}
	c := float64(n) / 2
	a := sphere(n, [3]float64{c, c, c}, 0.4*float64(n))
	b := sphere(n, [3]float64{c, c, c}, 0.4*float64(n)-10)
	rs, err := Compare(a, b, [3]int{n, n, n}, [3]float64{1, 1, 1}, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if h := rs[0].HD95; math.Abs(h-10) > 1 {
		t.Errorf("HD95 of concentric balls = %v, want about 10", h)
	}
}

func BenchmarkCompare256(b *testing.B) {
	n := 256
	a := sphere(n, [3]float64{128, 128, 128}, 100)
	r := sphere(n, [3]float64{131, 126, 128}, 96)
	b.ResetTimer()
	for range b.N {
		if _, err := Compare(a, r, [3]int{n, n, n}, [3]float64{1, 0.8, 0.8}, []int{1}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSquaredEDT256(b *testing.B) {
	n := 256
	sites := make([]bool, n*n*n)
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		sites[r.IntN(len(sites))] = true
	}
	b.ResetTimer()
	for range b.N {
		if _, err := SquaredEDT(sites, [3]int{n, n, n}, [3]float64{2.5, 0.7, 0.7}); err != nil {
			b.Fatal(err)
		}
	}
}
