package u2net

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops"
)

// referenceConfig is the configuration of the reference's state-dict listing
// (shared/reference/reference-state-dict-keys.txt).
func referenceConfig(mode string) Config {
	c := DefaultConfig()
	c.Mode = mode
	c.BaseChannels = 8
	c.PoolsPerAxis = [3]int{2, 3, 3}
	c.Upsample = UpsampleNearest
	c.Domains = []Domain{{Name: "a", InChannels: 1, Classes: 2}, {Name: "b", InChannels: 2, Classes: 3}}
	return c
}

func TestParameterCountsMatchReference(t *testing.T) {
	for _, c := range []struct {
		mode string
		want int
	}{
		{ModeUniversal, 124987},
		{ModeShared, 516443},
	} {
		m, err := New(referenceConfig(c.mode), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Counts().Total; got != c.want {
			t.Errorf("%s: %d parameters, the reference has %d", c.mode, got, c.want)
		}
	}
}

// newTestNet returns a net of a new model of cfg on engine e, closed when
// the test ends.
func newTestNet(t testing.TB, cfg Config, seed uint64, e ops.Engine) *Net {
	t.Helper()
	m, err := New(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNet(m, e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func tinyConfig(mode, upsample string) Config {
	c := DefaultConfig()
	c.Mode = mode
	c.Upsample = upsample
	c.BaseChannels = 2
	c.PoolsPerAxis = [3]int{1, 2, 2} // anisotropic: level 1 → 2 has stride (1, 2, 2)
	c.Domains = []Domain{{Name: "ct", InChannels: 1, Classes: 2}, {Name: "mr", InChannels: 2, Classes: 3}}
	return c
}

var tinySize = [3]int{4, 8, 8}

func tinyBatch(r *rand.Rand, d Domain, batch int, size [3]int) ([]float32, []int32) {
	vox := size[0] * size[1] * size[2]
	x := make([]float32, batch*d.InChannels*vox)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	l := make([]int32, batch*vox)
	for i := range l {
		l[i] = int32(r.IntN(d.Classes))
	}
	return x, l
}

// The loss's gradient with respect to a sample of parameters matches central
// finite differences on the CPU engine, in every mode.
func TestGradientsFiniteDifferences(t *testing.T) {
	for _, c := range []struct {
		mode, up string
		dsLoss   bool
	}{
		{ModeUniversal, UpsampleTranspose, false},
		{ModeUniversal, UpsampleNearest, false},
		{ModeShared, UpsampleTranspose, false},
		{ModeShared, UpsampleNearest, false},
		{ModeUniversal, UpsampleTranspose, true}, // deep-supervision losses
	} {
		mode, up := c.mode, c.up
		{
			t.Run(fmt.Sprintf("%s-%s-dsloss=%v", mode, up, c.dsLoss), func(t *testing.T) {
				net := newTestNet(t, tinyConfig(mode, up), 7, ops.NewCPU())
				m := net.Model
				net.DeepSupervisionLoss = c.dsLoss
				// LeakyReLU(0.01) makes the loss piecewise smooth with kinks
				// finer than any usable step (the activations' own gradients
				// are checked in package ref); slope 1 keeps every layer's
				// wiring under test and the loss smooth.
				net.slope = 1
				r := rand.New(rand.NewPCG(3, 4))
				dom := 1
				x, labels := tinyBatch(r, m.Config.Domains[dom], 2, tinySize)
				if _, err := net.Gradients(dom, 2, tinySize, x, labels); err != nil {
					t.Fatal(err)
				}
				checked := 0
				for _, p := range m.Params {
					if p.Domain >= 0 && p.Domain != dom {
						continue
					}
					grad, ok, err := net.Gradient(p.Name)
					if err != nil || !ok {
						t.Fatalf("%s: no gradient (%v)", p.Name, err)
					}
					// Probe the element with the largest gradient: its
					// finite difference stands clear of float32 noise.
					i := 0
					for j := range grad {
						if math.Abs(float64(grad[j])) > math.Abs(float64(grad[i])) {
							i = j
						}
					}
					if math.Abs(float64(grad[i])) < 1e-3 {
						continue
					}
					fd := finiteDifference(t, net, p.Name, i, dom, x, labels)
					if math.Abs(fd-float64(grad[i])) > 0.02*math.Abs(fd)+2e-4 {
						t.Errorf("%s[%d]: backward %.5g, finite difference %.5g", p.Name, i, grad[i], fd)
					}
					checked++
				}
				if checked < len(m.Params)/3 {
					t.Errorf("only %d of %d parameters had a gradient large enough to check", checked, len(m.Params))
				}
			})
		}
	}
}

func finiteDifference(t *testing.T, net *Net, name string, i, dom int, x []float32, labels []int32) float64 {
	t.Helper()
	v := net.Model.Values[name]
	orig := v[i]
	const h = 1e-3
	loss := func(delta float32) float64 {
		v[i] = orig + delta
		if err := net.e.Write(net.values[name], v); err != nil {
			t.Fatal(err)
		}
		l, err := net.Gradients(dom, 2, tinySize, x, labels)
		if err != nil {
			t.Fatal(err)
		}
		return l.Total()
	}
	fd := (loss(h) - loss(-h)) / (2 * h)
	v[i] = orig
	if err := net.e.Write(net.values[name], v); err != nil {
		t.Fatal(err)
	}
	return fd
}

// The parameter counts of the reference at its published setting (DESIGN §8
// anchors): base 16, pools [5,5,5], nearest up-sampling; five domains in
// universal mode, one domain for an independent model.
func TestParameterCountsAtReferenceSetting(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Upsample = UpsampleNearest
	cfg.Domains = []Domain{
		{Name: "heart", InChannels: 1, Classes: 2}, {Name: "liver", InChannels: 1, Classes: 3},
		{Name: "prostate", InChannels: 2, Classes: 3}, {Name: "pancreas", InChannels: 1, Classes: 2},
		{Name: "hippocampus", InChannels: 1, Classes: 2},
	}
	m, err := New(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Counts().Total; got != 6577460 {
		t.Errorf("universal, five domains: %d parameters, the reference has 6577460", got)
	}
	cfg.Mode = ModeIndependent
	cfg.Domains = cfg.Domains[:1]
	if m, err = New(cfg, 0); err != nil {
		t.Fatal(err)
	}
	if got := m.Counts().Total; got != 33113214 {
		t.Errorf("independent, one domain: %d parameters, the reference has 33113214", got)
	}
}
