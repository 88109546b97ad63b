package ops

import "github.com/u2net-vk/u2net/ops/ref"

// Softmax implements Engine.
func (g *GPU) Softmax(p ref.LossParams, logits, probs *Tensor) error {
	return errNotImplemented("Softmax")
}

// Argmax implements Engine.
func (g *GPU) Argmax(p ref.LossParams, logits, labels *Tensor) error {
	return errNotImplemented("Argmax")
}

// CrossEntropy implements Engine.
func (g *GPU) CrossEntropy(p ref.LossParams, logits, labels, dlogits, loss *Tensor) error {
	return errNotImplemented("CrossEntropy")
}

// SoftDice implements Engine.
func (g *GPU) SoftDice(p ref.DiceParams, logits, labels, dlogits, loss *Tensor) error {
	return errNotImplemented("SoftDice")
}
