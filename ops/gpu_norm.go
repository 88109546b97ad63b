package ops

import "github.com/u2net-vk/u2net/ops/ref"

// ChannelSum implements Engine.
func (g *GPU) ChannelSum(n, c int, size ref.Dims3, x, sums *Tensor) error {
	return errNotImplemented("ChannelSum")
}

// InstanceNorm3d implements Engine.
func (g *GPU) InstanceNorm3d(p ref.NormParams, x, r, gamma, beta, y, mean, invStd *Tensor) error {
	return errNotImplemented("InstanceNorm3d")
}

// InstanceNorm3dBackward implements Engine.
func (g *GPU) InstanceNorm3dBackward(p ref.NormParams, x, r, gamma, beta, dy, dx, dgamma, dbeta *Tensor) error {
	return errNotImplemented("InstanceNorm3dBackward")
}
