package predict

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// keepLargestNaive is KeepLargestComponents by union-find over every pair
// of touching voxels, for comparison.
func keepLargestNaive(labels []uint8, shape [3]int, classes []uint8) []uint8 {
	d, h, w := shape[0], shape[1], shape[2]
	parent := make([]int, len(labels))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			i = parent[i]
		}
		return i
	}
	for z := range d {
		for y := range h {
			for x := range w {
				i := (z*h+y)*w + x
				for dz := -1; dz <= 1; dz++ {
					for dy := -1; dy <= 1; dy++ {
						for dx := -1; dx <= 1; dx++ {
							zz, yy, xx := z+dz, y+dy, x+dx
							if zz < 0 || zz >= d || yy < 0 || yy >= h || xx < 0 || xx >= w {
								continue
							}
							j := (zz*h+yy)*w + xx
							if labels[i] != 0 && labels[j] == labels[i] {
								a, b := find(i), find(j)
								// The smaller root wins: roots are then
								// each component's first voxel.
								parent[max(a, b)] = min(a, b)
							}
						}
					}
				}
			}
		}
	}
	size := map[int]int{}
	for i := range labels {
		if labels[i] != 0 {
			size[find(i)]++
		}
	}
	best := map[uint8]int{} // class → root of its largest component
	for i := range labels {
		c := labels[i]
		if c == 0 || find(i) != i {
			continue
		}
		if r, ok := best[c]; !ok || size[i] > size[r] {
			best[c] = i
		}
	}
	out := slices.Clone(labels)
	for i, c := range labels {
		if c != 0 && slices.Contains(classes, c) && find(i) != best[c] {
			out[i] = 0
		}
	}
	return out
}

func TestKeepLargestComponents(t *testing.T) {
	// Hand-made: class 1 has a 2-voxel blob touching a third voxel only
	// diagonally (one 26-connected component of 3) and a lone voxel;
	// class 2 two lone voxels of one size (the first stays).
	shape := [3]int{3, 4, 5}
	at := func(z, y, x int) int { return (z*4+y)*5 + x }
	labels := make([]uint8, 60)
	labels[at(0, 0, 0)], labels[at(0, 0, 1)], labels[at(1, 1, 2)] = 1, 1, 1
	labels[at(2, 3, 4)] = 1
	labels[at(0, 3, 0)], labels[at(2, 0, 4)] = 2, 2
	want := slices.Clone(labels)
	want[at(2, 3, 4)], want[at(2, 0, 4)] = 0, 0
	got := slices.Clone(labels)
	cleared, err := KeepLargestComponents(got, shape, []uint8{1, 2})
	if err != nil || cleared != 2 || !slices.Equal(got, want) {
		t.Errorf("hand-made map: cleared %d (%v), got %v, want %v", cleared, err, got, want)
	}
	// Class 2 alone: class 1 keeps its lone voxel.
	want[at(2, 3, 4)] = 1
	got = slices.Clone(labels)
	if cleared, err := KeepLargestComponents(got, shape, []uint8{2}); err != nil || cleared != 1 || !slices.Equal(got, want) {
		t.Errorf("class 2 only: cleared %d (%v), got %v, want %v", cleared, err, got, want)
	}

	// Random maps of awkward shapes against union-find.
	r := rand.New(rand.NewPCG(7, 7))
	for _, s := range [][3]int{{1, 1, 1}, {1, 7, 1}, {5, 3, 7}, {9, 11, 13}, {2, 17, 3}} {
		for _, density := range []float64{0.1, 0.3, 0.6} {
			labels := make([]uint8, s[0]*s[1]*s[2])
			for i := range labels {
				if r.Float64() < density {
					labels[i] = uint8(1 + r.IntN(3))
				}
			}
			for _, classes := range [][]uint8{{1, 2, 3}, {3, 1}, {0, 2}} {
				want := keepLargestNaive(labels, s, classes)
				got := slices.Clone(labels)
				if _, err := KeepLargestComponents(got, s, classes); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("shape %v density %g classes %v: differs from union-find", s, density, classes)
				}
			}
		}
	}
	if _, err := KeepLargestComponents(make([]uint8, 5), [3]int{2, 2, 2}, []uint8{1}); err == nil {
		t.Error("labels of the wrong length were accepted")
	}
}
