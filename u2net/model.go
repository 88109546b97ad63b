// Package u2net is the 3D U²-Net: a universal multi-domain segmentation
// network whose convolutions are split into per-domain depthwise adapters and
// shared pointwise weights (universal mode), or dense with per-domain norms
// and heads (shared mode), or one dense network per domain (independent
// mode). It defines the parameters, runs forward and backward passes on an
// ops.Engine, trains with Adam or SGD, and saves and loads model files.
//
// # Parameter names
//
// Tensors are named by scope, then the domain's name for per-domain tensors,
// then weight or bias: "in.conv.<domain>.weight", "enc<i>.u<1|2>.<part>",
// "down<i>.conv.weight", "dec<i>.up...", "dec<i>.u<1|2>...", "ds<i>...",
// "out.conv.<domain>.weight". A unit's parts are, in universal mode,
// "dw.<domain>" (depthwise conv), "dwnorm.<domain>", "pw" (shared pointwise)
// and "norm.<domain>"; in shared mode "conv" and "norm.<domain>". In
// independent mode every name carries its domain.
package u2net

import (
	"fmt"
	"slices"
)

// Model is a network definition with its parameter values on the host.
type Model struct {
	Config Config
	Params []*Param
	// Values holds each parameter's values by name.
	Values map[string][]float32
}

// declare lists the parameters of cfg, in a fixed order: each domain's
// network is walked in turn and shared parameters are listed once.
func declare(cfg Config) ([]*Param, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &builder{cfg: cfg, declare: true, params: map[string]*Param{}}
	size := cfg.TotalStride() // the smallest valid input
	for d := range cfg.Domains {
		b.dom = d
		b.n = 1
		x := &act{c: cfg.Domains[d].InChannels, size: size}
		b.define(x)
	}
	return b.order, b.err
}

// New returns a model with fresh parameters drawn from seed.
func New(cfg Config, seed uint64) (*Model, error) {
	params, err := declare(cfg)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Params: params, Values: map[string][]float32{}}
	for _, p := range params {
		m.Values[p.Name] = p.initValues(seed)
	}
	return m, nil
}

// Param returns the named parameter.
func (m *Model) Param(name string) (*Param, bool) {
	i := slices.IndexFunc(m.Params, func(p *Param) bool { return p.Name == name })
	if i < 0 {
		return nil, false
	}
	return m.Params[i], true
}

// AddDomain adds a domain with fresh per-domain parameters drawn from seed;
// existing parameters keep their values.
func (m *Model) AddDomain(d Domain, seed uint64) error {
	cfg := m.Config
	cfg.Domains = append(slices.Clone(cfg.Domains), d)
	params, err := declare(cfg)
	if err != nil {
		return fmt.Errorf("adding domain %q: %w", d.Name, err)
	}
	values := map[string][]float32{}
	for _, p := range params {
		if v, ok := m.Values[p.Name]; ok {
			values[p.Name] = v
		} else {
			values[p.Name] = p.initValues(seed)
		}
	}
	m.Config, m.Params, m.Values = cfg, params, values
	return nil
}
