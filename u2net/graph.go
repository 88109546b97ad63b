package u2net

import (
	"sort"

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
	used     uint64 // the net's clock at the last look-up

	fwd, bwd []func(e ops.Engine) error
	// outs and ins are each step's output and inputs, for planning the
	// gradient buffers.
	outs    []*act
	ins     [][]*act
	tensors []*ops.Tensor // an inference graph's own buffers
	// taken counts, by length, the buffers a training graph took from the
	// net's pool (nil once it left it).
	taken map[int]int
	acts  []*act
	bytes int64
	// temps hold accumulated gradient contributions, by size and slot; a
	// backward step uses slots from 0 in order.
	temps    map[[2]int]*ops.Tensor
	tempSlot int

	// replays are the recorded inference passes (GPU engines), one per
	// result (outLogits, outProbs).
	replays [2]*inferReplay
	// stepRec is the recorded training step (GPU engines).
	stepRec *stepRecording

	input, logits *act
	probs         *ops.Tensor // the softmax of the logits, once asked for
	labels        *ops.Tensor
	lossCE, lossD *ops.Tensor
	dCE, dDice    *ops.Tensor
	// heads carry the deep-supervision losses, when the net trains with them.
	heads []*lossHead
}

func (g *graph) alloc(n int) (*ops.Tensor, error) {
	var t *ops.Tensor
	var err error
	if g.training {
		t, err = g.net.trainBufs.take(g, n)
	} else if t, err = g.net.e.Alloc(n); err == nil {
		g.tensors = append(g.tensors, t)
	}
	if err != nil {
		return nil, err
	}
	g.bytes += 4 * int64(n)
	return t, nil
}

// bufPool holds the buffers of a net's training graphs, which share them:
// the graphs never run at once (a step ends before the next begins) and a
// step leaves nothing in them for the next, so the k-th buffer of a length
// that one graph takes is the k-th of every other. A run whose domains
// take turns then holds one domain's activations and gradients, not a set
// per domain.
type bufPool struct {
	bufs  map[int][]*ops.Tensor // by length
	users int                   // training graphs that take from it
}

// join counts g among the pool's users.
func (p *bufPool) join(g *graph) {
	p.users++
	g.taken = map[int]int{}
}

// take returns g's next buffer of n elements, allocating it when no graph
// has taken that many yet.
func (p *bufPool) take(g *graph, n int) (*ops.Tensor, error) {
	k := g.taken[n]
	if k == len(p.bufs[n]) {
		t, err := g.net.e.Alloc(n)
		if err != nil {
			return nil, err
		}
		if p.bufs == nil {
			p.bufs = map[int][]*ops.Tensor{}
		}
		p.bufs[n] = append(p.bufs[n], t)
	}
	g.taken[n] = k + 1
	return p.bufs[n][k], nil
}

// leave removes g from the users; the last one frees the buffers.
func (p *bufPool) leave(g *graph, e ops.Engine) {
	if g.taken == nil {
		return
	}
	g.taken = nil
	if p.users--; p.users > 0 {
		return
	}
	for _, list := range p.bufs {
		for _, t := range list {
			e.Free(t)
		}
	}
	p.bufs = nil
}

// step appends a layer: its output, its inputs, and its forward and backward
// functions. The backward reads y's gradient and writes the inputs'.
func (g *graph) step(y *act, ins []*act, fwd, bwd func(e ops.Engine) error) {
	g.outs = append(g.outs, y)
	g.ins = append(g.ins, ins)
	g.fwd = append(g.fwd, fwd)
	g.bwd = append(g.bwd, bwd)
}

// planGrads gives every activation's gradient a buffer. A gradient lives
// from the first backward step that writes it (its last consumer's) to the
// backward step of the layer that produced it, so buffers of gradients whose
// lives do not overlap are shared: the plan holds only the gradients alive
// at once, not one per activation.
func (g *graph) planGrads() error {
	last := len(g.bwd) - 1
	lives := map[*act]*life{} // positions in backward order
	for i, y := range g.outs {
		pos := last - i
		if l, ok := lives[y]; ok {
			l.end = pos
		} else {
			lives[y] = &life{dst: &y.g, n: y.len(g.n), start: pos, end: pos}
		}
		for _, x := range g.ins[i] {
			if !x.needGrad {
				continue
			}
			if l, ok := lives[x]; ok {
				l.start = min(l.start, pos)
			} else {
				lives[x] = &life{dst: &x.g, n: x.len(g.n), start: pos, end: last + 1}
			}
		}
	}
	// The losses write the gradients of the logits and of the supervised
	// heads before the backward pass.
	lives[g.logits].start = -1
	for _, h := range g.heads {
		lives[h.a].start = -1
	}
	order := make([]*life, 0, len(lives))
	for _, l := range lives {
		order = append(order, l)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].start != order[j].start {
			return order[i].start < order[j].start
		}
		return order[i].end < order[j].end
	})
	return g.share(order)
}

// life is the span of steps over which a tensor of n elements is needed,
// and where its buffer goes.
type life struct {
	dst        **ops.Tensor
	n          int
	start, end int
}

// share gives each life, in order of start, a buffer of its length: one
// that a life ended before it started left free, or a new one.
func (g *graph) share(order []*life) error {
	free := map[int][]*ops.Tensor{}
	var active []*life
	for _, l := range order {
		kept := active[:0]
		for _, o := range active {
			if o.end < l.start {
				free[o.n] = append(free[o.n], *o.dst)
			} else {
				kept = append(kept, o)
			}
		}
		active = kept
		if list := free[l.n]; len(list) > 0 {
			*l.dst, free[l.n] = list[len(list)-1], list[:len(list)-1]
		} else {
			t, err := g.alloc(l.n)
			if err != nil {
				return err
			}
			*l.dst = t
		}
		active = append(active, l)
	}
	return nil
}

// planActs gives the activations of an inference graph their buffers. An
// activation lives from the step that writes it (the input from before the
// first) to the last step that reads it (the logits to after the last), so
// activations whose lives do not overlap share a buffer: the plan holds
// only the activations alive at once, a few per level instead of all. A
// training graph keeps every activation for its backward pass instead.
func (g *graph) planActs() error {
	in := &life{dst: &g.input.v, n: g.input.len(g.n), start: -1, end: -1}
	lives := map[*act]*life{g.input: in}
	order := []*life{in} // in order of start
	for i, y := range g.outs {
		for _, x := range g.ins[i] {
			lives[x].end = i // every input was written by an earlier step
		}
		if _, ok := lives[y]; !ok {
			l := &life{dst: &y.v, n: y.len(g.n), start: i, end: i}
			lives[y] = l
			order = append(order, l)
		}
	}
	lives[g.logits].end = len(g.outs)
	return g.share(order)
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
// contribution in the backward pass is written in place; a later one is
// added where it is written when the step's method adds (takes an
// accumulating view, ops.Accumulate), else it goes to a scratch tensor
// that is then added. Both give the same bits.
func (g *graph) gradOut(a *act, adds bool) (*ops.Tensor, func(ops.Engine) error) {
	if !g.training || !a.needGrad {
		return nil, noop
	}
	if !a.gradWritten {
		a.gradWritten = true
		return a.g, noop
	}
	if adds {
		return ops.Accumulate(a.g), noop
	}
	key := [2]int{a.g.Len(), g.tempSlot}
	g.tempSlot++
	tmp, ok := g.temps[key]
	if !ok {
		t, err := g.alloc(a.g.Len())
		if err != nil {
			return nil, func(ops.Engine) error { return err }
		}
		if g.temps == nil {
			g.temps = map[[2]int]*ops.Tensor{}
		}
		g.temps[key], tmp = t, t
	}
	return tmp, func(e ops.Engine) error { return e.Add(a.g, tmp, a.g) }
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
	for _, h := range g.heads {
		h.a.gradWritten = true
	}
	e := g.net.e
	for i := len(g.bwd) - 1; i >= 0; i-- {
		g.tempSlot = 0
		if err := g.bwd[i](e); err != nil {
			return err
		}
	}
	return nil
}

func (g *graph) free() {
	for i, r := range g.replays {
		if r != nil {
			r.rec.Release()
			g.replays[i] = nil
		}
	}
	if g.stepRec != nil {
		g.stepRec.rec.Release()
		g.stepRec = nil
	}
	for _, t := range g.tensors {
		g.net.e.Free(t)
	}
	g.tensors = nil
	g.net.trainBufs.leave(g, g.net.e)
}
