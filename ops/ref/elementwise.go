package ref

import (
	"fmt"
	"math"
)

// checkSameLen reports an error unless every named slice has the length of
// the first one and that length is not zero.
func checkSameLen(op string, names []string, lens ...int) error {
	if lens[0] == 0 {
		return fmt.Errorf("%s: %s is empty", op, names[0])
	}
	for i := 1; i < len(lens); i++ {
		if lens[i] != lens[0] {
			return fmt.Errorf("%s: %s has %d elements, want %d like %s", op, names[i], lens[i], lens[0], names[0])
		}
	}
	return nil
}

func checkSlope(op string, slope float64) error {
	if math.IsNaN(slope) || math.IsInf(slope, 0) {
		return fmt.Errorf("%s: slope %g must be finite", op, slope)
	}
	return nil
}

// LeakyReLU computes y = x where x > 0 and y = slope·x elsewhere (PyTorch's
// LeakyReLU; the network uses DefaultSlope). y may be x itself.
func LeakyReLU(slope float64, x, y []float32) error { return leakyReLU(slope, x, y) }

// LeakyReLUBackward computes dx = dy where x > 0 and dx = slope·dy elsewhere
// (at x = 0 too, as PyTorch does). dx may be dy itself.
func LeakyReLUBackward(slope float64, x, dy, dx []float32) error {
	return leakyReLUBackward(slope, x, dy, dx)
}

func leakyReLU[T float](slope float64, x, y []T) error {
	const op = "ref.LeakyReLU"
	if err := firstErr(checkSlope(op, slope), checkSameLen(op, []string{"input", "output"}, len(x), len(y))); err != nil {
		return err
	}
	for i, v := range x {
		if v > 0 {
			y[i] = v
		} else {
			y[i] = T(slope * float64(v))
		}
	}
	return nil
}

func leakyReLUBackward[T float](slope float64, x, dy, dx []T) error {
	const op = "ref.LeakyReLUBackward"
	if err := firstErr(checkSlope(op, slope),
		checkSameLen(op, []string{"input", "output gradient", "input gradient"}, len(x), len(dy), len(dx))); err != nil {
		return err
	}
	for i, v := range x {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = T(slope * float64(dy[i]))
		}
	}
	return nil
}

// Add computes y = a + b elementwise. y may be a or b. Its backward is the
// identity: both inputs receive the output gradient unchanged.
func Add(a, b, y []float32) error { return add(a, b, y) }

func add[T float](a, b, y []T) error {
	const op = "ref.Add"
	if err := checkSameLen(op, []string{"first input", "second input", "output"}, len(a), len(b), len(y)); err != nil {
		return err
	}
	for i := range a {
		y[i] = T(float64(a[i]) + float64(b[i]))
	}
	return nil
}
