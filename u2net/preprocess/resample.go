package preprocess

import (
	"fmt"
	"math"
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
	if from == to {
		return append([]float32(nil), src...), nil
	}
	// Three separable passes, W then H then D.
	cur, shape := src, from
	for axis := 2; axis >= 0; axis-- {
		if shape[axis] == to[axis] {
			continue
		}
		next := shape
		next[axis] = to[axis]
		cur = linearPass(cur, shape, next, axis)
		shape = next
	}
	if len(cur) > 0 && &cur[0] == &src[0] {
		cur = append([]float32(nil), cur...)
	}
	return cur, nil
}

func linearPass(src []float32, from, to [3]int, axis int) []float32 {
	m := linearAxis(from[axis], to[axis])
	dst := make([]float32, to[0]*to[1]*to[2])
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
	for o := range outer {
		s := src[o*nIn*inner : (o+1)*nIn*inner]
		d := dst[o*nOut*inner : (o+1)*nOut*inner]
		for k := range nOut {
			a := s[m.i0[k]*inner : m.i0[k]*inner+inner]
			b := s[m.i1[k]*inner : m.i1[k]*inner+inner]
			w := m.w[k]
			row := d[k*inner : k*inner+inner]
			for i := range row {
				row[i] = a[i] + w*(b[i]-a[i])
			}
		}
	}
	return dst
}

// ResampleNearest resamples a label map of shape from = [D, H, W] to shape to
// by nearest neighbour, keeping the physical extent like ResampleLinear.
func ResampleNearest(src []uint8, from, to [3]int) ([]uint8, error) {
	if err := checkShapes(from, to, len(src)); err != nil {
		return nil, err
	}
	iz, iy, ix := nearestAxis(from[0], to[0]), nearestAxis(from[1], to[1]), nearestAxis(from[2], to[2])
	dst := make([]uint8, to[0]*to[1]*to[2])
	i := 0
	for _, z := range iz {
		for _, y := range iy {
			row := src[(z*from[1]+y)*from[2]:]
			for _, x := range ix {
				dst[i] = row[x]
				i++
			}
		}
	}
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
