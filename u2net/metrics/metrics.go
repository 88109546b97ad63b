// Package metrics scores a predicted label map against a reference one, per
// class: the Dice coefficient and the 95th-percentile Hausdorff distance
// (HD95), the two numbers segmentation papers (and the Medical Segmentation
// Decathlon) report.
//
// Label maps are flat [D][H][W] uint8 volumes (W fastest) with a voxel size
// (D, H, W) in millimetres, usually the reference image's SpacingDHW.
//
// Definitions, for one class c, with A = {voxels of the prediction equal to
// c} and B = {voxels of the reference equal to c}:
//
//   - Dice = 2|A∩B| / (|A|+|B|).
//   - The surface ∂X of a voxel set X is the set of its voxels with at least
//     one of their 6 face neighbours outside X; voxels outside the volume
//     count as outside, so X's voxels on the volume's border are surface
//     voxels (scipy's binary_erosion with a 6-connected structuring element
//     and border value 0, as medpy uses).
//   - The surface distances are d(a, ∂B) = min over b in ∂B of the Euclidean
//     distance ‖(a−b)·spacing‖ for every a in ∂A, together with d(b, ∂A) for
//     every b in ∂B: one pooled list of |∂A|+|∂B| distances in mm.
//   - HD95 is the 95th percentile of that list with linear interpolation
//     between order statistics: sorted x[0..n−1], h = 0.95·(n−1),
//     HD95 = x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1]−x[⌊h⌋]) (numpy.percentile's default).
//
// This is medpy.metric.binary.hd95 with connectivity 1, the implementation
// nnU-Net's evaluation and most Decathlon papers use. Distances are exact:
// they come from an exact Euclidean distance transform (SquaredEDT), not
// from a chamfer approximation.
//
// Edge cases: A and B both empty gives Dice 1 and HD95 0 (a correct
// prediction of absence); exactly one empty gives Dice 0 and HD95 NaN (the
// distance is undefined; JSON writers should report it as null and means
// should skip it).
package metrics

import (
	"fmt"
	"math"
	"slices"
)

// Result holds the scores of one class.
type Result struct {
	Class      int
	Dice       float64
	HD95       float64 // mm; NaN when exactly one of the two is empty
	PredVoxels int     // |A|
	RefVoxels  int     // |B|
}

// Dice returns the Dice coefficient of class c between pred and ref, which
// must have the same length; 1 when neither holds c.
func Dice(pred, ref []uint8, c uint8) (float64, error) {
	if len(pred) != len(ref) {
		return 0, fmt.Errorf("metrics: prediction has %d voxels, reference %d", len(pred), len(ref))
	}
	var na, nb, both int
	for i, p := range pred {
		a, b := p == c, ref[i] == c
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
	return diceOf(na, nb, both), nil
}

func diceOf(na, nb, both int) float64 {
	if na+nb == 0 {
		return 1
	}
	return 2 * float64(both) / float64(na+nb)
}

// HD95 returns the 95th-percentile symmetric surface distance in mm of class
// c between pred and ref (see the package documentation).
func HD95(pred, ref []uint8, shape [3]int, spacing [3]float64, c uint8) (float64, error) {
	rs, err := Compare(pred, ref, shape, spacing, []int{int(c)})
	if err != nil {
		return 0, err
	}
	return rs[0].HD95, nil
}

// Compare scores each of classes (label values 0..255) between pred and ref.
// Work is confined to the bounding box of the class in either map, so small
// structures in large volumes are cheap.
func Compare(pred, ref []uint8, shape [3]int, spacing [3]float64, classes []int) ([]Result, error) {
	if err := checkGrid(len(ref), shape, spacing); err != nil {
		return nil, err
	}
	if len(pred) != len(ref) {
		return nil, fmt.Errorf("metrics: prediction has %d voxels, reference %d", len(pred), len(ref))
	}
	for _, c := range classes {
		if c < 0 || c > 255 {
			return nil, fmt.Errorf("metrics: class %d: labels are 0..255", c)
		}
	}
	stats := boxes(pred, ref, shape)
	out := make([]Result, len(classes))
	var buf []float64
	for i, c := range classes {
		st := &stats[c]
		r := Result{Class: c, PredVoxels: st.na, RefVoxels: st.nb, Dice: diceOf(st.na, st.nb, st.both)}
		switch {
		case st.na == 0 && st.nb == 0:
			r.HD95 = 0
		case st.na == 0 || st.nb == 0:
			r.HD95 = math.NaN()
		default:
			var d []float64
			d, buf = surfaceDistances(pred, ref, shape, spacing, uint8(c), st.box, buf)
			r.HD95 = Percentile(d, 95)
		}
		out[i] = r
	}
	return out, nil
}

// box is a half-open voxel range [lo, hi) per axis (D, H, W).
type box struct{ lo, hi [3]int }

type classStats struct {
	na, nb, both int
	box          box // union bounding box of A and B; valid when na+nb > 0
}

// boxes counts every label value in both maps and finds its bounding box in
// one pass over the volumes.
func boxes(pred, ref []uint8, shape [3]int) []classStats {
	st := make([]classStats, 256)
	for i := range st {
		st[i].box = box{lo: shape, hi: [3]int{0, 0, 0}}
	}
	grow := func(s *classStats, z, y, x int) {
		b := &s.box
		b.lo[0], b.hi[0] = min(b.lo[0], z), max(b.hi[0], z+1)
		b.lo[1], b.hi[1] = min(b.lo[1], y), max(b.hi[1], y+1)
		b.lo[2], b.hi[2] = min(b.lo[2], x), max(b.hi[2], x+1)
	}
	i := 0
	for z := range shape[0] {
		for y := range shape[1] {
			for x := range shape[2] {
				p, r := pred[i], ref[i]
				i++
				if p == 0 && r == 0 {
					// Background is rarely asked for; keep the loop lean.
					st[0].na++
					st[0].nb++
					st[0].both++
					grow(&st[0], z, y, x)
					continue
				}
				st[p].na++
				st[r].nb++
				if p == r {
					st[p].both++
					grow(&st[p], z, y, x)
				} else {
					grow(&st[p], z, y, x)
					grow(&st[r], z, y, x)
				}
			}
		}
	}
	return st
}

// surfaceDistances returns the pooled surface distances of class c (both
// directions), computed inside b, the union bounding box of the class: every
// surface voxel of either map lies in it, so distances between them are the
// same as in the whole grid. buf is reused for the distance map.
func surfaceDistances(pred, ref []uint8, shape [3]int, spacing [3]float64, c uint8, b box, buf []float64) ([]float64, []float64) {
	bs := [3]int{b.hi[0] - b.lo[0], b.hi[1] - b.lo[1], b.hi[2] - b.lo[2]}
	n := bs[0] * bs[1] * bs[2]
	sa := surface(pred, shape, c, b)
	sb := surface(ref, shape, c, b)
	if cap(buf) < n {
		buf = make([]float64, n)
	}
	d := buf[:n]
	var out []float64
	// Distances from ∂A to ∂B, then from ∂B to ∂A.
	for _, dir := range [2][2][]bool{{sb, sa}, {sa, sb}} {
		sites, queries := dir[0], dir[1]
		for i, s := range sites {
			if s {
				d[i] = 0
			} else {
				d[i] = math.Inf(1)
			}
		}
		squaredEDTInPlace(d, bs, spacing)
		for i, q := range queries {
			if q {
				out = append(out, math.Sqrt(d[i]))
			}
		}
	}
	return out, buf
}

// surface marks, on the grid of box b, the voxels of class c in labels
// (shape shape) that have a 6-neighbour not of class c or outside the volume.
// Neighbours outside b but inside the volume are read from labels.
func surface(labels []uint8, shape [3]int, c uint8, b box) []bool {
	bs := [3]int{b.hi[0] - b.lo[0], b.hi[1] - b.lo[1], b.hi[2] - b.lo[2]}
	out := make([]bool, bs[0]*bs[1]*bs[2])
	nd, nh, nw := shape[0], shape[1], shape[2]
	in := func(z, y, x int) bool {
		return z >= 0 && z < nd && y >= 0 && y < nh && x >= 0 && x < nw && labels[(z*nh+y)*nw+x] == c
	}
	i := 0
	for z := b.lo[0]; z < b.hi[0]; z++ {
		for y := b.lo[1]; y < b.hi[1]; y++ {
			for x := b.lo[2]; x < b.hi[2]; x++ {
				if labels[(z*nh+y)*nw+x] == c {
					out[i] = !in(z-1, y, x) || !in(z+1, y, x) || !in(z, y-1, x) ||
						!in(z, y+1, x) || !in(z, y, x-1) || !in(z, y, x+1)
				}
				i++
			}
		}
	}
	return out
}

// Percentile returns the p-th percentile (0..100) of x with linear
// interpolation between the closest order statistics, as numpy.percentile
// does by default; NaN for an empty x. x is sorted in place.
func Percentile(x []float64, p float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	slices.Sort(x)
	h := p / 100 * float64(len(x)-1)
	lo := int(math.Floor(h))
	if lo >= len(x)-1 {
		return x[len(x)-1]
	}
	if lo < 0 {
		return x[0]
	}
	return x[lo] + (h-float64(lo))*(x[lo+1]-x[lo])
}
