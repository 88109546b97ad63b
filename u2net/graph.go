package u2net

import (
	"github.com/u2net-vk/u2net/ops"
)

// graph is the network of one domain built on an engine for one input shape:
// every activation (and, when training, every gradient) is allocated once,
// when the graph is built, and reused by every step — the memory plan.
type graph struct {
	net      *Net
	dom      int
	n        int
	size     [3]int
	training bool

	fwd, bwd []func(e ops.Engine) error
	tensors  []*ops.Tensor
	acts     []*act
	bytes    int64

	input, logits *act
	labels        *ops.Tensor
	lossCE, lossD *ops.Tensor
	dCE, dDice    *ops.Tensor
}

func (g *graph) alloc(n int) (*ops.Tensor, error) {
	t, err := g.net.e.Alloc(n)
	if err != nil {
		return nil, err
	}
	g.tensors = append(g.tensors, t)
	g.bytes += 4 * int64(n)
	return t, nil
}

// step appends a layer's forward and backward functions.
func (g *graph) step(fwd, bwd func(e ops.Engine) error) {
	g.fwd = append(g.fwd, fwd)
	g.bwd = append(g.bwd, bwd)
}

func (g *graph) val(p *Param) *ops.Tensor { return g.net.values[p.Name] }

// grad returns where p's gradient goes, or nil when p does not learn (not
// training, or a frozen shared parameter).
func (g *graph) grad(p *Param) *ops.Tensor {
	if !g.training || g.net.frozen(p) {
		return nil
	}
	return g.net.grads[p.Name]
}

func noop(ops.Engine) error { return nil }

// gradOut returns the tensor a backward step should write a's gradient
// contribution into, and a function to call afterwards. The first
// contribution in the backward pass is written in place; later ones go to a
// scratch tensor that is then added.
func (g *graph) gradOut(a *act) (*ops.Tensor, func(ops.Engine) error) {
	if !g.training || !a.needGrad {
		return nil, noop
	}
	if !a.gradWritten {
		a.gradWritten = true
		return a.g, noop
	}
	if a.tmp == nil {
		t, err := g.alloc(a.g.Len())
		if err != nil {
			return nil, func(ops.Engine) error { return err }
		}
		a.tmp = t
	}
	return a.tmp, func(e ops.Engine) error { return e.Add(a.g, a.tmp, a.g) }
}

func (g *graph) forward() error {
	e := g.net.e
	for _, f := range g.fwd {
		if err := f(e); err != nil {
			return err
		}
	}
	return nil
}

// backward runs the steps in reverse; the logits' gradient must be set.
func (g *graph) backward() error {
	for _, a := range g.acts {
		a.gradWritten = false
	}
	g.logits.gradWritten = true
	e := g.net.e
	for i := len(g.bwd) - 1; i >= 0; i-- {
		if err := g.bwd[i](e); err != nil {
			return err
		}
	}
	return nil
}

func (g *graph) free() {
	for _, t := range g.tensors {
		g.net.e.Free(t)
	}
	g.tensors = nil
}
