package ref

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
)

// newRand returns a generator with a fixed seed, so failures reproduce.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randn returns n normal values, rounded to float32 so that the float32 and
// float64 instantiations see the same numbers.
func randn(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(r.NormFloat64()))
	}
	return v
}

func randLabels(r *rand.Rand, n, classes int) []int32 {
	l := make([]int32, n)
	for i := range l {
		l[i] = int32(r.IntN(classes))
	}
	return l
}

// convert copies a slice into another float type.
func convert[T, U float](a []U) []T {
	if a == nil {
		return nil
	}
	b := make([]T, len(a))
	for i, v := range a {
		b[i] = T(v)
	}
	return b
}

// poisoned returns n NaNs, so that an element a function forgets to write
// shows up in any comparison.
func poisoned[T float](n int) []T {
	v := make([]T, n)
	for i := range v {
		v[i] = T(math.NaN())
	}
	return v
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// fixture is one case folder of testdata/ops, written by make_fixtures.py.
type fixture struct {
	t   *testing.T
	dir string
}

func loadFixture(t *testing.T, name string) *fixture {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "ops", name)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("fixture %s is missing (run testdata/ops/make_fixtures.py): %v", name, err)
	}
	return &fixture{t: t, dir: dir}
}

// has reports whether the case holds the named array.
func (f *fixture) has(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name+".npy"))
	return err == nil
}

// open reads the header of the named array and checks its shape when shape
// is given.
func (f *fixture) open(name string, shape []int) (*npyio.Reader, func()) {
	f.t.Helper()
	file, err := os.Open(filepath.Join(f.dir, name+".npy"))
	if err != nil {
		f.t.Fatalf("fixture %s: %v", f.dir, err)
	}
	r, err := npyio.NewReader(file)
	if err != nil {
		file.Close()
		f.t.Fatalf("fixture %s/%s: %v", f.dir, name, err)
	}
	if shape != nil && !slices.Equal(r.Header.Descr.Shape, shape) {
		file.Close()
		f.t.Fatalf("fixture %s/%s has shape %v, the test's parameters want %v", f.dir, name, r.Header.Descr.Shape, shape)
	}
	return r, func() { file.Close() }
}

// floats loads a float32 or float64 array as float64.
func (f *fixture) floats(name string, shape ...int) []float64 {
	f.t.Helper()
	r, done := f.open(name, shape)
	defer done()
	var err error
	var v []float64
	if strings.Contains(r.Header.Descr.Type, "f4") {
		var v32 []float32
		err = r.Read(&v32)
		v = convert[float64](v32)
	} else {
		err = r.Read(&v)
	}
	if err != nil {
		f.t.Fatalf("fixture %s/%s (%s): %v", f.dir, name, r.Header.Descr.Type, err)
	}
	return v
}

func (f *fixture) int32s(name string, shape ...int) []int32 {
	f.t.Helper()
	r, done := f.open(name, shape)
	defer done()
	var v []int32
	if err := r.Read(&v); err != nil {
		f.t.Fatalf("fixture %s/%s (%s): %v", f.dir, name, r.Header.Descr.Type, err)
	}
	return v
}

// input loads an input array in the element type of the code under test.
func input[T float](f *fixture, name string, shape ...int) []T {
	f.t.Helper()
	return convert[T](f.floats(name, shape...))
}

// results maps output names of a fixture case to computed values.
type results map[string][]float64

// put records an output converted to float64.
func put[T float](r results, name string, v []T) { r[name] = convert[float64](v) }

// checkNoErr fails the test on an error from the code under test.
func checkNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
