package ops

import "github.com/u2net-vk/u2net/ops/ref"

// Concat implements Engine.
func (g *GPU) Concat(p ref.ConcatParams, parts []*Tensor, y *Tensor) error {
	return errNotImplemented("Concat")
}

// Split implements Engine.
func (g *GPU) Split(p ref.ConcatParams, x *Tensor, parts []*Tensor) error {
	return errNotImplemented("Split")
}

// Upsample implements Engine.
func (g *GPU) Upsample(p ref.UpsampleParams, x, y *Tensor) error {
	return errNotImplemented("Upsample")
}

// UpsampleBackward implements Engine.
func (g *GPU) UpsampleBackward(p ref.UpsampleParams, dy, dx *Tensor) error {
	return errNotImplemented("UpsampleBackward")
}

// Pad implements Engine.
func (g *GPU) Pad(p ref.PadParams, x, y *Tensor) error {
	return errNotImplemented("Pad")
}

// PadBackward implements Engine.
func (g *GPU) PadBackward(p ref.PadParams, dy, dx *Tensor) error {
	return errNotImplemented("PadBackward")
}
