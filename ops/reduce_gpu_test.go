package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

func TestChannelSum(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	var cases []opCase
	for _, s := range []struct {
		n, c int
		size ref.Dims3
	}{
		{1, 1, ref.Dims3{1, 1, 1}},
		{3, 17, ref.Dims3{1, 5, 7}},
		{1, 3, ref.Dims3{13, 1, 9}},
		{2, 64, ref.Dims3{3, 3, 3}},
		{3, 2, ref.Dims3{17, 19, 23}}, // several segments per channel
		// Planes of a multiple of four voxels (vec4 loads): one vec4 per
		// plane, several planes per segment, several segments per plane.
		{5, 1, ref.Dims3{1, 1, 4}},
		{3, 5, ref.Dims3{4, 6, 7}},
		{2, 2, ref.Dims3{16, 16, 33}},
	} {
		s := s
		x := randScaled(r, s.n*s.c*s.size.Voxels(), 3)
		cases = append(cases, opCase{
			name:    fmt.Sprintf("N%d-C%d-%v", s.n, s.c, s.size),
			tensors: []tensorSpec{input("x", x), output("sums", s.c)},
			run: func(e Engine, t map[string]*Tensor) error {
				return e.ChannelSum(s.n, s.c, s.size, t["x"], t["sums"])
			},
			// fp32 partial sums over up to ~10⁴ terms of N(0, 9) values,
			// compared with float64 sums: error ~ √terms·ε relative.
			tol: 2e-6,
		})
	}
	checkCases(t, cases)
}

func TestChannelSumDeterministic(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(23, 24))
	size := ref.Dims3{17, 19, 23}
	x := randn(r, 2*5*size.Voxels())
	var first []float32
	for run := 0; run < 3; run++ {
		got, _, err := runOn(g, opCase{
			tensors: []tensorSpec{input("x", x), output("sums", 5)},
			run:     func(e Engine, t map[string]*Tensor) error { return e.ChannelSum(2, 5, size, t["x"], t["sums"]) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got["sums"]
			continue
		}
		for i, v := range got["sums"] {
			if math.Float32bits(v) != math.Float32bits(first[i]) {
				t.Fatalf("run %d: sums[%d] = %v, first run %v", run, i, v, first[i])
			}
		}
	}
}

func TestChannelSumErrors(t *testing.T) {
	g := gpuEngine(t)
	x, _ := g.Alloc(30)
	s, _ := g.Alloc(3)
	defer g.Free(x)
	defer g.Free(s)
	for _, err := range []error{
		g.ChannelSum(1, 3, ref.Dims3{2, 2, 2}, x, s),
		g.ChannelSum(1, 3, ref.Dims3{0, 2, 5}, x, s),
		g.ChannelSum(1, 3, ref.Dims3{1, 2, 5}, x, nil),
	} {
		if err == nil {
			t.Error("bad arguments accepted")
		}
	}
}
