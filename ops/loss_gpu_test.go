package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// Tolerances of the losses. The GPU computes the softmax in fp32 (exp and
// log of the driver, a few ulp) where ref uses float64; the loss values are
// fp32 sums of up to 2·10⁴ terms in a fixed tree, about 1e-7 relative. The
// gradients are per-voxel fp32 expressions of those sums.
const (
	softmaxTol  = 1e-6
	lossTol     = 1e-6
	lossGradTol = 2e-6
)

// lossShapes: batch 1 and 3, a single voxel, primes, and a larger volume
// (7429 voxels) whose sums come from several workgroups' partials.
var lossShapes = []struct {
	n    int
	size ref.Dims3
}{
	{1, ref.Dims3{1, 1, 1}},
	{3, ref.Dims3{2, 5, 7}},
	{1, ref.Dims3{3, 1, 13}},
	{1, ref.Dims3{17, 19, 23}},
	{3, ref.Dims3{4, 8, 9}},
}

// lossCase returns logits (2·N(0, 1), so that probabilities spread) and
// labels for p.
func lossData(r *rand.Rand, p ref.LossParams) ([]float32, []int32) {
	return randScaled(r, p.LogitsLen(), 2), randLabels(r, p.LabelsLen(), p.Classes)
}

func TestSoftmaxArgmaxGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	var cases []opCase
	for _, s := range lossShapes {
		for _, k := range []int{1, 2, 3, 5} {
			p := ref.LossParams{N: s.n, Classes: k, Size: s.size}
			x, _ := lossData(r, p)
			// Ties: logits rounded to a few values, so that several classes
			// often share the maximum; and a few NaNs, which win.
			ties := make([]float32, len(x))
			for i, v := range x {
				ties[i] = float32(math.Round(float64(v) / 2))
			}
			for i := 0; i < len(ties); i += 37 {
				ties[i] = float32(math.NaN())
			}
			name := fmt.Sprintf("N%d-K%d-%v", s.n, k, s.size)
			cases = append(cases,
				opCase{"softmax/" + name, []tensorSpec{input("x", x), output("probs", p.LogitsLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.Softmax(p, ts["x"], ts["probs"]) }, softmaxTol},
				opCase{"argmax/" + name, []tensorSpec{input("x", x), outputLabels("labels", p.LabelsLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.Argmax(p, ts["x"], ts["labels"]) }, 0},
				opCase{"argmax-ties-nan/" + name, []tensorSpec{input("x", ties), outputLabels("labels", p.LabelsLen())},
					func(e Engine, ts map[string]*Tensor) error { return e.Argmax(p, ts["x"], ts["labels"]) }, 0})
		}
	}
	checkCases(t, cases)
}

func TestCrossEntropyGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(63, 64))
	var cases []opCase
	for _, s := range lossShapes {
		for _, k := range []int{1, 2, 3, 5} {
			p := ref.LossParams{N: s.n, Classes: k, Size: s.size}
			x, l := lossData(r, p)
			name := fmt.Sprintf("N%d-K%d-%v", s.n, k, s.size)
			cases = append(cases,
				opCase{"grad/" + name, []tensorSpec{input("x", x), inputLabels("l", l), output("dx", p.LogitsLen()), output("loss", 1)},
					func(e Engine, ts map[string]*Tensor) error {
						return e.CrossEntropy(p, ts["x"], ts["l"], ts["dx"], ts["loss"])
					}, lossGradTol},
				opCase{"loss/" + name, []tensorSpec{input("x", x), inputLabels("l", l), output("loss", 1)},
					func(e Engine, ts map[string]*Tensor) error {
						return e.CrossEntropy(p, ts["x"], ts["l"], nil, ts["loss"])
					}, lossTol})
		}
	}
	checkCases(t, cases)
}

func TestSoftDiceGPU(t *testing.T) {
	r := rand.New(rand.NewPCG(65, 66))
	var cases []opCase
	for _, s := range lossShapes {
		for _, k := range []int{1, 2, 3, 5} {
			for _, bg := range []bool{true, false} {
				if k == 1 && !bg {
					continue // no class left
				}
				p := ref.DiceParams{LossParams: ref.LossParams{N: s.n, Classes: k, Size: s.size},
					Eps: ref.DefaultDiceEps, IncludeBackground: bg}
				x, l := lossData(r, p.LossParams)
				name := fmt.Sprintf("N%d-K%d-%v-bg%t", s.n, k, s.size, bg)
				cases = append(cases,
					opCase{"grad/" + name, []tensorSpec{input("x", x), inputLabels("l", l), output("dx", p.LogitsLen()), output("loss", 1)},
						func(e Engine, ts map[string]*Tensor) error {
							return e.SoftDice(p, ts["x"], ts["l"], ts["dx"], ts["loss"])
						}, lossGradTol},
					opCase{"loss/" + name, []tensorSpec{input("x", x), inputLabels("l", l), output("loss", 1)},
						func(e Engine, ts map[string]*Tensor) error {
							return e.SoftDice(p, ts["x"], ts["l"], nil, ts["loss"])
						}, lossTol})
			}
		}
	}
	checkCases(t, cases)
}

// TestLossDeterminismGPU runs each loss with its gradient three times on a
// volume of several workgroups and wants the same bits every time.
func TestLossDeterminismGPU(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(67, 68))
	p := ref.DiceParams{LossParams: ref.LossParams{N: 2, Classes: 3, Size: ref.Dims3{17, 19, 23}}, Eps: ref.DefaultDiceEps}
	x, l := lossData(r, p.LossParams)
	runs := map[string]func(e Engine, ts map[string]*Tensor) error{
		"CrossEntropy": func(e Engine, ts map[string]*Tensor) error {
			return e.CrossEntropy(p.LossParams, ts["x"], ts["l"], ts["dx"], ts["loss"])
		},
		"SoftDice": func(e Engine, ts map[string]*Tensor) error {
			return e.SoftDice(p, ts["x"], ts["l"], ts["dx"], ts["loss"])
		},
	}
	for name, run := range runs {
		c := opCase{tensors: []tensorSpec{input("x", x), inputLabels("l", l), output("dx", p.LogitsLen()), output("loss", 1)}, run: run}
		var first map[string][]float32
		for i := 0; i < 3; i++ {
			got, _, err := runOn(g, c)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if i == 0 {
				first = got
				continue
			}
			for out, want := range first {
				for j := range want {
					if math.Float32bits(got[out][j]) != math.Float32bits(want[j]) {
						t.Errorf("%s run %d: %s[%d] = %g, first run %g", name, i, out, j, got[out][j], want[j])
						break
					}
				}
			}
		}
	}
}

// TestLossBadLabelsGPU: labels outside [0, classes) are refused by the CPU
// engine; the GPU cannot check them without a round trip, so it ignores
// them: the run completes and the results stay finite.
func TestLossBadLabelsGPU(t *testing.T) {
	g := gpuEngine(t)
	r := rand.New(rand.NewPCG(69, 70))
	p := ref.DiceParams{LossParams: ref.LossParams{N: 1, Classes: 3, Size: ref.Dims3{3, 4, 5}}, Eps: ref.DefaultDiceEps}
	x, l := lossData(r, p.LossParams)
	l[0], l[7], l[len(l)-1] = -1, 3, math.MaxInt32
	cpu := NewCPU()
	c := opCase{tensors: []tensorSpec{input("x", x), inputLabels("l", l), output("dx", p.LogitsLen()), output("loss", 1)}}
	for name, run := range map[string]func(e Engine, ts map[string]*Tensor) error{
		"CrossEntropy": func(e Engine, ts map[string]*Tensor) error {
			return e.CrossEntropy(p.LossParams, ts["x"], ts["l"], ts["dx"], ts["loss"])
		},
		"SoftDice": func(e Engine, ts map[string]*Tensor) error {
			return e.SoftDice(p, ts["x"], ts["l"], ts["dx"], ts["loss"])
		},
	} {
		c.run = run
		if _, _, err := runOn(cpu, c); err == nil {
			t.Errorf("%s: the CPU engine accepted labels out of range", name)
		}
		got, _, err := runOn(g, c)
		if err != nil {
			t.Fatalf("%s on the GPU: %v", name, err)
		}
		for out, v := range got {
			for i, f := range v {
				if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
					t.Errorf("%s: %s[%d] = %g", name, out, i, f)
					break
				}
			}
		}
	}
}

func TestLossErrorsGPU(t *testing.T) {
	g := gpuEngine(t)
	p := ref.LossParams{N: 1, Classes: 3, Size: ref.Dims3{2, 2, 2}}
	dp := ref.DiceParams{LossParams: p, Eps: ref.DefaultDiceEps}
	x, _ := g.Alloc(p.LogitsLen())
	dx, _ := g.Alloc(p.LogitsLen())
	short, _ := g.Alloc(p.LogitsLen() - 1)
	lab, _ := g.AllocLabels(p.LabelsLen())
	flab, _ := g.Alloc(p.LabelsLen()) // float where labels are expected
	loss, _ := g.Alloc(1)
	loss2, _ := g.Alloc(2)
	defer func() {
		for _, t := range []*Tensor{x, dx, short, lab, flab, loss, loss2} {
			g.Free(t)
		}
	}()
	wantOpError(t, "Softmax short", "Softmax", g.Softmax(p, x, short))
	wantOpError(t, "Softmax zero classes", "Softmax", g.Softmax(ref.LossParams{N: 1, Size: p.Size}, x, dx))
	wantOpError(t, "Argmax float labels", "Argmax", g.Argmax(p, x, flab))
	wantOpError(t, "Argmax nil", "Argmax", g.Argmax(p, x, nil))
	wantOpError(t, "CrossEntropy float labels", "CrossEntropy", g.CrossEntropy(p, x, flab, dx, loss))
	wantOpError(t, "CrossEntropy short grad", "CrossEntropy", g.CrossEntropy(p, x, lab, short, loss))
	wantOpError(t, "CrossEntropy no loss", "CrossEntropy", g.CrossEntropy(p, x, lab, dx, nil))
	wantOpError(t, "CrossEntropy loss of 2", "CrossEntropy", g.CrossEntropy(p, x, lab, dx, loss2))
	wantOpError(t, "CrossEntropy nil logits", "CrossEntropy", g.CrossEntropy(p, nil, lab, dx, loss))
	wantOpError(t, "SoftDice float labels", "SoftDice", g.SoftDice(dp, x, flab, dx, loss))
	wantOpError(t, "SoftDice short logits", "SoftDice", g.SoftDice(dp, short, lab, nil, loss))
	wantOpError(t, "SoftDice negative eps", "SoftDice", g.SoftDice(ref.DiceParams{LossParams: p, Eps: -1}, x, lab, dx, loss))
	wantOpError(t, "SoftDice no class", "SoftDice",
		g.SoftDice(ref.DiceParams{LossParams: ref.LossParams{N: 1, Classes: 1, Size: p.Size}}, x, lab, dx, loss))
	if err := g.Sync(); err != nil {
		t.Errorf("Sync after refused calls: %v", err)
	}
}

// BenchmarkCrossEntropy times the loss alone (fwd) and with its gradient
// (fwd+bwd) on 2×32 classes at 64³ (DESIGN.md §8's shape; bytes: the logits
// read, plus the gradient written) and at 16³ for lavapipe.
func BenchmarkCrossEntropy(b *testing.B) {
	for _, s := range []int{64, 16} {
		p := ref.LossParams{N: 2, Classes: 32, Size: ref.Dims3{s, s, s}}
		for _, grad := range []bool{false, true} {
			name := fmt.Sprintf("fwd/2x32x%d^3", s)
			if grad {
				name = fmt.Sprintf("fwd+bwd/2x32x%d^3", s)
			}
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(3, 4))
				x, l := lossData(r, p)
				ts := []tensorSpec{input("x", x), inputLabels("l", l), output("loss", 1)}
				if grad {
					ts = append(ts, output("dx", p.LogitsLen()))
				}
				benchCase(b, gpuEngine(b), opCase{tensors: ts, run: func(e Engine, t map[string]*Tensor) error {
					return e.CrossEntropy(p, t["x"], t["l"], t["dx"], t["loss"])
				}})
			})
		}
	}
}
