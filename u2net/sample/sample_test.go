package sample

import (
	"reflect"
	"slices"
	"testing"

	"github.com/u2net-vk/u2net/u2net/preprocess"
)

// testCase returns a two-channel case whose image encodes each voxel's
// position (channel 1 is the negation), with a small foreground cube.
func testCase(id string, shape [3]int, fgAt [3]int, fgSize int) *preprocess.Case {
	n := shape[0] * shape[1] * shape[2]
	c := &preprocess.Case{ID: id, Shape: [4]int{2, shape[0], shape[1], shape[2]}, Image: make([]float32, 2*n), Label: make([]uint8, n)}
	for z := range shape[0] {
		for y := range shape[1] {
			for x := range shape[2] {
				i := (z*shape[1]+y)*shape[2] + x
				v := float32(1 + z*10000 + y*100 + x)
				c.Image[i], c.Image[n+i] = v, -v
				if z >= fgAt[0] && z < fgAt[0]+fgSize && y >= fgAt[1] && y < fgAt[1]+fgSize && x >= fgAt[2] && x < fgAt[2]+fgSize {
					c.Label[i] = uint8(1 + (x-fgAt[2])%2)
				}
			}
		}
	}
	return c
}

func TestExtractMatchesVolume(t *testing.T) {
	c := testCase("a", [3]int{6, 7, 8}, [3]int{1, 1, 1}, 2)
	size := [3]int{4, 9, 5}
	for _, start := range [][3]int{{0, 0, 0}, {2, -1, 3}, {-3, -2, -4}, {5, 6, 7}, {10, 0, 0}} {
		p := Extract(c, Location{Start: start}, size)
		pn := size[0] * size[1] * size[2]
		for z := range size[0] {
			for y := range size[1] {
				for x := range size[2] {
					i := (z*size[1]+y)*size[2] + x
					sz, sy, sx := start[0]+z, start[1]+y, start[2]+x
					var want float32
					var wantL uint8
					if sz >= 0 && sz < 6 && sy >= 0 && sy < 7 && sx >= 0 && sx < 8 {
						j := (sz*7+sy)*8 + sx
						want, wantL = c.Image[j], c.Label[j]
					}
					if p.Image[i] != want || p.Image[pn+i] != -want || p.Label[i] != wantL {
						t.Fatalf("start %v voxel %d,%d,%d: got %v/%v/%d, want %v/%d", start, z, y, x, p.Image[i], p.Image[pn+i], p.Label[i], want, wantL)
					}
				}
			}
		}
	}
}

func TestForegroundOversampling(t *testing.T) {
	cases := []*preprocess.Case{
		testCase("big", [3]int{40, 40, 40}, [3]int{30, 5, 20}, 2),
		testCase("small", [3]int{6, 20, 20}, [3]int{2, 15, 15}, 1), // smaller than the patch along D
		testCase("none", [3]int{20, 20, 20}, [3]int{0, 0, 0}, 0),
	}
	size := [3]int{8, 12, 12}
	for _, batch := range []int{2, 3, 4, 6} {
		s, err := New(cases, size, Options{Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		want := (batch + 2) / 3
		for step := range 50 {
			fg := 0
			for _, p := range s.Batch(step, batch) {
				if p.Shape != [4]int{2, 8, 12, 12} || len(p.Label) != 8*12*12 {
					t.Fatalf("patch shape %v", p.Shape)
				}
				has := false
				for _, l := range p.Label {
					if l > 0 {
						has = true
						break
					}
				}
				if p.Foreground && !has {
					t.Fatalf("step %d: foreground patch %+v holds no foreground", step, p.Location)
				}
				if has {
					fg++
				}
			}
			if fg < want {
				t.Fatalf("batch %d step %d: %d foreground patches, want at least %d", batch, step, fg, want)
			}
		}
	}
	// Batches of one: about a third are foreground patches.
	s, _ := New(cases, size, Options{Seed: 3})
	fg := 0
	for step := range 600 {
		if s.Locations(step, 1)[0].Foreground {
			fg++
		}
	}
	if fg < 150 || fg > 250 {
		t.Errorf("batch of one: %d/600 foreground patches", fg)
	}
}

func TestDeterministic(t *testing.T) {
	cases := []*preprocess.Case{testCase("a", [3]int{20, 20, 20}, [3]int{3, 3, 3}, 3)}
	a, _ := New(cases, [3]int{8, 8, 8}, Options{Seed: 42})
	b, _ := New(cases, [3]int{8, 8, 8}, Options{Seed: 42})
	c, _ := New(cases, [3]int{8, 8, 8}, Options{Seed: 43})
	// Drawing in another order gives the same batches.
	for _, step := range []int{5, 1, 3} {
		b.Batch(step, 4)
	}
	same, diff := true, false
	for step := range 6 {
		la, lb, lc := a.Locations(step, 4), b.Locations(step, 4), c.Locations(step, 4)
		same = same && reflect.DeepEqual(la, lb)
		diff = diff || !reflect.DeepEqual(la, lc)
	}
	if !same || !diff {
		t.Fatalf("same seed equal: %v; other seed differs: %v", same, diff)
	}
	if !reflect.DeepEqual(a.Batch(9, 3), b.Batch(9, 3)) {
		t.Fatal("patches differ for the same seed")
	}
}

func TestNewErrors(t *testing.T) {
	c := testCase("a", [3]int{4, 4, 4}, [3]int{0, 0, 0}, 1)
	if _, err := New(nil, [3]int{2, 2, 2}, Options{}); err == nil {
		t.Error("no cases accepted")
	}
	if _, err := New([]*preprocess.Case{c}, [3]int{2, 0, 2}, Options{}); err == nil {
		t.Error("zero patch size accepted")
	}
	if _, err := New([]*preprocess.Case{c}, [3]int{2, 2, 2}, Options{ForegroundFraction: 1.5}); err == nil {
		t.Error("fraction above 1 accepted")
	}
	bad := *c
	bad.Label = bad.Label[:10]
	if _, err := New([]*preprocess.Case{&bad}, [3]int{2, 2, 2}, Options{}); err == nil {
		t.Error("inconsistent case accepted")
	}
}

func TestSpread(t *testing.T) {
	v := make([]int32, 100)
	for i := range v {
		v[i] = int32(3 * i)
	}
	for _, c := range []struct {
		n    int
		want []int32
	}{
		{100, v}, {200, v},
		{4, []int32{0, 75, 150, 225}},
		{3, []int32{0, 99, 198}},
		{1, []int32{0}},
	} {
		if got := spread(v, c.n); !slices.Equal(got, c.want) {
			t.Errorf("spread of 100 to %d: %v, want %v", c.n, got, c.want)
		}
	}
}

// A class with more voxels than a sampler lists still centres every
// foreground patch on one of its voxels.
func TestLargeForegroundCapped(t *testing.T) {
	shape := [3]int{40, 50, 50} // 100 000 voxels, the back 70% foreground
	n := shape[0] * shape[1] * shape[2]
	c := &preprocess.Case{ID: "big", Shape: [4]int{1, shape[0], shape[1], shape[2]}, Image: make([]float32, n), Label: make([]uint8, n)}
	for i := 3 * n / 10; i < n; i++ {
		c.Label[i] = 1
	}
	s, err := New([]*preprocess.Case{c}, [3]int{8, 8, 8}, Options{Seed: 1, ForegroundFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.fg[0][0]); got != maxForegroundVoxels {
		t.Fatalf("%d foreground voxels listed, want %d", got, maxForegroundVoxels)
	}
	for step := range 50 {
		for _, l := range s.Locations(step, 2) {
			v := l.Voxel
			if !l.Foreground || c.Label[(v[0]*shape[1]+v[1])*shape[2]+v[2]] != 1 {
				t.Fatalf("step %d: location %+v is not centred on the foreground", step, l)
			}
		}
	}
}
