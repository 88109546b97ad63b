package preprocess

import (
	"fmt"
	"math"

	"github.com/u2net-vk/u2net/u2net/internal/par"
)

// axisMap holds, for each output index along one axis, the two input
// indices it interpolates between and the weight of the second.
type axisMap struct {
	i0, i1 []int
	w      []float32
}

// linearAxis maps n output samples onto in input samples so that both cover
// the same physical extent: output voxel centre o sits at input coordinate
// (o+0.5)·in/n − 0.5, clamped to the outermost input centres.
func linearAxis(in, n int) axisMap {
	m := axisMap{i0: make([]int, n), i1: make([]int, n), w: make([]float32, n)}
	scale := float64(in) / float64(n)
	for o := range n {
		x := (float64(o)+0.5)*scale - 0.5
		x = math.Max(0, math.Min(x, float64(in-1)))
		i := int(math.Floor(x))
		j := min(i+1, in-1)
		m.i0[o], m.i1[o], m.w[o] = i, j, float32(x-float64(i))
	}
	return m
}

// nearestAxis maps each output index to the input voxel whose extent holds
// the output voxel's centre.
func nearestAxis(in, n int) []int {
	idx := make([]int, n)
	scale := float64(in) / float64(n)
	for o := range n {
		idx[o] = min(int(math.Floor((float64(o)+0.5)*scale)), in-1)
	}
	return idx
}

func checkShapes(from, to [3]int, n int) error {
	for i := range 3 {
		if from[i] < 1 || to[i] < 1 {
			return fmt.Errorf("preprocess: resample from %v to %v: sizes must be positive", from, to)
		}
	}
	if want := from[0] * from[1] * from[2]; n != want {
		return fmt.Errorf("preprocess: resample: shape %v needs %d values, got %d", from, want, n)
	}
	return nil
}

// ResampleLinear resamples one channel of shape from = [D, H, W] to shape to
// by trilinear interpolation, keeping the physical extent (voxel edges) of
// the volume: the output spacing is from[i]·spacing[i]/to[i].
func ResampleLinear(src []float32, from, to [3]int) ([]float32, error) {
	if err := checkShapes(from, to, len(src)); err != nil {
		return nil, err
	}
	dst := make([]float32, to[0]*to[1]*to[2])
	if err := resampleLinearInto(dst, src, from, to); err != nil {
		return nil, err
	}
	return dst, nil
}

// resampleLinearInto is ResampleLinear into dst (to's voxels), which the
// last pass writes directly.
func resampleLinearInto(dst, src []float32, from, to [3]int) error {
	if err := checkShapes(from, to, len(src)); err != nil {
		return err
	}
	if len(dst) != to[0]*to[1]*to[2] {
		return fmt.Errorf("preprocess: resampling to %v needs %d values, got %d", to, to[0]*to[1]*to[2], len(dst))
	}
	// Three separable passes, W then H then D; the last writes dst.
	var axes []int
	for axis := 2; axis >= 0; axis-- {
		if from[axis] != to[axis] {
			axes = append(axes, axis)
		}
	}
	if len(axes) == 0 {
		copy(dst, src)
		return nil
	}
	cur, shape := src, from
	for i, axis := range axes {
		next := shape
		next[axis] = to[axis]
		out := dst
		if i < len(axes)-1 {
			out = make([]float32, next[0]*next[1]*next[2])
		}
		linearPass(out, cur, shape, next, axis)
		cur, shape = out, next
	}
	return nil
}

// linearPass resamples src (shape from) along one axis into dst (shape to).
func linearPass(dst, src []float32, from, to [3]int, axis int) {
	m := linearAxis(from[axis], to[axis])
	// stride of the axis in src, and the outer/inner extents around it
	inner := 1
	for a := axis + 1; a < 3; a++ {
		inner *= from[a]
	}
	outer := 1
	for a := 0; a < axis; a++ {
		outer *= from[a]
	}
	nIn, nOut := from[axis], to[axis]
	// Each output row (o, k) is computed alone: the rows spread over the
	// host's cores.
	par.Ranges(outer*nOut, max(1, minResampleVoxels/inner), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o, k := r/nOut, r%nOut
			s := src[o*nIn*inner : (o+1)*nIn*inner]
			a := s[m.i0[k]*inner : m.i0[k]*inner+inner]
			b := s[m.i1[k]*inner : m.i1[k]*inner+inner]
			w := m.w[k]
			row := dst[r*inner : r*inner+inner]
			for i := range row {
				row[i] = a[i] + w*(b[i]-a[i])
			}
		}
	})
}

// minResampleVoxels is the fewest output voxels a goroutine of a resampling
// pass computes.
const minResampleVoxels = 1 << 15

// ResampleNearest resamples a label map of shape from = [D, H, W] to shape to
// by nearest neighbour, keeping the physical extent like ResampleLinear.
func ResampleNearest(src []uint8, from, to [3]int) ([]uint8, error) {
	if err := checkShapes(from, to, len(src)); err != nil {
		return nil, err
	}
	iz, iy, ix := nearestAxis(from[0], to[0]), nearestAxis(from[1], to[1]), nearestAxis(from[2], to[2])
	dst := make([]uint8, to[0]*to[1]*to[2])
	par.Ranges(to[0]*to[1], max(1, minResampleVoxels/to[2]), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			z, y := iz[r/to[1]], iy[r%to[1]]
			row := src[(z*from[1]+y)*from[2]:]
			out := dst[r*to[2] : (r+1)*to[2]]
			for i, x := range ix {
				out[i] = row[x]
			}
		}
	})
	return dst, nil
}

// ResampledShape returns the shape that keeps the physical extent of a
// volume of the given shape and spacing at the target spacing (at least one
// voxel per axis).
func ResampledShape(shape [3]int, spacing, target [3]float64) [3]int {
	var s [3]int
	for i := range 3 {
		s[i] = max(1, int(math.Round(float64(shape[i])*spacing[i]/target[i])))
	}
	return s
}
