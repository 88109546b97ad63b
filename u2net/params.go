package u2net

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
)

// paramKind says how a parameter is initialised.
type paramKind uint8

const (
	kindWeight paramKind = iota // conv weights: U(−1/√fan_in, 1/√fan_in), PyTorch's default
	kindBias                    // conv biases: the same bound
	kindGamma                   // norm scale: 1
	kindBeta                    // norm shift: 0
)

// Param is one learnable tensor of the network.
type Param struct {
	Name   string
	Shape  []int
	Domain int // index of the owning domain; −1 for a shared parameter
	kind   paramKind
	fanIn  int
}

// Len returns the number of elements.
func (p *Param) Len() int {
	n := 1
	for _, s := range p.Shape {
		n *= s
	}
	return n
}

// Shared reports whether all domains use the parameter.
func (p *Param) Shared() bool { return p.Domain < 0 }

func (p *Param) shapeString() string {
	parts := make([]string, len(p.Shape))
	for i, s := range p.Shape {
		parts[i] = fmt.Sprint(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// initValues returns the parameter's initial values. The generator is seeded
// by the model seed and the parameter's name, so adding a domain leaves every
// other parameter's initial values unchanged.
func (p *Param) initValues(seed uint64) []float32 {
	v := make([]float32, p.Len())
	switch p.kind {
	case kindGamma:
		for i := range v {
			v[i] = 1
		}
	case kindWeight, kindBias:
		h := fnv.New64a()
		h.Write([]byte(p.Name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		bound := 1 / math.Sqrt(float64(p.fanIn))
		for i := range v {
			v[i] = float32((2*r.Float64() - 1) * bound)
		}
	}
	return v
}

// ParamCounts summarises a model's parameters.
type ParamCounts struct {
	Total     int            `json:"total"`
	Shared    int            `json:"shared"`
	PerDomain map[string]int `json:"per_domain"`
}

// Counts returns the number of parameters in total, shared, and per domain.
func (m *Model) Counts() ParamCounts {
	c := ParamCounts{PerDomain: map[string]int{}}
	for _, d := range m.Config.Domains {
		c.PerDomain[d.Name] = 0
	}
	for _, p := range m.Params {
		n := p.Len()
		c.Total += n
		if p.Shared() {
			c.Shared += n
		} else {
			c.PerDomain[m.Config.Domains[p.Domain].Name] += n
		}
	}
	return c
}
