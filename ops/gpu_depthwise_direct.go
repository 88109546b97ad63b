package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// CPU devices run the depthwise convolution on depthwise_direct.comp
// (register blocks, no shared memory, no barriers), as they run the dense
// ones on conv_direct.
const (
	// directDWMaxK bounds the kernel: its taps are unrolled into
	// registers.
	directDWMaxK = 5
	// directDWVox is the outputs of an invocation's block (rows of up to
	// directDWTX voxels along w), directDWGradVox those of a weight
	// gradient's step, which adds each into K³ sums. Lavapipe, 3³ at the
	// network's levels (BenchmarkDepthwiseDirect, 1×8×32³ to 1×64×4³):
	// blocks of 64 beat 32 by up to 25%; rows of 32 were no faster than 16.
	// Rows of a multiple of 4 voxels are read as vec4s (8×32³: forward
	// 1.65-1.71 → 1.26 ms, weight gradient 1.45 → 1.14-1.18).
	directDWVox     = 64
	directDWTX      = 16
	directDWGradVox = 64
)

// directDWPlanes is the output planes of an invocation's block: blocks
// of two planes load each source row once for both, where it feeds them
// through different kd (lavapipe, 3³ at the network's levels, 1×8×32³ to
// 1×64×4³: forward and data gradient 10-16% faster, weight gradient
// 10-17%). Larger kernels keep one plane, as their unrolled code would
// double.
func directDWPlanes(p ref.DepthwiseParams) int {
	if p.Kernel > 3 {
		return 1
	}
	return min(p.Size[0], 2)
}

// directDepthwise reports whether depthwise_direct computes p.
func (g *GPU) directDepthwise(p ref.DepthwiseParams) bool {
	on := g.cpuTuned()
	if g.directOn != nil {
		on = *g.directOn
	}
	return on && p.Kernel <= directDWMaxK
}

type pushDepthwiseDirect struct {
	Size, Blocks, Split [4]uint32
	Join                uint32
}

// directVec4 reports whether depthwise_direct reads p's rows as vec4s: rows
// of a multiple of 4 voxels, from an input that is not up-sampled.
func directVec4(p ref.DepthwiseParams) bool {
	return p.Size[2]%4 == 0 && p.UpFactor() == (ref.Dims3{1, 1, 1})
}

// directDWUpMax bounds the up-sampling factors whose blocks the data
// gradient sums in registers (the network's are 2).
const directDWUpMax = 4

// directDWShape is the block of an invocation of depthwise_direct's
// convolution for p: TY rows × TX voxels × TD planes. The data gradient of
// an up-sampled input (flip) takes multiples of the factors, and ok is
// false where they exceed directDWUpMax.
func directDWShape(p ref.DepthwiseParams, flip bool) (ty, tx, td int, ok bool) {
	ty, tx = directDWBlock(p.Size, directDWVox)
	td = directDWPlanes(p)
	u := p.UpFactor()
	if !flip || u == (ref.Dims3{1, 1, 1}) {
		return ty, tx, td, true
	}
	if max(u[0], u[1], u[2]) > directDWUpMax {
		return 0, 0, 0, false
	}
	// The sizes are multiples of the factors, so these fit the volume.
	multiple := func(n, f int) int { return max(f, n/f*f) }
	return multiple(ty, u[1]), multiple(tx, u[2]), multiple(td, u[0]), true
}

// directDWBlock is the block of an invocation: TY rows × TX voxels, at
// most vox in all.
func directDWBlock(size ref.Dims3, vox int) (ty, tx int) {
	tx = min(size[2], directDWTX)
	return min(size[1], max(1, vox/tx)), tx
}

// depthwiseDirect records depthwise_direct's convolution: y = conv(x, w) + b,
// or with flip conv(x, flip(w)) without bias; x or y may be joined. With
// stats not nil (forward only) each invocation also writes its block's
// (sum, M2, count, mean) there.
func (g *GPU) depthwiseDirect(op string, p ref.DepthwiseParams, x dwPlanes, w, b *Tensor, y dwPlanes, flip bool, stats *vk.Buffer) error {
	ty, tx, td, ok := directDWShape(p, flip)
	if !ok {
		return fmt.Errorf("ops.%s: depthwise_direct cannot sum up-sampling blocks of %v", op, p.Up)
	}
	bw, bh := ceilDiv(p.Size[2], tx), ceilDiv(p.Size[1], ty)
	invocs := p.N * p.C * ceilDiv(p.Size[0], td) * bh * bw
	vec4 := directVec4(p)
	join, split, x2, y2 := g.dwJoin(p.C, x, y)
	acc, y1Access, y2Access := y.accumulates()
	u := p.UpFactor()
	kern, err := g.kernel("depthwise_direct",
		[]vk.Access{g.input(vec4), g.input(false), vk.Read, y1Access, g.input(vec4), y2Access, vk.Write}, 52,
		directWG, uint32(p.Kernel), uint32(ty), uint32(tx), b32(flip), b32(b != nil), 0, b32(vec4), uint32(td), join, acc,
		uint32(u[0]), uint32(u[1]), uint32(u[2]), b32(stats != nil))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushDepthwiseDirect{
		Size:   dims4(p.Size, p.Size.Voxels()),
		Blocks: [4]uint32{uint32(bw), uint32(bh), uint32(p.N * p.C), uint32(p.C)},
		Split:  [4]uint32{0, 0, 0, uint32(invocs)},
		Join:   uint32(split),
	}
	return g.dispatch(op, kern, vk.Grid1D(invocs, directWG), push,
		x.first.gpu.buf, w.gpu.buf, g.buf(b), y.first.gpu.buf, x2, y2, g.statsOut(stats))
}

// depthwiseDirectWeightGrad records depthwise_direct's weight-gradient pass
// and depthwise_dw_sum, which adds its chunks into dw and, when not nil,
// db; x may be joined.
func (g *GPU) depthwiseDirectWeightGrad(op string, p ref.DepthwiseParams, x dwPlanes, dy, dw, db *Tensor) error {
	ty, tx := directDWBlock(p.Size, directDWGradVox)
	bw, bh := ceilDiv(p.Size[2], tx), ceilDiv(p.Size[1], ty)
	td := directDWPlanes(p)
	items := p.N * ceilDiv(p.Size[0], td) * bh * bw
	chunks := min(items, max(1, ceilDiv(directInvocsPerCore*cpuCores, p.C)))
	perChunk := ceilDiv(items, chunks)
	chunks = ceilDiv(items, perChunk)
	invocs := p.C * chunks
	taps := p.Kernel * p.Kernel * p.Kernel
	vec4 := directVec4(p)
	join, split, x2, y2 := g.dwJoin(p.C, x, dwPlanes{})
	u := p.UpFactor()
	kern, err := g.kernel("depthwise_direct",
		[]vk.Access{g.input(vec4), g.input(vec4), vk.Read, vk.Write, g.input(vec4), vk.Write, vk.Write}, 52,
		directWG, uint32(p.Kernel), uint32(ty), uint32(tx), 0, 0, 1, b32(vec4), uint32(td), join, 0,
		uint32(u[0]), uint32(u[1]), uint32(u[2]), 0)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	sum, err := g.kernel("depthwise_dw_sum", []vk.Access{g.input(false), vk.Write, vk.Write}, 24, elementwiseWG/4)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	partial, err := g.scratchBuf("dw-partial", invocs*(taps+1))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushDepthwiseDirect{
		Size:   dims4(p.Size, p.Size.Voxels()),
		Blocks: [4]uint32{uint32(bw), uint32(bh), uint32(p.N * p.C), uint32(p.C)},
		Split:  [4]uint32{uint32(chunks), uint32(perChunk), uint32(items), uint32(invocs)},
		Join:   uint32(split),
	}
	if err := g.dispatch(op, kern, vk.Grid1D(invocs, directWG), push,
		x.first.gpu.buf, dy.gpu.buf, g.dummy, partial, x2, y2, g.discard()); err != nil {
		return err
	}
	n := p.C * taps
	if db != nil {
		n += p.C
	}
	push2 := pushDepthwiseDWSum{uint32(p.C), uint32(taps), uint32(taps), 1, uint32(chunks), b32(db != nil)}
	return g.dispatch(op, sum, vk.Grid1D(n, elementwiseWG/4), push2, partial, dw.gpu.buf, g.out(db))
}
