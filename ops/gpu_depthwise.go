package ops

import "github.com/u2net-vk/u2net/ops/ref"

// DepthwiseConv3d implements Engine.
func (g *GPU) DepthwiseConv3d(p ref.DepthwiseParams, x, w, b, y *Tensor) error {
	return errNotImplemented("DepthwiseConv3d")
}

// DepthwiseConv3dBackward implements Engine.
func (g *GPU) DepthwiseConv3dBackward(p ref.DepthwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	return errNotImplemented("DepthwiseConv3dBackward")
}
