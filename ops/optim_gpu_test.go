package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// optimTol: the GPU updates in fp32 with scalars rounded from float64 where
// ref works in float64 and rounds each result once; after a few steps the
// parameters and moments differ by a few ulp.
const optimTol = 1e-6

// optimSteps is how many chained steps each case takes, each with its own
// gradient.
const optimSteps = 3

// optimSizes: a single element, one partial workgroup, several, and a
// multiple of 4 (the vec4 path).
var optimSizes = []int{1, 17, 1031, 1024}

// optimTensors returns the parameter, zero state and one gradient per step.
func optimTensors(r *rand.Rand, n int, state ...string) []tensorSpec {
	ts := []tensorSpec{inout("param", randn(r, n))}
	for _, s := range state {
		ts = append(ts, inout(s, make([]float32, n)))
	}
	for i := 1; i <= optimSteps; i++ {
		ts = append(ts, input(fmt.Sprintf("grad%d", i), randn(r, n)))
	}
	return ts
}

func TestAdamGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	params := map[string]ref.AdamParams{
		"default": ref.DefaultAdam(1e-3),
		"decay":   {LR: 1e-2, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.05},
		"beta0":   {LR: 0.1, Beta1: 0, Beta2: 0, Eps: 1e-8},
	}
	var cases []opCase
	for name, p := range params {
		for _, n := range optimSizes {
			cases = append(cases, opCase{fmt.Sprintf("%s/n=%d", name, n), optimTensors(r, n, "m", "v"),
				func(e Engine, ts map[string]*Tensor) error {
					for s := 1; s <= optimSteps; s++ {
						if err := e.AdamStep(p, s, ts["param"], ts[fmt.Sprintf("grad%d", s)], ts["m"], ts["v"]); err != nil {
							return err
						}
					}
					return nil
				}, optimTol})
		}
	}
	checkCases(t, cases)
}

func TestSGDGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(73, 74))
	params := map[string]ref.SGDParams{
		"plain":    {LR: 0.1},
		"decay":    {LR: 0.1, WeightDecay: 1e-2},
		"momentum": {LR: 0.05, Momentum: 0.9, Dampening: 0.1, WeightDecay: 1e-2},
		"nesterov": {LR: 0.05, Momentum: 0.9, Nesterov: true},
	}
	var cases []opCase
	for name, p := range params {
		for _, n := range optimSizes {
			state := []string{"buf"}
			if p.Momentum == 0 {
				state = nil // no buffer: it may be nil
			}
			cases = append(cases, opCase{fmt.Sprintf("%s/n=%d", name, n), optimTensors(r, n, state...),
				func(e Engine, ts map[string]*Tensor) error {
					for s := 1; s <= optimSteps; s++ {
						if err := e.SGDStep(p, s, ts["param"], ts[fmt.Sprintf("grad%d", s)], ts["buf"]); err != nil {
							return err
						}
					}
					return nil
				}, optimTol})
		}
	}
	// The momentum buffer holds garbage before step 1: it is set, not read.
	p := ref.SGDParams{LR: 0.05, Momentum: 0.9}
	cases = append(cases, opCase{"momentum-garbage-buffer", []tensorSpec{inout("param", randn(r, 100)),
		inout("buf", randScaled(r, 100, 1e6)), input("grad", randn(r, 100))},
		func(e Engine, ts map[string]*Tensor) error {
			return e.SGDStep(p, 1, ts["param"], ts["grad"], ts["buf"])
		}, optimTol})
	checkCases(t, cases)
}

func TestOptimErrorsGPU(t *testing.T) {
	g := gpuEngine(t)
	a, _ := g.Alloc(10)
	b, _ := g.Alloc(10)
	c, _ := g.Alloc(10)
	d, _ := g.Alloc(10)
	short, _ := g.Alloc(9)
	lab, _ := g.AllocLabels(10)
	defer func() {
		for _, t := range []*Tensor{a, b, c, d, short, lab} {
			g.Free(t)
		}
	}()
	adam := ref.DefaultAdam(1e-3)
	wantOpError(t, "Adam step 0", "AdamStep", g.AdamStep(adam, 0, a, b, c, d))
	wantOpError(t, "Adam short grad", "AdamStep", g.AdamStep(adam, 1, a, short, c, d))
	wantOpError(t, "Adam nil v", "AdamStep", g.AdamStep(adam, 1, a, b, c, nil))
	wantOpError(t, "Adam labels m", "AdamStep", g.AdamStep(adam, 1, a, b, lab, d))
	wantOpError(t, "Adam beta1 1", "AdamStep", g.AdamStep(ref.AdamParams{LR: 1, Beta1: 1}, 1, a, b, c, d))
	wantOpError(t, "Adam nil param", "AdamStep", g.AdamStep(adam, 1, nil, b, c, d))
	mom := ref.SGDParams{LR: 0.1, Momentum: 0.9}
	wantOpError(t, "SGD no buffer", "SGDStep", g.SGDStep(mom, 1, a, b, nil))
	wantOpError(t, "SGD short buffer", "SGDStep", g.SGDStep(mom, 2, a, b, short))
	wantOpError(t, "SGD labels grad", "SGDStep", g.SGDStep(mom, 2, a, lab, c))
	wantOpError(t, "SGD Nesterov without momentum", "SGDStep", g.SGDStep(ref.SGDParams{LR: 0.1, Nesterov: true}, 1, a, b, nil))
	wantOpError(t, "SGD step -1", "SGDStep", g.SGDStep(ref.SGDParams{LR: 0.1}, -1, a, b, nil))
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkAdam times one Adam step over 2·32·64³ parameters (4 tensors
// read, 3 written: 28 bytes per parameter) and over 2·32·16³ for lavapipe.
func BenchmarkAdam(b *testing.B) {
	for _, s := range []int{64, 16} {
		n := 2 * 32 * s * s * s
		b.Run(fmt.Sprintf("2x32x%d^3", s), func(b *testing.B) {
			r := rand.New(rand.NewPCG(5, 6))
			p := ref.DefaultAdam(1e-3)
			// Small moments, so that repeated steps stay finite.
			ts := []tensorSpec{input("param", randn(r, n)), input("grad", randn(r, n)),
				input("m", randScaled(r, n, 0.1)), input("v", make([]float32, n))}
			for i := range ts[3].data {
				ts[3].data[i] = 1
			}
			benchCase(b, gpuEngine(b), opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
				return e.AdamStep(p, 10, t["param"], t["grad"], t["m"], t["v"])
			}})
		})
	}
}
