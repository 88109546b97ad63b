package ref

import (
	"fmt"
	"math"
	"strings"
)

// maxDim bounds every single size, so that sums of a size and its padding
// cannot overflow int; products of sizes are checked separately.
const maxDim = math.MaxInt32

// Dims3 holds one value per spatial axis, in the order D, H, W.
type Dims3 [3]int

// Voxels returns the product of the three values.
func (d Dims3) Voxels() int { return d[0] * d[1] * d[2] }

func (d Dims3) String() string { return fmt.Sprintf("%d×%d×%d", d[0], d[1], d[2]) }

// checkPositive reports an error naming what when any value is not in [1, maxDim].
func (d Dims3) checkPositive(what string) error {
	for _, v := range d {
		if v <= 0 || v > maxDim {
			return fmt.Errorf("%s %v must be positive and at most %d on every axis", what, d, maxDim)
		}
	}
	return nil
}

// checkNonNegative reports an error naming what when any value is not in [0, maxDim].
func (d Dims3) checkNonNegative(what string) error {
	for _, v := range d {
		if v < 0 || v > maxDim {
			return fmt.Errorf("%s %v must be non-negative and at most %d on every axis", what, d, maxDim)
		}
	}
	return nil
}

// checkSize reports an error when a scalar size is not in [1, maxDim].
func checkSize(name string, v int) error {
	if v <= 0 || v > maxDim {
		return fmt.Errorf("%s = %d must be positive and at most %d", name, v, maxDim)
	}
	return nil
}

// product multiplies non-negative sizes and reports whether the result fits in int.
func product(dims ...int) (int, bool) {
	p := 1
	for _, d := range dims {
		if d < 0 {
			return 0, false
		}
		if d != 0 && p > math.MaxInt/d {
			return 0, false
		}
		p *= d
	}
	return p, true
}

// checkCount reports an error when the element count of the tensor name of
// shape dims overflows int.
func checkCount(name string, dims ...int) error {
	if _, ok := product(dims...); !ok {
		return fmt.Errorf("%s of shape %s has more elements than an int can count", name, dimsString(dims))
	}
	return nil
}

func dimsString(dims []int) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "×")
}

// shape5 is the list of sizes of an NCDHW tensor.
func shape5(n, c int, s Dims3) []int { return []int{n, c, s[0], s[1], s[2]} }

// checkLen reports an error when a slice of length got does not have the
// element count of the shape dims. The message names the operation, the
// tensor and the shape.
func checkLen(op, name string, got int, dims ...int) error {
	want, _ := product(dims...)
	if got == want {
		return nil
	}
	if len(dims) == 1 {
		return fmt.Errorf("%s: %s has %d elements, want %d", op, name, got, want)
	}
	return fmt.Errorf("%s: %s has %d elements, want %s = %d", op, name, got, dimsString(dims), want)
}

// checkOptLen is checkLen for a slice that may also be absent (length 0).
func checkOptLen(op, name string, got int, dims ...int) error {
	if got == 0 {
		return nil
	}
	return checkLen(op, name, got, dims...)
}

// wrap prefixes a validation error with the operation name.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// float is the element type of the generic kernels: the exported functions
// use float32, and the tests run the same code in float64.
type float interface{ ~float32 | ~float64 }

// store converts a float64 accumulator buffer into the output slice.
func store[T float](dst []T, src []float64) {
	for i, v := range src {
		dst[i] = T(v)
	}
}
