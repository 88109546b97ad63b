package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

const (
	reduceWG = 256
	// reduceCPU is the workgroup on a CPU device, where each level of the
	// tree is a pass over the whole workgroup.
	reduceCPU = 64
	// reduceSeg is the number of elements one workgroup of the first pass
	// sums: large enough to amortise the tree, small enough that a 64³
	// volume spreads over many workgroups.
	reduceSeg = 4096
)

type pushChannels struct {
	N, C, Vox, Seg, Chunks uint32
}

// ChannelSum implements Engine: sums[c] = Σ over n and voxels of x[n, c],
// as a deterministic two-pass reduction.
func (g *GPU) ChannelSum(n, c int, size ref.Dims3, x, sums *Tensor) error {
	const op = "ChannelSum"
	vox := size.Voxels()
	if n <= 0 || c <= 0 || size[0] <= 0 || size[1] <= 0 || size[2] <= 0 {
		return fmt.Errorf("ops.%s: sizes N=%d C=%d %v must be positive", op, n, c, size)
	}
	if vox > maxElements || n*c > maxElements || n*c*vox > maxElements {
		return fmt.Errorf("ops.%s: %d×%d×%v is more elements than a tensor can hold", op, n, c, size)
	}
	if err := checkArgs(g, op, nil, in("x", x, n*c*vox), in("sums", sums, c)); err != nil {
		return err
	}
	return g.channelSum(op, n, c, vox, x.gpu.buf, sums.gpu.buf)
}

// channelSum records the two passes over buffers; kernels of other
// operations use it for bias gradients of intermediate buffers.
func (g *GPU) channelSum(op string, n, c, vox int, x, sums *vk.Buffer) error {
	wg := tuned(g, reduceWG, reduceCPU)
	total := n * vox
	seg := reduceSeg
	if need := (total + 65534) / 65535; need > seg {
		seg = (need + wg - 1) / wg * wg
	}
	chunks := (total + seg - 1) / seg
	if c > 65535 {
		return fmt.Errorf("ops.%s: %d channels, at most 65535", op, c)
	}
	// A vec4 never straddles two planes when the plane and the segment are
	// multiples of four.
	vec4 := vox%4 == 0 && seg%4 == 0
	first, err := g.kernel("reduce_channels", []vk.Access{g.input(vec4), vk.Write}, 20, uint32(wg), 0, b32(vec4))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	second, err := g.kernel("reduce_channels", []vk.Access{g.input(false), vk.Write}, 20, uint32(wg), 1, 0)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	partial, err := g.scratchBuf("reduce-channels", c*chunks)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushChannels{uint32(n), uint32(c), uint32(vox), uint32(seg), uint32(chunks)}
	if err := g.dispatch(op, first, [3]uint32{uint32(chunks), uint32(c), 1}, push, x, partial); err != nil {
		return err
	}
	return g.dispatch(op, second, [3]uint32{uint32(c), 1, 1}, push, partial, sums)
}
