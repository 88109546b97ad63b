package ref

import (
	"fmt"
	"math"
)

// AdamParams holds the hyper-parameters of Adam as torch.optim.Adam defines
// it (amsgrad and maximize off), with L2 weight decay: the gradient becomes
// grad + WeightDecay·param before the moments are updated. At step t (from 1):
//
//	m = Beta1·m + (1 − Beta1)·g
//	v = Beta2·v + (1 − Beta2)·g²
//	param −= LR/(1 − Beta1^t) · m / (sqrt(v)/sqrt(1 − Beta2^t) + Eps)
type AdamParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

// DefaultAdam returns PyTorch's default Adam hyper-parameters with the given
// learning rate: betas (0.9, 0.999), eps 1e-8, no weight decay.
func DefaultAdam(lr float64) AdamParams {
	return AdamParams{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

func (p AdamParams) String() string {
	return fmt.Sprintf("AdamParams{LR=%g Beta1=%g Beta2=%g Eps=%g WeightDecay=%g}", p.LR, p.Beta1, p.Beta2, p.Eps, p.WeightDecay)
}

// Validate applies PyTorch's checks: LR, Eps and WeightDecay non-negative,
// betas in [0, 1), all finite.
func (p AdamParams) Validate() error {
	var err error
	switch {
	case !finiteNonNeg(p.LR):
		err = fmt.Errorf("learning rate %g must be non-negative and finite", p.LR)
	case !(p.Beta1 >= 0 && p.Beta1 < 1):
		err = fmt.Errorf("beta1 %g must be in [0, 1)", p.Beta1)
	case !(p.Beta2 >= 0 && p.Beta2 < 1):
		err = fmt.Errorf("beta2 %g must be in [0, 1)", p.Beta2)
	case !finiteNonNeg(p.Eps):
		err = fmt.Errorf("eps %g must be non-negative and finite", p.Eps)
	case !finiteNonNeg(p.WeightDecay):
		err = fmt.Errorf("weight decay %g must be non-negative and finite", p.WeightDecay)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

func finiteNonNeg(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }

func checkStep(op string, step int) error {
	if step < 1 {
		return fmt.Errorf("%s: step %d must be at least 1 (the first step is 1)", op, step)
	}
	return nil
}

// AdamStep applies step number step (1 for the first) of Adam to param in
// place, using its gradient grad and updating the first and second moments m
// and v, which must be zero before the first step. All four slices have the
// same length.
func AdamStep(p AdamParams, step int, param, grad, m, v []float32) error {
	return adamStep(p, step, param, grad, m, v)
}

func adamStep[T float](p AdamParams, step int, param, grad, m, v []T) error {
	const op = "ref.AdamStep"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(checkStep(op, step),
		checkSameLen(op, []string{"parameter", "gradient", "first moment", "second moment"},
			len(param), len(grad), len(m), len(v))); err != nil {
		return err
	}
	t := float64(step)
	stepSize := p.LR / (1 - math.Pow(p.Beta1, t))
	bc2Sqrt := math.Sqrt(1 - math.Pow(p.Beta2, t))
	for i := range param {
		g := float64(grad[i]) + p.WeightDecay*float64(param[i])
		mi := p.Beta1*float64(m[i]) + (1-p.Beta1)*g
		vi := p.Beta2*float64(v[i]) + (1-p.Beta2)*g*g
		m[i], v[i] = T(mi), T(vi)
		param[i] = T(float64(param[i]) - stepSize*mi/(math.Sqrt(vi)/bc2Sqrt+p.Eps))
	}
	return nil
}

// SGDParams holds the hyper-parameters of SGD as torch.optim.SGD defines it
// (maximize off). With d = grad + WeightDecay·param, at step t (from 1):
//
//	buf = d at t = 1, else Momentum·buf + (1 − Dampening)·d
//	d = d + Momentum·buf with Nesterov, else buf (when Momentum ≠ 0)
//	param −= LR·d
type SGDParams struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

func (p SGDParams) String() string {
	return fmt.Sprintf("SGDParams{LR=%g Momentum=%g Dampening=%g WeightDecay=%g Nesterov=%t}",
		p.LR, p.Momentum, p.Dampening, p.WeightDecay, p.Nesterov)
}

// Validate applies PyTorch's checks: LR, Momentum and WeightDecay
// non-negative and finite, and Nesterov only with a positive momentum and
// zero dampening.
func (p SGDParams) Validate() error {
	var err error
	switch {
	case !finiteNonNeg(p.LR):
		err = fmt.Errorf("learning rate %g must be non-negative and finite", p.LR)
	case !finiteNonNeg(p.Momentum):
		err = fmt.Errorf("momentum %g must be non-negative and finite", p.Momentum)
	case math.IsNaN(p.Dampening) || math.IsInf(p.Dampening, 0):
		err = fmt.Errorf("dampening %g must be finite", p.Dampening)
	case !finiteNonNeg(p.WeightDecay):
		err = fmt.Errorf("weight decay %g must be non-negative and finite", p.WeightDecay)
	case p.Nesterov && (p.Momentum <= 0 || p.Dampening != 0):
		err = fmt.Errorf("Nesterov momentum needs a positive momentum and zero dampening")
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// SGDStep applies step number step (1 for the first) of SGD to param in
// place, using its gradient grad and updating the momentum buffer buf, which
// may be nil when Momentum is 0 and is set, not read, at step 1.
func SGDStep(p SGDParams, step int, param, grad, buf []float32) error {
	return sgdStep(p, step, param, grad, buf)
}

func sgdStep[T float](p SGDParams, step int, param, grad, buf []T) error {
	const op = "ref.SGDStep"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	names := []string{"parameter", "gradient", "momentum buffer"}
	lens := []int{len(param), len(grad), len(buf)}
	if p.Momentum == 0 && len(buf) == 0 {
		names, lens = names[:2], lens[:2]
	}
	if err := firstErr(checkStep(op, step), checkSameLen(op, names, lens...)); err != nil {
		return err
	}
	for i := range param {
		d := float64(grad[i]) + p.WeightDecay*float64(param[i])
		if p.Momentum != 0 {
			b := d
			if step > 1 {
				b = p.Momentum*float64(buf[i]) + (1-p.Dampening)*d
			}
			buf[i] = T(b)
			if p.Nesterov {
				d += p.Momentum * b
			} else {
				d = b
			}
		}
		param[i] = T(float64(param[i]) - p.LR*d)
	}
	return nil
}
