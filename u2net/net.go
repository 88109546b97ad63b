package u2net

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/u2net/internal/par"
)

// Optimizer configures training updates.
type Optimizer struct {
	Kind        string  // "adam" or "sgd"
	LR          float64 // learning rate of the next step (callers apply schedules)
	WeightDecay float64 // L2 penalty added to gradients, as PyTorch does
	Momentum    float64 // SGD only
	Nesterov    bool    // SGD only
}

// DefaultOptimizer is the reference's Adam: learning rate 3e-4, weight decay
// 5e-4.
func DefaultOptimizer() Optimizer { return Optimizer{Kind: "adam", LR: 3e-4, WeightDecay: 5e-4} }

// Losses of one training step.
type Losses struct {
	CrossEntropy float64
	Dice         float64
}

// Total is the optimised loss: cross-entropy plus soft Dice.
func (l Losses) Total() float64 { return l.CrossEntropy + l.Dice }

// Net is a model instantiated on an engine: parameter tensors, gradients,
// optimiser state, and one graph per (domain, batch, size, mode) reused by
// every step.
type Net struct {
	Model *Model
	Opt   Optimizer
	// FreezeShared keeps shared parameters fixed: only per-domain ones learn.
	FreezeShared bool
	// Step counts optimiser steps taken (Adam's bias correction uses it).
	Step int
	// DeepSupervisionLoss adds, for each deep-supervision head, the same loss
	// on the head's output against labels down-sampled to its level, with
	// weights halving per level (normalised to sum to one). It applies to
	// training graphs built after it is set.
	DeepSupervisionLoss bool

	e ops.Engine
	// values, grads, state1 and state2 are each parameter's tensors: parts
	// of its group's packed tensors.
	values map[string]*ops.Tensor
	grads  map[string]*ops.Tensor
	state1 map[string]*ops.Tensor // Adam's m or SGD's momentum buffer
	state2 map[string]*ops.Tensor // Adam's v
	groups map[int]*paramGroup    // by Param.Domain (-1: shared)
	graphs map[graphKey]*graph
	clock  uint64 // counts graph look-ups, for graph.used
	// trainBufs holds the training graphs' buffers, which they share.
	trainBufs bufPool
	// slope is the LeakyReLU slope, ref.DefaultSlope; the gradient tests
	// raise it to keep the loss smooth enough for finite differences.
	slope float64
	// recordEachStep records every training step afresh instead of
	// replaying the graph's recorded one (tests compare the two).
	recordEachStep bool
}

type graphKey struct {
	dom, n   int
	size     [3]int
	training bool
}

// paramGroup is the parameters of one domain, or the shared ones, packed
// into one tensor each for values, gradients and optimiser state: one
// optimiser dispatch updates the whole group. The gradient and state
// tensors are allocated when a domain first trains the group.
type paramGroup struct {
	params                []*Param
	values, grads, s1, s2 *ops.Tensor
}

// packed allocates the group's packed tensor and records its parts in by.
func (pg *paramGroup) packed(e ops.Engine, what string, by map[string]*ops.Tensor) (*ops.Tensor, error) {
	lens := make([]int, len(pg.params))
	for i, p := range pg.params {
		lens[i] = p.Len()
	}
	whole, parts, err := e.AllocPacked(lens)
	if err != nil {
		return nil, fmt.Errorf("%s of %d parameters from %s on: %w", what, len(lens), pg.params[0].Name, err)
	}
	for i, p := range pg.params {
		by[p.Name] = parts[i]
	}
	return whole, nil
}

// NewNet uploads the model's parameters to the engine.
func NewNet(m *Model, e ops.Engine) (*Net, error) {
	n := &Net{Model: m, Opt: DefaultOptimizer(), e: e,
		values: map[string]*ops.Tensor{}, grads: map[string]*ops.Tensor{},
		state1: map[string]*ops.Tensor{}, state2: map[string]*ops.Tensor{},
		groups: map[int]*paramGroup{}, graphs: map[graphKey]*graph{}, slope: ref.DefaultSlope}
	var order []int
	for _, p := range m.Params {
		pg := n.groups[p.Domain]
		if pg == nil {
			pg = &paramGroup{}
			n.groups[p.Domain] = pg
			order = append(order, p.Domain)
		}
		pg.params = append(pg.params, p)
	}
	for _, d := range order {
		pg := n.groups[d]
		var err error
		if pg.values, err = pg.packed(e, "values", n.values); err != nil {
			n.Close()
			return nil, err
		}
		for _, p := range pg.params {
			if err := e.Write(n.values[p.Name], m.Values[p.Name]); err != nil {
				n.Close()
				return nil, fmt.Errorf("parameter %s: %w", p.Name, err)
			}
		}
	}
	return n, nil
}

// trainedGroups returns the parameter groups a step on domain dom updates:
// the shared one unless frozen, and the domain's own.
func (n *Net) trainedGroups(dom int) []*paramGroup {
	var out []*paramGroup
	for _, d := range []int{-1, dom} {
		if pg := n.groups[d]; pg != nil && !(d < 0 && n.FreezeShared) {
			out = append(out, pg)
		}
	}
	return out
}

// Engine returns the engine the net runs on.
func (n *Net) Engine() ops.Engine { return n.e }

func (n *Net) frozen(p *Param) bool { return n.FreezeShared && p.Shared() }

// Close frees every tensor of the net.
func (n *Net) Close() {
	for _, g := range n.graphs {
		g.free()
	}
	for _, pg := range n.groups {
		for _, t := range []*ops.Tensor{pg.values, pg.grads, pg.s1, pg.s2} {
			if t != nil {
				n.e.Free(t)
			}
		}
	}
	n.groups = map[int]*paramGroup{}
	for _, m := range []map[string]*ops.Tensor{n.values, n.grads, n.state1, n.state2} {
		clear(m)
	}
	n.graphs = map[graphKey]*graph{}
}

// maxInferenceGraphs bounds the inference graphs a net keeps: prediction
// over volumes of many shapes builds one per shape, and each holds its
// activations. The least recently used goes first.
const maxInferenceGraphs = 4

// graph returns the graph for the key, building it on first use. When the
// engine's memory is full, the other graphs are freed and the build tried
// once more.
func (n *Net) graph(k graphKey) (*graph, error) {
	n.clock++
	if g, ok := n.graphs[k]; ok {
		g.used = n.clock
		return g, nil
	}
	if !k.training {
		n.evictInference(maxInferenceGraphs - 1)
	}
	g, err := n.build(k)
	if errors.Is(err, ops.ErrOutOfMemory) && len(n.graphs) > 0 {
		if err := n.freeGraphsExcept(nil); err != nil {
			return nil, err
		}
		g, err = n.build(k)
	}
	if err != nil {
		return nil, err
	}
	g.used = n.clock
	n.graphs[k] = g
	return g, nil
}

// evictInference frees the least recently used inference graphs until at
// most keep are left.
func (n *Net) evictInference(keep int) {
	for {
		var oldest *graph
		count := 0
		for k, g := range n.graphs {
			if k.training {
				continue
			}
			count++
			if oldest == nil || g.used < oldest.used {
				oldest = g
			}
		}
		if count <= keep {
			return
		}
		n.freeGraph(oldest)
	}
}

// FreeGraphs frees the net's graphs and their buffers, keeping its
// parameters (and optimiser state): the next pass builds what it needs
// again. It waits for the engine, so the memory is free on return.
func (n *Net) FreeGraphs() error { return n.freeGraphsExcept(nil) }

// freeGraphsExcept frees every graph but keep, and waits for the engine so
// that their memory is free on return.
func (n *Net) freeGraphsExcept(keep *graph) error {
	for _, g := range n.graphs {
		if g != keep {
			n.freeGraph(g)
		}
	}
	return n.e.Sync()
}

func (n *Net) freeGraph(g *graph) {
	g.free()
	delete(n.graphs, graphKey{g.dom, g.n, g.size, g.training})
}

// build builds the graph for the key.
func (n *Net) build(k graphKey) (*graph, error) {
	cfg := n.Model.Config
	if k.dom < 0 || k.dom >= len(cfg.Domains) {
		return nil, fmt.Errorf("domain index %d out of range (the model has %d domains)", k.dom, len(cfg.Domains))
	}
	if k.n <= 0 {
		return nil, fmt.Errorf("batch size %d must be positive", k.n)
	}
	if err := cfg.CheckInputSize(k.size); err != nil {
		return nil, err
	}
	if k.training {
		if err := n.ensureGrads(k.dom); err != nil {
			return nil, err
		}
	}
	g := &graph{net: n, dom: k.dom, n: k.n, size: k.size, training: k.training}
	if k.training {
		n.trainBufs.join(g)
	}
	b := &builder{cfg: cfg, dom: k.dom, g: g, n: k.n, slope: n.slope, params: map[string]*Param{}}
	for _, p := range n.Model.Params {
		b.params[p.Name] = p
	}
	size := ref.Dims3(k.size)
	x := b.newAct(cfg.Domains[k.dom].InChannels, size)
	x.needGrad = false
	g.input = x
	g.logits = b.define(x)
	if b.err == nil && !k.training {
		b.err = g.planActs()
	}
	if b.err == nil && k.training {
		if n.DeepSupervisionLoss {
			for _, h := range b.heads {
				g.heads = append(g.heads, &lossHead{level: h.level, a: h.a})
			}
		}
		if b.err = g.planGrads(); b.err == nil {
			b.err = g.addLoss(cfg, cfg.Domains[k.dom].Classes)
		}
	}
	if b.err != nil {
		g.free()
		if errors.Is(b.err, ops.ErrOutOfMemory) {
			// Wait until its memory is free, for a smaller try.
			if err := n.e.Sync(); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("building the %s network for batch %d, size %v: %w", cfg.Domains[k.dom].Name, k.n, k.size, b.err)
	}
	return g, nil
}

// ensureGrads allocates gradient and optimiser tensors for every parameter
// the domain trains.
func (n *Net) ensureGrads(dom int) error {
	for _, pg := range n.trainedGroups(dom) {
		// Each is checked on its own: a failed call may have allocated some.
		for _, t := range []struct {
			dst  **ops.Tensor
			what string
			by   map[string]*ops.Tensor
		}{{&pg.grads, "gradients", n.grads}, {&pg.s1, "optimiser state", n.state1}, {&pg.s2, "optimiser state", n.state2}} {
			if *t.dst != nil {
				continue
			}
			var err error
			if *t.dst, err = pg.packed(n.e, t.what, t.by); err != nil {
				return err
			}
		}
	}
	return nil
}

// lossHead is a deep-supervision head with its loss tensors.
type lossHead struct {
	level         int
	a             *act
	factor        [3]int // down-sampling from the input to the head
	labels        *ops.Tensor
	host          []int32
	lossCE, lossD *ops.Tensor
	dCE, dDice    *ops.Tensor
}

func (g *graph) addLoss(cfg Config, classes int) error {
	e := g.net.e
	var err error
	vox := g.size[0] * g.size[1] * g.size[2]
	if g.labels, err = e.AllocLabels(g.n * vox); err != nil {
		return err
	}
	g.tensors = append(g.tensors, g.labels)
	if g.lossCE, err = g.alloc(1); err != nil {
		return err
	}
	if g.lossD, err = g.alloc(1); err != nil {
		return err
	}
	if g.dCE, err = g.alloc(g.n * classes * vox); err != nil {
		return err
	}
	if g.dDice, err = g.alloc(g.n * classes * vox); err != nil {
		return err
	}
	for _, h := range g.heads {
		h.factor = [3]int{1, 1, 1}
		for l := 0; l < h.level; l++ {
			s := cfg.Stride(l)
			for ax := range h.factor {
				h.factor[ax] *= s[ax]
			}
		}
		hv := h.a.size.Voxels()
		if h.labels, err = e.AllocLabels(g.n * hv); err != nil {
			return err
		}
		g.tensors = append(g.tensors, h.labels)
		h.host = make([]int32, g.n*hv)
		for _, t := range []**ops.Tensor{&h.lossCE, &h.lossD} {
			if *t, err = g.alloc(1); err != nil {
				return err
			}
		}
		for _, t := range []**ops.Tensor{&h.dCE, &h.dDice} {
			if *t, err = g.alloc(g.n * classes * hv); err != nil {
				return err
			}
		}
	}
	return nil
}

// downsample fills the head's labels with the nearest labels of the input
// grid (voxel i of the head takes voxel i·factor), as nearest interpolation
// by an integer factor does.
func (h *lossHead) downsample(labels []int32, n int, size [3]int) {
	s := h.a.size
	// Planes (b, z) of the head, on all cores: a training step waits.
	par.Ranges(n*s[0], max(1, (1<<16)/(s[1]*s[2])), func(lo, hi int) {
		for bz := lo; bz < hi; bz++ {
			b, z := bz/s[0], bz%s[0]
			for y := 0; y < s[1]; y++ {
				for x := 0; x < s[2]; x++ {
					src := ((b*size[0]+z*h.factor[0])*size[1]+y*h.factor[1])*size[2] + x*h.factor[2]
					h.host[(bz*s[1]+y)*s[2]+x] = labels[src]
				}
			}
		}
	})
}

func (n *Net) checkInput(dom, batch int, size [3]int, x []float32) error {
	cfg := n.Model.Config
	if dom < 0 || dom >= len(cfg.Domains) {
		return fmt.Errorf("domain index %d out of range", dom)
	}
	want := batch * cfg.Domains[dom].InChannels * size[0] * size[1] * size[2]
	if len(x) != want {
		return fmt.Errorf("input has %d values, want batch %d × %d channels × %d×%d×%d = %d",
			len(x), batch, cfg.Domains[dom].InChannels, size[0], size[1], size[2], want)
	}
	return nil
}

// Forward runs the network of domain dom on x ([batch, in_channels, D, H, W])
// and returns the logits [batch, classes, D, H, W] in a new slice.
func (n *Net) Forward(dom, batch int, size [3]int, x []float32) ([]float32, error) {
	return n.inferNew(dom, batch, size, x, outLogits)
}

// ForwardInto is Forward writing the logits into out, which must hold
// exactly batch·classes·D·H·W values. A caller that runs the network
// repeatedly spares an allocation per call this way, which at 128³ costs
// more than the copy itself: the new slice's memory is first touched, page
// by page, by the copy.
func (n *Net) ForwardInto(dom, batch int, size [3]int, x, out []float32) error {
	return n.infer(dom, batch, size, x, outLogits, out)
}

// Probabilities is Forward followed by a softmax over the classes, computed
// on the engine: it returns the class probabilities [batch, classes, D, H, W].
func (n *Net) Probabilities(dom, batch int, size [3]int, x []float32) ([]float32, error) {
	return n.inferNew(dom, batch, size, x, outProbs)
}

// ProbabilitiesInto is Probabilities writing into out, as ForwardInto.
func (n *Net) ProbabilitiesInto(dom, batch int, size [3]int, x, out []float32) error {
	return n.infer(dom, batch, size, x, outProbs, out)
}

// OutputLen is the number of values Forward and Probabilities return for
// a batch of domain dom: batch·classes·D·H·W.
func (n *Net) OutputLen(dom, batch int, size [3]int) (int, error) {
	if dom < 0 || dom >= len(n.Model.Config.Domains) {
		return 0, fmt.Errorf("domain index %d out of range", dom)
	}
	return batch * n.Model.Config.Domains[dom].Classes * size[0] * size[1] * size[2], nil
}

// What an inference pass returns.
const (
	outLogits = iota
	outProbs
)

// inferNew runs an inference pass into a new slice.
func (n *Net) inferNew(dom, batch int, size [3]int, x []float32, what int) ([]float32, error) {
	l, err := n.OutputLen(dom, batch, size)
	if err != nil {
		return nil, err
	}
	out := make([]float32, l)
	if err := n.infer(dom, batch, size, x, what, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (n *Net) infer(dom, batch int, size [3]int, x []float32, what int, out []float32) error {
	if err := n.checkInput(dom, batch, size, x); err != nil {
		return err
	}
	if l, _ := n.OutputLen(dom, batch, size); len(out) != l {
		return fmt.Errorf("output has room for %d values, want batch %d × %d classes × %d×%d×%d = %d",
			len(out), batch, n.Model.Config.Domains[dom].Classes, size[0], size[1], size[2], l)
	}
	g, result, err := n.inferGraph(dom, batch, size, what)
	if err != nil {
		return err
	}
	if rp, ok := n.e.(replayer); ok {
		return g.replayForward(rp, x, what, result, out)
	}
	if err := n.e.Write(g.input.v, x); err != nil {
		return err
	}
	if err := g.inferPass(what); err != nil {
		return err
	}
	return n.e.Read(result, out)
}

// inferGraph returns the graph an inference pass runs and the tensor it
// returns. A training graph of the same shape runs the forward pass as
// well: no second set of activations.
func (n *Net) inferGraph(dom, batch int, size [3]int, what int) (*graph, *ops.Tensor, error) {
	g, ok := n.graphs[graphKey{dom, batch, size, true}]
	if !ok {
		var err error
		if g, err = n.graph(graphKey{dom, batch, size, false}); err != nil {
			return nil, nil, err
		}
	}
	result, err := g.output(what)
	if errors.Is(err, ops.ErrOutOfMemory) && len(n.graphs) > 1 {
		if err := n.freeGraphsExcept(g); err != nil {
			return nil, nil, err
		}
		result, err = g.output(what)
	}
	if err != nil {
		return nil, nil, err
	}
	return g, result, nil
}

// ReserveInference allocates what Probabilities needs for this batch and
// window size without running anything, so that a shape the engine cannot
// hold fails here (with ops.ErrOutOfMemory or ops.ErrTooLarge), before
// any input is prepared.
func (n *Net) ReserveInference(dom, batch int, size [3]int) error {
	_, _, err := n.inferGraph(dom, batch, size, outProbs)
	return err
}

// ReserveTraining builds the training graphs of these domains for this
// batch and patch size without running anything, so that a shape the
// engine cannot hold fails here (with ops.ErrOutOfMemory or
// ops.ErrTooLarge) before any data is prepared. A failed reservation frees
// what it built.
func (n *Net) ReserveTraining(doms []int, batch int, size [3]int) error {
	for _, dom := range doms {
		if _, err := n.graph(graphKey{dom, batch, size, true}); err != nil {
			for k, g := range n.graphs {
				if k.training && k.n == batch && k.size == size {
					n.freeGraph(g)
				}
			}
			if serr := n.e.Sync(); serr != nil {
				return serr
			}
			return err
		}
	}
	return nil
}

// output returns the tensor an inference pass returns, allocating the
// probabilities on first use.
func (g *graph) output(what int) (*ops.Tensor, error) {
	if what == outLogits {
		return g.logits.v, nil
	}
	if g.probs == nil {
		t, err := g.alloc(g.logits.v.Len())
		if err != nil {
			return nil, fmt.Errorf("class probabilities: %w", err)
		}
		g.probs = t
	}
	return g.probs, nil
}

// inferPass records the forward pass and, for probabilities, the softmax.
func (g *graph) inferPass(what int) error {
	if err := g.forward(); err != nil {
		return err
	}
	if what == outLogits {
		return nil
	}
	p := ref.LossParams{N: g.n, Classes: g.net.Model.Config.Domains[g.dom].Classes, Size: ref.Dims3(g.size)}
	return g.net.e.Softmax(p, g.logits.v, g.probs)
}

// replayer is an engine that records a pass once and resubmits it (the GPU
// engine): a forward pass then costs one submission instead of recording
// every dispatch again.
type replayer interface {
	Capture(fn func() error) (*ops.Recording, error)
	Timed() bool
	WriteSlot(t *ops.Tensor) (*ops.InputSlot, error)
	WriteLabelsSlot(t *ops.Tensor) (*ops.InputSlot, error)
	intoReader
	ReadSlot(t *ops.Tensor) (*ops.OutputSlot, error)
}

// inferReplay is a recorded inference pass: its input upload and its
// download of the result.
type inferReplay struct {
	rec  *ops.Recording
	slot *ops.InputSlot
	out  *ops.OutputSlot
}

// replayForward runs the graph's recorded inference pass (what: logits or
// probabilities) on x into out, recording it on first use, and again when
// the engine's timing was switched since (a profile needs the timestamps,
// a plain run is better without them).
func (g *graph) replayForward(rp replayer, x []float32, what int, result *ops.Tensor, out []float32) error {
	r := g.replays[what]
	if r != nil && r.rec.Timed() != rp.Timed() {
		r.rec.Release()
		r, g.replays[what] = nil, nil
	}
	if r == nil {
		r = &inferReplay{}
		rec, err := rp.Capture(func() error {
			var err error
			if r.slot, err = rp.WriteSlot(g.input.v); err != nil {
				return err
			}
			if err := g.inferPass(what); err != nil {
				return err
			}
			r.out, err = rp.ReadSlot(result)
			return err
		})
		if err != nil {
			return err
		}
		r.rec = rec
		g.replays[what] = r
	}
	if err := r.slot.Write(x); err != nil {
		return err
	}
	// The result goes from staging memory straight into the caller's slice.
	if err := r.out.SetDest(out); err != nil {
		return err
	}
	return r.rec.Run()
}

// TrainStep runs forward, the loss (cross-entropy + soft Dice over the
// foreground classes), backward and one optimiser step on a batch of domain
// dom. labels holds class indices [batch, D, H, W]. On a GPU engine the
// whole step is one submission; the losses are read back at its end.
func (n *Net) TrainStep(dom, batch int, size [3]int, x []float32, labels []int32) (Losses, error) {
	return n.run(dom, batch, size, x, labels, true)
}

// Gradients runs forward, the loss and backward without updating the
// parameters; Gradient then reads a parameter's gradient.
func (n *Net) Gradients(dom, batch int, size [3]int, x []float32, labels []int32) (Losses, error) {
	return n.run(dom, batch, size, x, labels, false)
}

// Gradient reads the gradient of the named parameter left by the last
// Gradients or TrainStep; ok is false when the parameter has none.
func (n *Net) Gradient(name string) ([]float32, bool, error) {
	t, ok := n.grads[name]
	if !ok {
		return nil, false, nil
	}
	v := make([]float32, t.Len())
	return v, true, n.e.Read(t, v)
}

func (n *Net) run(dom, batch int, size [3]int, x []float32, labels []int32, update bool) (Losses, error) {
	if err := n.checkInput(dom, batch, size, x); err != nil {
		return Losses{}, err
	}
	classes := n.Model.Config.Domains[dom].Classes
	if i := firstOutside(labels, classes); i >= 0 {
		return Losses{}, fmt.Errorf("label %d at index %d outside 0..%d", labels[i], i, classes-1)
	}
	g, err := n.graph(graphKey{dom, batch, size, true})
	if err != nil {
		return Losses{}, err
	}
	if len(labels) != g.labels.Len() {
		return Losses{}, fmt.Errorf("labels have %d values, want %d", len(labels), g.labels.Len())
	}
	// Loss weights: 1 for the logits, halving per head level, normalised.
	weights := []float64{1}
	total := 1.0
	for _, h := range g.heads {
		w := math.Ldexp(1, -h.level)
		weights = append(weights, w)
		total += w
	}
	for _, h := range g.heads {
		h.downsample(labels, batch, size)
	}
	var vals []float32
	if rp, ok := n.e.(replayer); ok && !n.recordEachStep {
		vals, err = g.replayStep(rp, x, labels, weights, total)
	} else {
		vals, err = g.recordStep(x, labels, weights, total)
	}
	if err != nil {
		return Losses{}, err
	}
	if update {
		if err := n.update(dom); err != nil {
			return Losses{}, err
		}
		if err := n.e.Sync(); err != nil {
			return Losses{}, err
		}
	}
	var out Losses
	for i := range weights {
		out.CrossEntropy += weights[i] / total * float64(vals[2*i])
		out.Dice += weights[i] / total * float64(vals[2*i+1])
	}
	return out, nil
}

// firstOutside returns the index of the first label outside 0..classes-1,
// or -1. It counts without branching first (a third of the time of an
// early-exit loop over a 2×128³ batch), on all cores, and looks for the
// index only then.
func firstOutside(labels []int32, classes int) int {
	c := uint32(classes)
	var bad atomic.Int64
	par.Ranges(len(labels), 1<<18, func(lo, hi int) {
		n := 0
		for _, l := range labels[lo:hi] {
			if uint32(l) >= c { // negative labels wrap above
				n++
			}
		}
		bad.Add(int64(n))
	})
	if bad.Load() == 0 {
		return -1
	}
	for i, l := range labels {
		if uint32(l) >= c {
			return i
		}
	}
	return -1
}

// lossReads asks for the graph's loss values: cross-entropy and Dice of
// the logits, then of each head, pair by pair into vals (two per pair).
func (g *graph) lossReads() (vals []float32, reads []readReq) {
	pairs := append([][2]*ops.Tensor{{g.lossCE, g.lossD}}, headLosses(g.heads)...)
	vals = make([]float32, 2*len(pairs))
	for i, pair := range pairs {
		reads = append(reads, readReq{pair[0], vals[2*i : 2*i+1]}, readReq{pair[1], vals[2*i+1 : 2*i+2]})
	}
	return vals, reads
}

// passes records the forward pass, the losses of the logits and of every
// head with their gradients (weights[i]/total each), and the backward pass.
func (g *graph) passes(weights []float64, total float64) error {
	e := g.net.e
	classes := g.net.Model.Config.Domains[g.dom].Classes
	if err := g.forward(); err != nil {
		return err
	}
	if err := lossAndGrad(e, classes, g.n, g.size, g.logits, g.labels, g.dCE, g.dDice, g.lossCE, g.lossD, weights[0]/total, len(g.heads) == 0); err != nil {
		return err
	}
	for i, h := range g.heads {
		if err := lossAndGrad(e, classes, g.n, [3]int(h.a.size), h.a, h.labels, h.dCE, h.dDice, h.lossCE, h.lossD, weights[i+1]/total, false); err != nil {
			return err
		}
	}
	return g.backward()
}

// recordStep uploads the batch (the heads' labels already down-sampled),
// records and runs the passes and returns the loss values, pair by pair.
func (g *graph) recordStep(x []float32, labels []int32, weights []float64, total float64) ([]float32, error) {
	e := g.net.e
	if err := e.Write(g.input.v, x); err != nil {
		return nil, err
	}
	if err := e.WriteLabels(g.labels, labels); err != nil {
		return nil, err
	}
	for _, h := range g.heads {
		if err := e.WriteLabels(h.labels, h.host); err != nil {
			return nil, err
		}
	}
	if err := g.passes(weights, total); err != nil {
		return nil, err
	}
	vals, reads := g.lossReads()
	return vals, readAll(e, reads)
}

// stepRecording is a training graph's recorded passes, uploads to loss
// downloads, replayed by every step: recording a step's thousands of
// dispatches costs the host as much as a fast GPU takes to run them.
type stepRecording struct {
	rec       *ops.Recording
	x, labels *ops.InputSlot
	heads     []*ops.InputSlot
	losses    []float32
	frozen    bool // FreezeShared when recorded: it decides which gradients the passes write
}

// replayStep is recordStep through the graph's recorded step, recording it
// on first use and again when what it depends on changed.
func (g *graph) replayStep(rp replayer, x []float32, labels []int32, weights []float64, total float64) ([]float32, error) {
	n := g.net
	if s := g.stepRec; s != nil && (s.rec.Timed() != rp.Timed() || s.frozen != n.FreezeShared) {
		s.rec.Release()
		g.stepRec = nil
	}
	if g.stepRec == nil {
		s := &stepRecording{frozen: n.FreezeShared}
		var reads []readReq
		s.losses, reads = g.lossReads()
		rec, err := rp.Capture(func() error {
			var err error
			if s.x, err = rp.WriteSlot(g.input.v); err != nil {
				return err
			}
			if s.labels, err = rp.WriteLabelsSlot(g.labels); err != nil {
				return err
			}
			for _, h := range g.heads {
				slot, err := rp.WriteLabelsSlot(h.labels)
				if err != nil {
					return err
				}
				s.heads = append(s.heads, slot)
			}
			if err := g.passes(weights, total); err != nil {
				return err
			}
			return recordReads(rp, reads)
		})
		if err != nil {
			return nil, err
		}
		s.rec = rec
		g.stepRec = s
	}
	s := g.stepRec
	if err := s.x.Write(x); err != nil {
		return nil, err
	}
	if err := s.labels.WriteLabels(labels); err != nil {
		return nil, err
	}
	for i, h := range g.heads {
		if err := s.heads[i].WriteLabels(h.host); err != nil {
			return nil, err
		}
	}
	if err := s.rec.Run(); err != nil {
		return nil, err
	}
	return slices.Clone(s.losses), nil
}

// intoReader records downloads that a later wait fills (the GPU engine).
type intoReader interface {
	ReadInto(t *ops.Tensor, dst []float32) error
}

// recordReads records the downloads of reqs.
func recordReads(r intoReader, reqs []readReq) error {
	for _, q := range reqs {
		if err := r.ReadInto(q.t, q.dst); err != nil {
			return err
		}
	}
	return nil
}

// readReq asks for a tensor's values.
type readReq struct {
	t   *ops.Tensor
	dst []float32
}

// readAll reads several tensors with one wait where the engine can record
// downloads (the GPU engine), instead of one round trip per tensor.
func readAll(e ops.Engine, reqs []readReq) error {
	if r, ok := e.(intoReader); ok {
		if err := recordReads(r, reqs); err != nil {
			return err
		}
		return e.Sync()
	}
	for _, q := range reqs {
		if err := e.Read(q.t, q.dst); err != nil {
			return err
		}
	}
	return nil
}

func headLosses(heads []*lossHead) [][2]*ops.Tensor {
	var out [][2]*ops.Tensor
	for _, h := range heads {
		out = append(out, [2]*ops.Tensor{h.lossCE, h.lossD})
	}
	return out
}

// lossAndGrad computes cross-entropy and soft Dice of the output a against
// labels and sets a's gradient to w times the sum of their gradients
// (plain is w = 1 without scaling).
func lossAndGrad(e ops.Engine, classes, batch int, size [3]int, a *act, labels, dCE, dDice, lossCE, lossD *ops.Tensor, w float64, plain bool) error {
	lp := ref.LossParams{N: batch, Classes: classes, Size: ref.Dims3(size)}
	dp := ref.DiceParams{LossParams: lp, Eps: ref.DefaultDiceEps}
	if err := e.CrossEntropy(lp, a.v, labels, dCE, lossCE); err != nil {
		return err
	}
	if err := e.SoftDice(dp, a.v, labels, dDice, lossD); err != nil {
		return err
	}
	if plain {
		return e.Add(dCE, dDice, a.g)
	}
	if err := e.Fill(a.g, 0); err != nil {
		return err
	}
	if err := e.Axpy(float32(w), dCE, a.g); err != nil {
		return err
	}
	return e.Axpy(float32(w), dDice, a.g)
}

// update applies the optimiser to every parameter the domain trains.
func (n *Net) update(dom int) error {
	n.Step++
	o := n.Opt
	// One call per packed group: every update is elementwise with the same
	// scalars, so a group's parameters step together.
	for _, pg := range n.trainedGroups(dom) {
		var err error
		switch o.Kind {
		case "adam":
			ap := ref.DefaultAdam(o.LR)
			ap.WeightDecay = o.WeightDecay
			err = n.e.AdamStep(ap, n.Step, pg.values, pg.grads, pg.s1, pg.s2)
		case "sgd":
			sp := ref.SGDParams{LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay, Nesterov: o.Nesterov}
			err = n.e.SGDStep(sp, n.Step, pg.values, pg.grads, pg.s1)
		default:
			err = fmt.Errorf("unknown optimizer %q (want adam or sgd)", o.Kind)
		}
		if err != nil {
			return fmt.Errorf("updating the parameters from %s on: %w", pg.params[0].Name, err)
		}
	}
	return nil
}

// Pull copies the parameter values from the engine into the model.
func (n *Net) Pull() error {
	reqs := make([]readReq, 0, len(n.Model.Params))
	for _, p := range n.Model.Params {
		reqs = append(reqs, readReq{n.values[p.Name], n.Model.Values[p.Name]})
	}
	return readAll(n.e, reqs)
}

// PlanBytes returns the bytes of the activations, gradients and loss tensors
// of the graph for the key (built if needed): the step's memory plan,
// parameters and optimiser state excluded.
func (n *Net) PlanBytes(dom, batch int, size [3]int, training bool) (int64, error) {
	g, err := n.graph(graphKey{dom, batch, size, training})
	if err != nil {
		return 0, err
	}
	return g.bytes, nil
}

// Names of optimiser-state tensors in checkpoints.
const (
	stateFirst  = StatePrefix + "m." // Adam's first moment or SGD's momentum
	stateSecond = StatePrefix + "v." // Adam's second moment
)

// OptimizerState reads the optimiser's tensors, named for a checkpoint.
func (n *Net) OptimizerState() (map[string][]float32, error) {
	out := map[string][]float32{}
	var reqs []readReq
	for prefix, m := range map[string]map[string]*ops.Tensor{stateFirst: n.state1, stateSecond: n.state2} {
		for name, t := range m {
			v := make([]float32, t.Len())
			out[prefix+name] = v
			reqs = append(reqs, readReq{t, v})
		}
	}
	return out, readAll(n.e, reqs)
}

// SetOptimizerState restores tensors written by OptimizerState.
func (n *Net) SetOptimizerState(state map[string][]float32) error {
	for d := range n.Model.Config.Domains {
		if err := n.ensureGrads(d); err != nil {
			return err
		}
	}
	for key, v := range state {
		var t *ops.Tensor
		switch {
		case len(key) > len(stateFirst) && key[:len(stateFirst)] == stateFirst:
			t = n.state1[key[len(stateFirst):]]
		case len(key) > len(stateSecond) && key[:len(stateSecond)] == stateSecond:
			t = n.state2[key[len(stateSecond):]]
		}
		if t == nil {
			continue // state of a parameter that no longer learns (frozen)
		}
		if t.Len() != len(v) {
			return fmt.Errorf("optimiser state %s has %d values, want %d", key, len(v), t.Len())
		}
		if err := n.e.Write(t, v); err != nil {
			return err
		}
	}
	return nil
}
