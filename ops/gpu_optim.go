package ops

import "github.com/u2net-vk/u2net/ops/ref"

// AdamStep implements Engine.
func (g *GPU) AdamStep(p ref.AdamParams, step int, param, grad, m, v *Tensor) error {
	return errNotImplemented("AdamStep")
}

// SGDStep implements Engine.
func (g *GPU) SGDStep(p ref.SGDParams, step int, param, grad, buf *Tensor) error {
	return errNotImplemented("SGDStep")
}
