package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The losses on the GPU, with no host round trip:
//
//	Softmax, Argmax          loss (MODE 0, 1): one voxel per invocation
//	CrossEntropy             loss_sum MODE 0: per-segment loss partials and
//	                         the gradient; loss_sum MODE 1: the fixed-order
//	                         total, scaled by 1/(N·D·H·W)
//	SoftDice                 loss MODE 0 into scratch probabilities;
//	                         loss_sum MODE 2: per (segment, class) Σp, Σpg,
//	                         Σg; loss_sum MODE 3: the class sums, the loss and
//	                         the per-class gradient coefficients; loss MODE 2:
//	                         the gradient
//
// The sums are split reductions with a fixed partition and order, so every
// run gives the same bits. Labels are not checked on the GPU (that needs a
// host round trip; the data layer validates them): a label outside
// [0, classes) matches no class, so the voxel adds no cross-entropy term and
// no one-hot term to the gradients or the Dice sums, though it still counts
// in the cross-entropy's mean. The CPU engine returns an error instead.

// Modes of shaders/loss.comp and shaders/loss_sum.comp.
const (
	lossSoftmax uint32 = iota
	lossArgmax
	lossDiceGrad
)

const (
	lossCEPartial uint32 = iota
	lossCEFinal
	lossDiceStats
	lossDiceFinal
)

const (
	lossWG = 256
	// lossSeg is the voxels per workgroup of the partial passes, one per
	// invocation so that a 2×64³ volume fills the GPU; larger volumes grow
	// it to keep at most lossMaxChunks partials for the one-workgroup final
	// pass.
	lossSeg       = 256
	lossMaxChunks = 8192
	// lossWGCPU and lossGroupsPerCore shape the reductions on a CPU device.
	lossWGCPU         = 64
	lossGroupsPerCore = 4
)

// pushLoss is the push-constant block of loss.comp and loss_sum.comp.
type pushLoss struct {
	Voxels, Vox, Classes uint32
	Seg, Chunks          uint32
	HasGrad, K0          uint32
	Scale, Eps           float32
}

// lossPush is the push block of the loss kernels. The reductions split
// the voxels into segments of one voxel per invocation, so that a 2×64³
// volume fills a GPU. A CPU device runs a workgroup's tree a SIMD vector at
// a time between barriers: it gets a few segments per core instead (whole
// lossWG multiples, so the layout stays valid). Larger volumes grow the
// segments to keep at most lossMaxChunks partials for the one-workgroup
// final pass.
func (g *GPU) lossPush(p ref.LossParams) pushLoss {
	total := p.N * p.Size.Voxels()
	seg := lossSeg
	if g.cpuTuned() {
		groups := lossGroupsPerCore * cpuCores
		seg = max(seg, ceilDiv(ceilDiv(total, groups), lossWG)*lossWG)
	}
	if need := ceilDiv(total, lossMaxChunks); need > seg {
		seg = ceilDiv(need, lossWG) * lossWG
	}
	return pushLoss{Voxels: uint32(total), Vox: uint32(p.Size.Voxels()), Classes: uint32(p.Classes),
		Seg: uint32(seg), Chunks: uint32(ceilDiv(total, seg))}
}

// lossVoxel records a loss.comp pass over every voxel.
func (g *GPU) lossVoxel(op string, mode uint32, push pushLoss, a, lab, coef, out *vk.Buffer) error {
	k, err := g.kernel("loss", []vk.Access{vk.Read, vk.Read, vk.Read, vk.Write}, 36, lossWG, mode)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return g.dispatch(op, k, vk.Grid1D(int(push.Voxels), lossWG), push, a, lab, coef, out)
}

// lossSum records a loss_sum.comp pass over the given workgroups. Bindings
// 2 and 3 are written by the shader's code (whatever the mode), so an
// output a mode does not produce is bound to a sink slot.
func (g *GPU) lossSum(op string, mode uint32, groups [3]uint32, push pushLoss, a, lab, b, c *vk.Buffer) error {
	k, err := g.kernel("loss_sum", []vk.Access{vk.Read, vk.Read, vk.Write, vk.Write}, 36, tuned[uint32](g, lossWG, lossWGCPU), mode)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return g.dispatch(op, k, groups, push, a, lab, b, c)
}

// Softmax implements Engine.
func (g *GPU) Softmax(p ref.LossParams, logits, probs *Tensor) error {
	const op = "Softmax"
	if err := checkArgs(g, op, p, in("logits", logits, p.LogitsLen()), in("probs", probs, p.LogitsLen())); err != nil {
		return err
	}
	return g.lossVoxel(op, lossSoftmax, g.lossPush(p), logits.gpu.buf, g.dummy, g.dummy, probs.gpu.buf)
}

// Argmax implements Engine.
func (g *GPU) Argmax(p ref.LossParams, logits, labs *Tensor) error {
	const op = "Argmax"
	if err := checkArgs(g, op, p, in("logits", logits, p.LogitsLen()), labels("labels", labs, p.LabelsLen())); err != nil {
		return err
	}
	return g.lossVoxel(op, lossArgmax, g.lossPush(p), logits.gpu.buf, g.dummy, g.dummy, labs.gpu.buf)
}

// CrossEntropy implements Engine.
func (g *GPU) CrossEntropy(p ref.LossParams, logits, labs, dlogits, loss *Tensor) error {
	const op = "CrossEntropy"
	if err := checkArgs(g, op, p, in("logits", logits, p.LogitsLen()), labels("labels", labs, p.LabelsLen()),
		opt("dlogits", dlogits, p.LogitsLen()), in("loss", loss, 1)); err != nil {
		return err
	}
	push := g.lossPush(p)
	push.HasGrad = b32(dlogits != nil)
	push.Scale = float32(1 / float64(p.LabelsLen()))
	partial, err := g.scratchBuf("loss-partial", int(push.Chunks))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if err := g.lossSum(op, lossCEPartial, vk.Grid1D(int(push.Chunks), 1), push,
		logits.gpu.buf, labs.gpu.buf, g.out(dlogits), partial); err != nil {
		return err
	}
	return g.lossSum(op, lossCEFinal, [3]uint32{1, 1, 1}, push, partial, g.dummy, loss.gpu.buf, g.discard())
}

// SoftDice implements Engine.
func (g *GPU) SoftDice(p ref.DiceParams, logits, labs, dlogits, loss *Tensor) error {
	const op = "SoftDice"
	lp := p.LossParams
	if err := checkArgs(g, op, p, in("logits", logits, lp.LogitsLen()), labels("labels", labs, lp.LabelsLen()),
		opt("dlogits", dlogits, lp.LogitsLen()), in("loss", loss, 1)); err != nil {
		return err
	}
	push := g.lossPush(lp)
	if p.Classes > 65535 {
		return fmt.Errorf("ops.%s: %v: %d classes, at most 65535 on the GPU", op, p, p.Classes)
	}
	if !p.IncludeBackground {
		push.K0 = 1
	}
	push.Eps = float32(p.Eps)
	probs, err := g.scratchBuf("loss-probs", lp.LogitsLen())
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	partial, err := g.scratchBuf("loss-partial", 3*p.Classes*int(push.Chunks))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	coef, err := g.scratchBuf("loss-coef", 2*p.Classes)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if err := g.lossVoxel(op, lossSoftmax, push, logits.gpu.buf, g.dummy, g.dummy, probs); err != nil {
		return err
	}
	if err := g.lossSum(op, lossDiceStats, [3]uint32{push.Chunks, uint32(p.Classes), 1}, push,
		probs, labs.gpu.buf, partial, g.discard()); err != nil {
		return err
	}
	if err := g.lossSum(op, lossDiceFinal, [3]uint32{1, 1, 1}, push, partial, g.dummy, coef, loss.gpu.buf); err != nil {
		return err
	}
	if dlogits == nil {
		return nil
	}
	return g.lossVoxel(op, lossDiceGrad, push, probs, labs.gpu.buf, coef, dlogits.gpu.buf)
}
