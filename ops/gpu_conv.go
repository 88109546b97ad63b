package ops

import "github.com/u2net-vk/u2net/ops/ref"

// PointwiseConv3d implements Engine.
func (g *GPU) PointwiseConv3d(p ref.PointwiseParams, x, w, b, y *Tensor) error {
	return errNotImplemented("PointwiseConv3d")
}

// PointwiseConv3dBackward implements Engine.
func (g *GPU) PointwiseConv3dBackward(p ref.PointwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	return errNotImplemented("PointwiseConv3dBackward")
}

// Conv3d implements Engine.
func (g *GPU) Conv3d(p ref.ConvParams, x, w, b, y *Tensor) error {
	return errNotImplemented("Conv3d")
}

// Conv3dBackward implements Engine.
func (g *GPU) Conv3dBackward(p ref.ConvParams, x, w, dy, dx, dw, db *Tensor) error {
	return errNotImplemented("Conv3dBackward")
}

// ConvTranspose3d implements Engine.
func (g *GPU) ConvTranspose3d(p ref.ConvTransposeParams, x, w, b, y *Tensor) error {
	return errNotImplemented("ConvTranspose3d")
}

// ConvTranspose3dBackward implements Engine.
func (g *GPU) ConvTranspose3dBackward(p ref.ConvTransposeParams, x, w, dy, dx, dw, db *Tensor) error {
	return errNotImplemented("ConvTranspose3dBackward")
}
