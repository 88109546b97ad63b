package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// Instance norm on the GPU, in deterministic passes:
//
//	norm_stats (MODE 0)   per (plane, chunk): the chunk's mean and M2
//	norm_combine (MODE 0) per plane: Chan's merge of the chunks → mean, invStd
//	norm_apply (MODE 0)   elementwise: y = act(gamma·x̂ + beta (+ r))
//
// and for the backward pass the same two statistics passes, then
//
//	norm_stats (MODE 1)   per (plane, chunk): Σ g and Σ g·x̂
//	norm_combine (MODE 1) per channel: the plane means and dgamma, dbeta
//	norm_apply (MODE 1)   elementwise: dx and the residual's dr
//
// A depthwise convolution that a norm follows may make the first pass's
// chunk statistics itself, per tile (DepthwiseConv3dStats): norm_combine
// then merges them in its COUNTED mode.
//
// Planes are split into chunks of normChunk voxels so that a few large
// planes (2×32 planes of 64³) still spread over thousands of workgroups;
// CPU devices take chunks of normChunkCPU.
//
// CPU devices run the whole norm as one norm_fused dispatch instead, one
// workgroup per plane (forward) or channel (backward), when there are
// enough of them for the cores; GPUs do where a plane is one chunk (the
// deep levels of the network), which the chunked passes spread no wider
// (see fusedNorm).

const (
	normWG = 256
	// normChunk is the voxels per workgroup of norm_stats: 16 per
	// invocation, held in registers between the mean and the M2 pass
	// (8192 was slightly slower on an H200).
	normChunk = 4096
	// normCombineG is norm_combine's workgroup, one per result: a plane's
	// 512 chunks at 128³ take 8 steps per invocation and a 6-level tree.
	normCombineG   = 64
	normCombineCPU = 8
	// normStatsCPU is norm_stats' workgroup on a CPU device, which runs a
	// workgroup a SIMD vector at a time between barriers: a smaller tree
	// costs it fewer passes over the workgroup (lavapipe: a training step's
	// statistics 49-53 ms with 256, 28-37 with 64). One SIMD vector with
	// chunks of normChunkCPU keeps 16 vec4s per invocation, as on a GPU,
	// and one chunk covers a plane of 8³ (lavapipe, forward and backward
	// at 1×32×8³: 0.27-0.29 → 0.18 ms and 0.31-0.34 → 0.23; the same at
	// 1×8×32³).
	normStatsCPU = 8
	normChunkCPU = 512
	// normApplyCPU is the most items (vec4s or elements of one plane)
	// an invocation of norm_apply takes on a CPU device, which loads the
	// plane's statistics once for them; normApplyWGCPU its workgroup
	// there (lavapipe, 1×8×32³: forward 0.82-0.87 → 0.64 ms, backward
	// 0.96-1.13 → 0.81; 4 items 0.67-0.69).
	normApplyCPU   = 8
	normApplyWGCPU = 64
	// normFusedMinGroups is the fewest workgroups norm_fused takes, one per
	// core of up to 8 cores; fewer planes (or channels) spread over the
	// cores through the chunked passes. A fixed rule, not the host's core
	// count: the two sum in different orders. norm_fused reads
	// a plane two or three times, from a core's cache while it fits there,
	// yet it beats the chunked passes on large planes too (lavapipe, 2
	// cores, 1×16×96³: forward 19-24 against 29 ms, with the backward 41-55
	// against 54).
	normFusedMinGroups = 8
)

// pushNorm is the push-constant block shared by the norm kernels.
type pushNorm struct {
	NC, C, V      uint32
	Chunk, Chunks uint32
	HasA, HasB    uint32
	Slope, Eps    float32
}

func b32(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}

// normPlan holds what every pass of one call needs.
type normPlan struct {
	op   string
	p    ref.NormParams
	push pushNorm
	vec4 bool
}

func (g *GPU) newNormPlan(op string, p ref.NormParams) normPlan {
	v := p.Size.Voxels()
	chunk := tuned(g, normChunk, normChunkCPU)
	chunks := (v + chunk - 1) / chunk
	return normPlan{
		op: op,
		p:  p,
		push: pushNorm{NC: uint32(p.N * p.C), C: uint32(p.C), V: uint32(v), Chunk: uint32(chunk),
			Chunks: uint32(chunks), Slope: float32(p.Slope), Eps: float32(p.Eps)},
		// A vec4 never straddles two planes when V is a multiple of 4.
		vec4: v%4 == 0,
	}
}

func (np *normPlan) groups() int { return int(np.push.NC * np.push.Chunks) }

// checkNorm validates the arguments shared by forward and backward; r must
// be absent unless p.Residual.
func (g *GPU) checkNorm(op string, p ref.NormParams, x, r, gamma, beta *Tensor, more ...arg) error {
	n := p.InputLen()
	rArg := in("r", r, n)
	if !p.Residual {
		rArg = opt("r", r, n)
	}
	args := append([]arg{in("x", x, n), rArg, in("gamma", gamma, p.ParamLen()), in("beta", beta, p.ParamLen())}, more...)
	if err := checkArgs(g, op, p, args...); err != nil {
		return err
	}
	if !p.Residual && r != nil {
		return fmt.Errorf("ops.%s: residual given (%d elements) but %v has Residual false", op, r.Len(), p)
	}
	return nil
}

// normStats records norm_stats and norm_combine in MODE 0: mean and invStd
// receive one value per plane of x.
func (g *GPU) normStats(np *normPlan, x *Tensor, mean, invStd *vk.Buffer) error {
	partial, err := g.scratchBuf("norm-partial", 2*np.groups())
	if err != nil {
		return fmt.Errorf("ops.%s: %w", np.op, err)
	}
	if err := g.normReduce(np, 0, x, nil, nil, nil, nil, g.dummy, g.dummy, partial); err != nil {
		return err
	}
	// MODE 0 leaves res unwritten; a written binding must not be the dummy.
	return g.normCombine(np, 0, false, np.push, partial, g.discard(), mean, invStd, int(np.push.NC))
}

// planeStats records the passes that write x's per-plane mean and invStd
// alone: norm_fused without its elementwise pass, or the chunked ones.
func (g *GPU) planeStats(np *normPlan, x *Tensor, mean, invStd *vk.Buffer) error {
	if g.fusedNorm(np, int(np.push.NC)) {
		return g.normFused(np, 0, np.push, x, nil, nil, nil, nil, mean, invStd, g.discard(), g.discard(), nil, nil)
	}
	return g.normStats(np, x, mean, invStd)
}

// normReduce records norm_stats in the given mode.
func (g *GPU) normReduce(np *normPlan, mode uint32, x, r, dy, gamma, beta *Tensor, mean, invStd, partial *vk.Buffer) error {
	wg := tuned[uint32](g, normWG, normStatsCPU)
	vpt := np.push.Chunk / wg
	if np.vec4 {
		vpt /= 4
	}
	in := g.input(np.vec4)
	k, err := g.kernel("norm_stats",
		[]vk.Access{in, in, in, vk.Read, vk.Read, vk.Read, vk.Read, vk.Write}, 36,
		wg, 1, 1, vpt, b32(np.vec4), mode, b32(np.p.Residual), b32(np.p.LeakyReLU))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", np.op, err)
	}
	return g.dispatch(np.op, k, vk.Grid1D(np.groups(), 1), np.push,
		x.gpu.buf, g.buf(r), g.buf(dy), g.buf(gamma), g.buf(beta), mean, invStd, partial)
}

// normCombine records norm_combine in the given mode over n results; with
// counted (MODE 0), partial holds (sum, M2, count, mean) vec4s.
func (g *GPU) normCombine(np *normPlan, mode uint32, counted bool, push pushNorm, partial, res, a, b *vk.Buffer, n int) error {
	wg := tuned[uint32](g, normCombineG, normCombineCPU)
	k, err := g.kernel("norm_combine", []vk.Access{vk.Read, vk.Write, vk.Write, vk.Write}, 36, wg, 1, 1, mode, b32(counted))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", np.op, err)
	}
	return g.dispatch(np.op, k, vk.Grid1D(n, 1), push, partial, res, a, b)
}

// normApply records norm_apply in the given mode, writing out (y or dx) and
// in MODE 1 dr, where they are not nil.
func (g *GPU) normApply(np *normPlan, mode uint32, x, r, dy, gamma, beta *Tensor, mean, invStd, coef *vk.Buffer, out, dr *Tensor) error {
	items, perPlane := np.p.InputLen(), int(np.push.V)
	if np.vec4 {
		items, perPlane = items/4, perPlane/4
	}
	vpi := tuned(g, 1, normApplyCPU)
	for perPlane%vpi != 0 {
		vpi /= 2
	}
	wg := tuned(g, normWG, normApplyWGCPU)
	in := g.input(np.vec4)
	k, err := g.kernel("norm_apply",
		[]vk.Access{in, in, in, vk.Read, vk.Read, vk.Read, vk.Read, vk.Read, vk.Write, vk.Write}, 36,
		uint32(wg), 1, 1, b32(np.vec4), mode, b32(np.p.Residual), b32(np.p.LeakyReLU), uint32(vpi),
		b32(out != nil), b32(dr != nil))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", np.op, err)
	}
	return g.dispatch(np.op, k, vk.Grid1D(items/vpi, wg), np.push,
		x.gpu.buf, g.buf(r), g.buf(dy), gamma.gpu.buf, beta.gpu.buf, mean, invStd, coef, g.out(out), g.out(dr))
}

// fusedNorm reports whether a norm pass over groups workgroups (planes
// forward, channels backward) runs as norm_fused. On a GPU, a plane of one
// chunk gets one workgroup of norm_stats either way: norm_fused reads it
// again from cache for the elementwise pass where the chunked passes take
// two more dispatches, each waiting for the one before (the deep levels of
// the reference's network, 16³ and smaller, have some 25 norms).
func (g *GPU) fusedNorm(np *normPlan, groups int) bool {
	if g.fusedNormOn != nil {
		return *g.fusedNormOn
	}
	if !g.cpuTuned() {
		return np.push.Chunks == 1
	}
	return groups >= normFusedMinGroups
}

// normFusedWG is norm_fused's workgroup: normStatsCPU on a CPU device; on a
// GPU, normWG, halved (down to a subgroup's 32) while half of it still
// covers a plane's items.
func (g *GPU) normFusedWG(np *normPlan) uint32 {
	if g.cpuTuned() {
		return normStatsCPU
	}
	items := np.push.V
	if np.vec4 {
		items /= 4
	}
	wg := uint32(normWG)
	for wg > 32 && wg/2 >= items {
		wg /= 2
	}
	return wg
}

// normFused records norm_fused in the given mode over groups workgroups:
// MODE 0 writes mean and invStd, MODE 1 reads them and writes a and b
// (dgamma, dbeta). Without out (y or dx) and dr it skips the elementwise
// pass.
func (g *GPU) normFused(np *normPlan, mode uint32, push pushNorm, x, r, dy, gamma, beta *Tensor, mean, invStd, a, b *vk.Buffer, out, dr *Tensor) error {
	in := g.input(np.vec4)
	stats := vk.Write
	groups := int(np.push.NC)
	if mode == 1 {
		stats, groups = vk.Read, np.p.C
	}
	k, err := g.kernel("norm_fused",
		[]vk.Access{in, in, in, vk.Read, vk.Read, stats, stats, vk.Write, vk.Write, vk.Write, vk.Write}, 36,
		g.normFusedWG(np), 1, 1, b32(np.vec4), mode, b32(np.p.Residual), b32(np.p.LeakyReLU), b32(out != nil), b32(dr != nil))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", np.op, err)
	}
	return g.dispatch(np.op, k, vk.Grid1D(groups, 1), push,
		x.gpu.buf, g.buf(r), g.buf(dy), g.buf(gamma), g.buf(beta), mean, invStd, a, b, g.out(out), g.out(dr))
}

// statsBufs returns where a pass keeps the per-plane mean and invStd: the
// given tensors, or scratch buffers for those absent.
func (g *GPU) statsBufs(np *normPlan, mean, invStd *Tensor) (*vk.Buffer, *vk.Buffer, error) {
	bufs := [2]*vk.Buffer{}
	for i, t := range []*Tensor{mean, invStd} {
		if t != nil {
			bufs[i] = t.gpu.buf
			continue
		}
		b, err := g.scratchBuf([]string{"norm-mean", "norm-invstd"}[i], np.p.StatsLen())
		if err != nil {
			return nil, nil, fmt.Errorf("ops.%s: %w", np.op, err)
		}
		bufs[i] = b
	}
	return bufs[0], bufs[1], nil
}

// InstanceNorm3d implements Engine.
func (g *GPU) InstanceNorm3d(p ref.NormParams, x, r, gamma, beta, y, mean, invStd *Tensor) error {
	const op = "InstanceNorm3d"
	if err := g.checkNorm(op, p, x, r, gamma, beta, opt("y", y, p.OutputLen()),
		opt("mean", mean, p.StatsLen()), opt("invStd", invStd, p.StatsLen())); err != nil {
		return err
	}
	if y == nil && (mean == nil || invStd == nil) {
		return fmt.Errorf("ops.%s: y is missing (it may be only with mean and invStd)", op)
	}
	np := g.newNormPlan(op, p)
	mb, sb, err := g.statsBufs(&np, mean, invStd)
	if err != nil {
		return err
	}
	if y == nil {
		return g.planeStats(&np, x, mb, sb)
	}
	if g.fusedNorm(&np, int(np.push.NC)) {
		return g.normFused(&np, 0, np.push, x, r, nil, gamma, beta, mb, sb, g.discard(), g.discard(), y, nil)
	}
	if err := g.normStats(&np, x, mb, sb); err != nil {
		return err
	}
	return g.normApply(&np, 0, x, r, nil, gamma, beta, mb, sb, g.dummy, y, nil)
}

// InstanceNorm3dBackward implements Engine. With the saved statistics it
// skips their two passes over x.
func (g *GPU) InstanceNorm3dBackward(p ref.NormParams, x, r, gamma, beta, mean, invStd, dy, dx, dr, dgamma, dbeta *Tensor) error {
	const op = "InstanceNorm3dBackward"
	if err := g.checkNorm(op, p, x, r, gamma, beta, in("dy", dy, p.OutputLen()),
		opt("dx", dx, p.InputLen()), opt("dr", dr, p.InputLen()),
		opt("dgamma", dgamma, p.ParamLen()), opt("dbeta", dbeta, p.ParamLen())); err != nil {
		return err
	}
	if !p.Residual && dr != nil {
		return fmt.Errorf("ops.%s: residual gradient given (%d elements) but %v has Residual false", op, dr.Len(), p)
	}
	if err := checkSavedStats(g, op, p, mean, invStd); err != nil {
		return err
	}
	if dx == nil && dr == nil && dgamma == nil && dbeta == nil {
		return nil
	}
	np := g.newNormPlan(op, p)
	mb, sb, err := g.statsBufs(&np, mean, invStd)
	if err != nil {
		return err
	}
	if g.fusedNorm(&np, p.C) {
		if mean == nil {
			if err := g.normFused(&np, 0, np.push, x, nil, nil, gamma, beta, mb, sb, g.discard(), g.discard(), nil, nil); err != nil {
				return err
			}
		}
		push := np.push
		push.HasA, push.HasB = b32(dgamma != nil), b32(dbeta != nil)
		return g.normFused(&np, 1, push, x, r, dy, gamma, beta, mb, sb, g.out(dgamma), g.out(dbeta), dx, dr)
	}
	coef, err := g.scratchBuf("norm-coef", 2*p.StatsLen())
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	gpartial, err := g.scratchBuf("norm-gpartial", 2*np.groups())
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if mean == nil {
		if err := g.normStats(&np, x, mb, sb); err != nil {
			return err
		}
	}
	if err := g.normReduce(&np, 1, x, r, dy, gamma, beta, mb, sb, gpartial); err != nil {
		return err
	}
	push := np.push
	push.HasA, push.HasB = b32(dgamma != nil), b32(dbeta != nil)
	if err := g.normCombine(&np, 1, false, push, gpartial, coef, g.out(dgamma), g.out(dbeta), p.C); err != nil {
		return err
	}
	if dx == nil && dr == nil {
		return nil
	}
	return g.normApply(&np, 1, x, r, dy, gamma, beta, mb, sb, coef, dx, dr)
}
