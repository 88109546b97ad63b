package metrics

import (
	"fmt"
	"math"

	"github.com/u2net-vk/u2net/u2net/internal/par"
)

// SquaredEDT returns, for every voxel of a [D][H][W] grid, the squared
// Euclidean distance in mm² to the nearest voxel where sites is true, with
// voxel size spacing (D, H, W) in mm. Voxels with no site anywhere in the grid
// get +Inf.
//
// It is exact: the separable algorithm of Felzenszwalb and Huttenlocher
// ("Distance transforms of sampled functions", 2012) runs a 1D lower-envelope
// transform along W, then H, then D, each in time linear in the line length,
// with the voxel positions scaled by the spacing of that axis so anisotropic
// grids need no resampling.
func SquaredEDT(sites []bool, shape [3]int, spacing [3]float64) ([]float64, error) {
	if err := checkGrid(len(sites), shape, spacing); err != nil {
		return nil, err
	}
	d := make([]float64, len(sites))
	for i, s := range sites {
		if s {
			d[i] = 0
		} else {
			d[i] = math.Inf(1)
		}
	}
	squaredEDTInPlace(d, shape, spacing)
	return d, nil
}

func checkGrid(n int, shape [3]int, spacing [3]float64) error {
	for a := range 3 {
		if shape[a] < 1 {
			return fmt.Errorf("metrics: shape %v: every axis needs at least one voxel", shape)
		}
		if !(spacing[a] > 0) || math.IsInf(spacing[a], 0) {
			return fmt.Errorf("metrics: spacing %v: want finite positive voxel sizes", spacing)
		}
	}
	if n != shape[0]*shape[1]*shape[2] {
		return fmt.Errorf("metrics: %d voxels do not make shape %v (%d)", n, shape, shape[0]*shape[1]*shape[2])
	}
	return nil
}

// squaredEDTInPlace turns f (0 at sites, +Inf elsewhere, or any sampled
// function) into its squared distance transform.
func squaredEDTInPlace(f []float64, shape [3]int, spacing [3]float64) {
	nd, nh, nw := shape[0], shape[1], shape[2]
	// Along W: lines are contiguous.
	parallelLines(nd*nh, nw, func(line int, s *scratch) {
		transformLine(f[line*nw:(line+1)*nw], 1, nw, spacing[2], s)
	})
	// Along H: stride nw inside each D slab.
	parallelLines(nd*nw, nh, func(line int, s *scratch) {
		z, x := line/nw, line%nw
		transformLine(f[z*nh*nw+x:], nw, nh, spacing[1], s)
	})
	// Along D: stride nh*nw.
	parallelLines(nh*nw, nd, func(line int, s *scratch) {
		transformLine(f[line:], nh*nw, nd, spacing[0], s)
	})
}

// scratch holds the per-worker buffers of the 1D transform.
type scratch struct {
	f, z []float64
	v    []int
}

func newScratch(n int) *scratch {
	return &scratch{f: make([]float64, n), z: make([]float64, n+1), v: make([]int, n)}
}

// parallelLines calls fn for lines 0..lines-1 of length n, split into
// contiguous chunks over the host's cores (at least 8192 values each), each
// chunk with its own scratch.
func parallelLines(lines, n int, fn func(line int, s *scratch)) {
	par.Ranges(lines, max(1, (1<<13)/max(n, 1)), func(lo, hi int) {
		s := newScratch(n)
		for l := lo; l < hi; l++ {
			fn(l, s)
		}
	})
}

// transformLine replaces the n values data[0], data[stride], ... by
// min_q ((sp·(p−q))² + f(q)), the lower envelope of parabolas rooted at the
// finite samples. A line with no finite sample stays +Inf.
func transformLine(data []float64, stride, n int, sp float64, s *scratch) {
	f, z, v := s.f[:n], s.z[:n+1], s.v[:n]
	for i := range n {
		f[i] = data[i*stride]
	}
	k := -1 // index of the rightmost parabola of the envelope
	for q := range n {
		if math.IsInf(f[q], 1) {
			continue
		}
		xq := sp * float64(q)
		hq := f[q] + xq*xq
		var cut float64
		for k >= 0 {
			xv := sp * float64(v[k])
			// Abscissa where the parabolas of v[k] and q intersect.
			cut = (hq - (f[v[k]] + xv*xv)) / (2 * (xq - xv))
			if cut > z[k] {
				break
			}
			k--
		}
		k++
		v[k] = q
		if k == 0 {
			z[k] = math.Inf(-1)
		} else {
			z[k] = cut
		}
	}
	if k < 0 {
		return // no site on this line: everything stays +Inf
	}
	z[k+1] = math.Inf(1)
	j := 0
	for p := range n {
		x := sp * float64(p)
		for z[j+1] < x {
			j++
		}
		dx := x - sp*float64(v[j])
		data[p*stride] = dx*dx + f[v[j]]
	}
}
