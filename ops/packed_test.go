package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// packedLens are awkward part lengths: single elements, primes, a multiple
// of 4 and one spanning several workgroups.
var packedLens = []int{1, 17, 3, 1031, 4, 1}

// packedEngines are the engines AllocPacked is tested on.
func packedEngines(t *testing.T) []Engine { return []Engine{NewCPU(), gpuEngine(t)} }

func TestAllocPackedLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, e := range packedEngines(t) {
		t.Run(e.Name(), func(t *testing.T) {
			whole, parts, err := e.AllocPacked(packedLens)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Free(whole)
			if whole.Len()%4 != 0 {
				t.Errorf("whole has %d elements, want a multiple of 4", whole.Len())
			}
			// Zero-filled: padding included.
			got := make([]float32, whole.Len())
			if err := e.Read(whole, got); err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if v != 0 {
					t.Fatalf("whole[%d] = %g after AllocPacked, want 0", i, v)
				}
			}
			// Each part written on its own lands at its own place in the
			// whole, at increasing, non-overlapping offsets.
			data := make([][]float32, len(parts))
			for i, p := range parts {
				if p.Len() != packedLens[i] {
					t.Fatalf("part %d has %d elements, want %d", i, p.Len(), packedLens[i])
				}
				data[i] = randn(r, p.Len())
				if err := e.Write(p, data[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Read(whole, got); err != nil {
				t.Fatal(err)
			}
			at := 0
			for i, d := range data {
				off := indexOf(got[at:], d)
				if off < 0 {
					t.Fatalf("part %d's data is not in the whole after offset %d", i, at)
				}
				at += off + len(d)
			}
			nonzero := 0
			for _, v := range got {
				if v != 0 {
					nonzero++
				}
			}
			if total := sumLens(packedLens); nonzero != total {
				t.Errorf("%d nonzero elements in the whole, want the parts' %d: padding was written", nonzero, total)
			}
		})
	}
}

func indexOf(hay, needle []float32) int {
	for i := 0; i+len(needle) <= len(hay); i++ {
		match := true
		for j := range needle {
			if math.Float32bits(hay[i+j]) != math.Float32bits(needle[j]) {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

func sumLens(lens []int) int {
	s := 0
	for _, n := range lens {
		s += n
	}
	return s
}

// TestAllocPackedKernels runs kernels on parts (views at an offset on the
// GPU) and on the whole: an optimiser step on the whole equals one step per
// part bit for bit, and a kernel writing one part leaves its neighbours.
func TestAllocPackedKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	p := ref.AdamParams{LR: 1e-2, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.05}
	values := make([][]float32, len(packedLens))
	grads := make([][]float32, len(packedLens))
	for i, n := range packedLens {
		values[i], grads[i] = randn(r, n), randn(r, n)
	}
	for _, e := range packedEngines(t) {
		t.Run(e.Name(), func(t *testing.T) {
			// run sets up packed param, grad, m and v, takes two Adam steps
			// per part or on the wholes, and reads the parts back.
			run := func(whole bool) [][]float32 {
				var wholes, parts [4]*Tensor
				var sets [4][]*Tensor
				for k := range wholes {
					var err error
					if wholes[k], sets[k], err = e.AllocPacked(packedLens); err != nil {
						t.Fatal(err)
					}
					defer e.Free(wholes[k])
				}
				for i := range packedLens {
					if err := e.Write(sets[0][i], values[i]); err != nil {
						t.Fatal(err)
					}
					if err := e.Write(sets[1][i], grads[i]); err != nil {
						t.Fatal(err)
					}
				}
				for step := 1; step <= 2; step++ {
					if whole {
						if err := e.AdamStep(p, step, wholes[0], wholes[1], wholes[2], wholes[3]); err != nil {
							t.Fatal(err)
						}
						continue
					}
					for i := range packedLens {
						for k := range parts {
							parts[k] = sets[k][i]
						}
						if err := e.AdamStep(p, step, parts[0], parts[1], parts[2], parts[3]); err != nil {
							t.Fatal(err)
						}
					}
				}
				out := make([][]float32, len(packedLens))
				for i := range packedLens {
					out[i] = make([]float32, packedLens[i])
					if err := e.Read(sets[0][i], out[i]); err != nil {
						t.Fatal(err)
					}
				}
				return out
			}
			each, all := run(false), run(true)
			for i := range each {
				for j := range each[i] {
					if math.Float32bits(each[i][j]) != math.Float32bits(all[i][j]) {
						t.Fatalf("part %d[%d]: %g stepped alone, %g stepped in the whole", i, j, each[i][j], all[i][j])
					}
				}
			}

			whole, parts, err := e.AllocPacked(packedLens)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Free(whole)
			if err := e.Fill(parts[3], float32(math.NaN())); err != nil {
				t.Fatal(err)
			}
			if err := e.Fill(parts[2], 2); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, whole.Len())
			if err := e.Read(whole, got); err != nil {
				t.Fatal(err)
			}
			nan, twos := 0, 0
			for _, v := range got {
				switch {
				case v != v:
					nan++
				case v == 2:
					twos++
				case v != 0:
					t.Fatalf("whole holds %g after filling two parts with NaN and 2", v)
				}
			}
			if nan != packedLens[3] || twos != packedLens[2] {
				t.Errorf("%d NaN and %d twos in the whole, want %d and %d", nan, twos, packedLens[3], packedLens[2])
			}
		})
	}
}

func TestAllocPackedErrors(t *testing.T) {
	for _, e := range packedEngines(t) {
		for _, c := range []struct {
			lens []int
			want string
		}{
			{nil, "no parts"},
			{[]int{3, 0}, "part 1"},
			{[]int{-1}, "part 0"},
			{[]int{maxElements, maxElements}, "more than"},
		} {
			_, _, err := e.AllocPacked(c.lens)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: AllocPacked(%v): error %v, want one containing %q", e.Name(), c.lens, err, c.want)
			}
		}
	}
}

// packLayout places parts at multiples of any alignment (a device may ask
// for 256-byte offsets) and rounds the whole to vec4s.
func TestPackLayout(t *testing.T) {
	for _, c := range []struct {
		lens    []int
		align   int
		offsets []int
		total   int
	}{
		{[]int{1}, 1, []int{0}, 4},
		{[]int{1, 17, 3}, 1, []int{0, 1, 18}, 24},
		{[]int{1, 17, 3}, 4, []int{0, 4, 24}, 28},
		{[]int{1, 17, 3}, 64, []int{0, 64, 128}, 192},
		{[]int{64, 65}, 64, []int{0, 64}, 192},
	} {
		offsets, total, err := packLayout(c.lens, c.align)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(offsets, c.offsets) || total != c.total {
			t.Errorf("packLayout(%v, %d) = %v, %d; want %v, %d", c.lens, c.align, offsets, total, c.offsets, c.total)
		}
	}
}
