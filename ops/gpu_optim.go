package ops

import (
	"fmt"
	"math"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The optimisers run shaders/optim.comp, one elementwise pass that updates
// the parameters and their state in place. The step-dependent scalars (bias
// corrections) are computed here in float64 and rounded once.

// Modes of shaders/optim.comp.
const (
	optimAdam uint32 = iota
	optimSGD
	optimSGDMomentum
)

const optimWG = 256

// Flags of pushOptim for SGD with momentum.
const (
	sgdNesterov uint32 = 1 << iota
	sgdFirst
)

// pushOptim is optim.comp's push-constant block (40 bytes).
type pushOptim struct {
	N, Flags       uint32
	LR, WD         float32
	B1, OneMinusB1 float32
	B2, OneMinusB2 float32
	BC2Sqrt, Eps   float32
}

func checkOptimStep(op string, step int) error {
	if step < 1 {
		return fmt.Errorf("ops.%s: step %d must be at least 1 (the first step is 1)", op, step)
	}
	return nil
}

// optim records one optim.comp pass, four elements per invocation when the
// length allows.
func (g *GPU) optim(op string, mode uint32, push pushOptim, param, grad, m, v *Tensor) error {
	// The shader's code writes m and v whatever the mode, so unused ones
	// are bound to sink slots.
	acc := []vk.Access{vk.ReadWrite, vk.Read, vk.ReadWrite, vk.ReadWrite}
	vec4 := param.n%4 == 0
	k, err := g.kernel("optim", acc, 40, optimWG, mode, b32(vec4))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	items := param.n
	if vec4 {
		items /= 4
	}
	push.N = uint32(items)
	return g.dispatch(op, k, vk.Grid1D(items, optimWG), push, param.gpu.buf, grad.gpu.buf, g.out(m), g.out(v))
}

// AdamStep implements Engine.
func (g *GPU) AdamStep(p ref.AdamParams, step int, param, grad, m, v *Tensor) error {
	const op = "AdamStep"
	if err := checkOptimStep(op, step); err != nil {
		return err
	}
	n := param.Len()
	if err := checkArgs(g, op, p, in("param", param, -1), in("grad", grad, n), in("m", m, n), in("v", v, n)); err != nil {
		return err
	}
	t := float64(step)
	push := pushOptim{
		LR:         float32(p.LR / (1 - math.Pow(p.Beta1, t))),
		WD:         float32(p.WeightDecay),
		B1:         float32(p.Beta1),
		OneMinusB1: float32(1 - p.Beta1),
		B2:         float32(p.Beta2),
		OneMinusB2: float32(1 - p.Beta2),
		BC2Sqrt:    float32(math.Sqrt(1 - math.Pow(p.Beta2, t))),
		Eps:        float32(p.Eps),
	}
	return g.optim(op, optimAdam, push, param, grad, m, v)
}

// SGDStep implements Engine.
func (g *GPU) SGDStep(p ref.SGDParams, step int, param, grad, buf *Tensor) error {
	const op = "SGDStep"
	if err := checkOptimStep(op, step); err != nil {
		return err
	}
	n := param.Len()
	bufArg := in("buf", buf, n)
	if p.Momentum == 0 {
		bufArg = opt("buf", buf, n)
	}
	if err := checkArgs(g, op, p, in("param", param, -1), in("grad", grad, n), bufArg); err != nil {
		return err
	}
	push := pushOptim{
		LR:         float32(p.LR),
		WD:         float32(p.WeightDecay),
		B1:         float32(p.Momentum),
		OneMinusB1: float32(1 - p.Dampening),
	}
	mode := optimSGD
	if p.Momentum != 0 {
		mode = optimSGDMomentum
	}
	if p.Nesterov {
		push.Flags |= sgdNesterov
	}
	if step == 1 {
		push.Flags |= sgdFirst
	}
	return g.optim(op, mode, push, param, grad, buf, nil)
}
