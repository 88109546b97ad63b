package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// Depthwise convolution on the GPU: shaders/depthwise.comp computes the
// forward pass (or, when chosen, shaders/depthwise_stream.comp, which
// streams columns along D) and, with the kernel flipped, the input
// gradient;
// shaders/depthwise_dw.comp and depthwise_dw_sum.comp the weight gradient as
// a two-pass split reduction, whose first pass also makes the input
// gradient when both are asked for (fusedBackward: dy is read once);
// ChannelSum the bias gradient when it is asked for alone. CPU devices
// take shaders/depthwise_direct.comp for all three (gpu_depthwise_direct.go).
// Every kernel also reads its input x, or writes its output (the input
// gradient), as the two parts of a channel concatenation: a decoder's
// depthwise convolution of its up-sampled path and skip connection never
// builds their concatenation. The forward pass and the weight gradient also
// read an input up-sampled by p.Up in place (a decoder's up-sampled path),
// whose data gradient kernel sums over the up-sampling blocks as it writes
// (depthwiseUpGrad).

// dwTile is the output tile of one workgroup: TW×TH invocations, each
// computing TD voxels along D.
type dwTile struct{ tw, th, td int }

// tiles returns the number of tiles per axis (W, H, D) of a volume.
func (t dwTile) tiles(size ref.Dims3) [3]int {
	return [3]int{dwCeil(size[2], t.tw), dwCeil(size[1], t.th), dwCeil(size[0], t.td)}
}

func dwCeil(a, b int) int { return (a + b - 1) / b }

// dwTargetGroups is roughly how many workgroups the weight gradient's first
// pass aims for: enough to fill a large GPU several times over. A CPU device
// runs one workgroup per core at a time, and each chunk ends in a tree
// reduction that costs it about as much as a tile's products: it gets
// dwGroupsPerCore for each of cpuCores (4: 69-75 ms for the weight
// gradients of a training step on 2 cores, 76-78 with 16, 100-112 with
// 2048).
const (
	dwTargetGroups  = 2048
	dwGroupsPerCore = 4
)

// chooseTile fits the target tile to a volume: halved in width down to 8
// while half is as wide as the volume (rows coalesce), as many
// invocations (a narrower tile is taller), and no taller or deeper than
// the volume needs. It then shrinks TD and TH until halo(tile) floats of
// shared memory fit in the device's limit. The target's depth is the
// voxels deep per invocation.
func (g *GPU) chooseTile(op string, size ref.Dims3, target dwTile, halo func(dwTile) int) (dwTile, error) {
	t := target
	for t.tw > 8 && t.tw/2 >= size[2] {
		t.tw /= 2
	}
	t.th = target.tw * target.th / t.tw // a narrower tile is taller
	for t.th > 1 && t.th/2 >= size[1] {
		t.th /= 2
	}
	for t.td > 1 && t.td/2 >= size[0] {
		t.td /= 2
	}
	limit := int(g.dev.Info().MaxSharedMemory / 4)
	for halo(t) > limit {
		switch {
		case t.td > 1:
			t.td /= 2
		case t.th > 1:
			t.th /= 2
		default:
			return t, fmt.Errorf("ops.%s: a %d-float tile needs more than the device's %d bytes of shared memory",
				op, halo(t), 4*limit)
		}
	}
	return t, nil
}

// dwPlanes is a depthwise kernel's input or output: one tensor, or with
// second set the channel concatenation of first (its first split
// channels) and second, which the kernels read or write in place.
type dwPlanes struct {
	first, second *Tensor
	split         int
}

func onePlanes(t *Tensor) dwPlanes { return dwPlanes{first: t} }

// dwJoin returns a kernel's JOIN specialization (0 none, 1 the input
// joined, 2 the output), the split it pushes (all channels when none), and
// the buffers of the second parts' bindings: when not joined, the input's
// own buffer again and a sink.
func (g *GPU) dwJoin(c int, x, y dwPlanes) (join uint32, split int, x2, y2 *vk.Buffer) {
	join, split, x2, y2 = 0, c, x.first.gpu.buf, g.discard()
	switch {
	case x.second != nil:
		join, split, x2 = 1, x.split, x.second.gpu.buf
	case y.second != nil:
		join, split, y2 = 2, y.split, y.second.gpu.buf
	}
	return join, split, x2, y2
}

// accumulates returns a kernel's ACC specialization for output y (bit 1:
// its first part is an accumulating view, bit 2: its second) and the
// accesses of the two parts' bindings.
func (y dwPlanes) accumulates() (acc uint32, first, second vk.Access) {
	if y.first != nil && y.first.accumulate {
		acc |= 1
	}
	if y.second != nil && y.second.accumulate {
		acc |= 2
	}
	return acc, resultAccess(acc&1 != 0), resultAccess(acc&2 != 0)
}

type pushDepthwise struct {
	Planes, C, D, H, W     uint32
	TilesX, TilesY, TilesZ uint32
	Split                  uint32
}

// depthwiseConv records y = conv(x, w) + b, or with flip the input gradient
// conv(x, flip(w)) without bias; x or y may be joined. With stats not nil
// (forward only) each workgroup also writes its tile's statistics there,
// (sum, M2, count, mean), depthwiseStatsChunks per plane.
func (g *GPU) depthwiseConv(op string, p ref.DepthwiseParams, x dwPlanes, w, b *Tensor, y dwPlanes, flip bool, stats *vk.Buffer) error {
	if g.directDepthwise(p) {
		return g.depthwiseDirect(op, p, x, w, b, y, flip, stats)
	}
	if !flip && g.streamDepthwise(p, y) {
		return g.depthwiseStream(op, p, x, w, b, y.first, stats)
	}
	k := p.Kernel
	tile, err := g.depthwiseTile(op, p)
	if err != nil {
		return err
	}
	tx := depthwiseTX(g, k, tile, 1)
	tl := tile.tiles(p.Size)
	groups := p.N * p.C * tl[0] * tl[1] * tl[2]
	// The bias is a specialization constant: read under a push-constant
	// condition it cost lavapipe 25% of the kernel's time (3.8 against
	// 3.0 ms at 1×8×32³).
	join, split, x2, y2 := g.dwJoin(p.C, x, y)
	acc, y1Access, y2Access := y.accumulates()
	u := p.UpFactor()
	kern, err := g.kernel("depthwise", []vk.Access{vk.Read, vk.Read, vk.Read, y1Access, vk.Read, y2Access, vk.Write}, 36,
		uint32(tile.tw/tx), uint32(tile.th), 1, uint32(tile.td), uint32(k), b32(flip), b32(b != nil), uint32(tx), join, acc,
		uint32(u[0]), uint32(u[1]), uint32(u[2]), b32(stats != nil))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushDepthwise{uint32(p.N * p.C), uint32(p.C), uint32(p.Size[0]), uint32(p.Size[1]), uint32(p.Size[2]),
		uint32(tl[0]), uint32(tl[1]), uint32(tl[2]), uint32(split)}
	return g.dispatch(op, kern, vk.Grid1D(groups, 1), push, x.first.gpu.buf, w.gpu.buf, g.buf(b), y.first.gpu.buf, x2, y2,
		g.statsOut(stats))
}

// statsOut is the binding of a kernel's optional statistics: a sink when
// they are not asked for.
func (g *GPU) statsOut(stats *vk.Buffer) *vk.Buffer {
	if stats == nil {
		return g.discard()
	}
	return stats
}

// depthwiseStatsChunks is how many (sum, M2, count, mean) the forward
// convolution of p writes per plane with statistics: one per tile (or
// column), or on CPU devices one per invocation's block.
func (g *GPU) depthwiseStatsChunks(op string, p ref.DepthwiseParams) (int, error) {
	if g.directDepthwise(p) {
		ty, tx, td, _ := directDWShape(p, false)
		return ceilDiv(p.Size[0], td) * ceilDiv(p.Size[1], ty) * ceilDiv(p.Size[2], tx), nil
	}
	tile := g.depthwiseTile
	if g.streamDepthwise(p, dwPlanes{}) {
		tile = g.streamTile
	}
	t, err := tile(op, p)
	tl := t.tiles(p.Size)
	return tl[0] * tl[1] * tl[2], err
}

// streamDepthwise reports whether the forward pass of p into y runs on
// depthwise_stream.comp: kernels up to 3³ into one tensor, not an
// accumulating view, when g.dwStreamOn is set (its speed against
// depthwise.comp's tiles is not yet measured on a GPU).
func (g *GPU) streamDepthwise(p ref.DepthwiseParams, y dwPlanes) bool {
	return g.dwStreamOn != nil && *g.dwStreamOn && p.Kernel <= 3 && y.second == nil &&
		(y.first == nil || !y.first.accumulate)
}

// streamTile is depthwise_stream.comp's tile for p: a column of
// dwStreamTD output planes (or g.dwStreamTarget's, or g.dwTileOver's), its
// workgroup TW×TH.
func (g *GPU) streamTile(op string, p ref.DepthwiseParams) (dwTile, error) {
	k := p.Kernel
	// Two halo planes and the statistics' tree, three floats per
	// invocation.
	halo := func(t dwTile) int { return 2*(t.tw+k-1)*(t.th+k-1) + 3*t.tw*t.th }
	if g.dwTileOver != nil {
		return g.fixedTile(op, *g.dwTileOver, halo)
	}
	target := dwTile{32, 8, dwStreamTD}
	if g.dwStreamTarget != nil {
		target = *g.dwStreamTarget
	}
	return g.chooseTile(op, p.Size, target, halo)
}

// dwStreamTD is the output planes of a depthwise_stream column: its two
// extra input planes cost 1/8 more reads.
const dwStreamTD = 16

// depthwiseStream records depthwise_stream.comp: y = conv(x, w) + b, x
// maybe joined or up-sampled, and with stats not nil each column's
// (sum, M2, count, mean).
func (g *GPU) depthwiseStream(op string, p ref.DepthwiseParams, x dwPlanes, w, b, y *Tensor, stats *vk.Buffer) error {
	tile, err := g.streamTile(op, p)
	if err != nil {
		return err
	}
	tl := tile.tiles(p.Size)
	join, split, x2, _ := g.dwJoin(p.C, x, dwPlanes{})
	u := p.UpFactor()
	kern, err := g.kernel("depthwise_stream", []vk.Access{vk.Read, vk.Read, vk.Read, vk.Write, vk.Read, vk.Write}, 36,
		uint32(tile.tw), uint32(tile.th), uint32(tile.td), uint32(p.Kernel), b32(b != nil), join,
		uint32(u[0]), uint32(u[1]), uint32(u[2]), b32(stats != nil))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushDepthwise{uint32(p.N * p.C), uint32(p.C), uint32(p.Size[0]), uint32(p.Size[1]), uint32(p.Size[2]),
		uint32(tl[0]), uint32(tl[1]), uint32(tl[2]), uint32(split)}
	return g.dispatch(op, kern, vk.Grid1D(p.N*p.C*tl[0]*tl[1]*tl[2], 1), push,
		x.first.gpu.buf, w.gpu.buf, g.buf(b), y.gpu.buf, x2, g.statsOut(stats))
}

// depthwiseTile is the tile of depthwise.comp for p: 8 outputs deep per
// invocation; 16 on a CPU device, where the deeper column halves the halo
// loads per output (lavapipe: forward 12% faster at 1×8×32³).
func (g *GPU) depthwiseTile(op string, p ref.DepthwiseParams) (dwTile, error) {
	k := p.Kernel
	halo := func(t dwTile) int { return (t.tw+k-1)*(t.th+k-1)*(t.td+k-1) + k*k*k }
	if g.dwTileOver != nil {
		return g.fixedTile(op, *g.dwTileOver, halo)
	}
	target := dwTile{32, 8, tuned(g, 8, 16)}
	if g.dwTileTarget != nil {
		target = *g.dwTileTarget
	}
	return g.chooseTile(op, p.Size, target, halo)
}

// fixedTile returns t, an overriding tile, if its halo and workgroup fit
// the device.
func (g *GPU) fixedTile(op string, t dwTile, halo func(dwTile) int) (dwTile, error) {
	info := g.dev.Info()
	if halo(t) > int(info.MaxSharedMemory/4) || t.tw*t.th > int(info.MaxWorkgroupInvocs) {
		return t, fmt.Errorf("ops.%s: tile %d×%d×%d does not fit the device", op, t.tw, t.th, t.td)
	}
	return t, nil
}

// upBlockSums reports whether the data-gradient kernel of p, a convolution
// of an up-sampled input, sums the up-sampling blocks itself: its tile (or
// block) is made of whole blocks.
func (g *GPU) upBlockSums(op string, p ref.DepthwiseParams) bool {
	if g.directDepthwise(p) {
		_, _, _, ok := directDWShape(p, true)
		return ok
	}
	t, err := g.depthwiseTile(op, p)
	u := p.UpFactor()
	return err == nil && t.tw%u[2] == 0 && t.th%u[1] == 0 && t.td%u[0] == 0
}

// depthwiseTX is how many outputs along W each invocation of the depthwise
// kernels computes, keeping the workgroup (tw/TX·th invocations) a multiple
// of wgMultiple.
func depthwiseTX(g *GPU, k int, tile dwTile, wgMultiple int) int {
	tx := 1
	switch {
	case g.dwTX != nil:
		tx = *g.dwTX
	case k <= 3:
		// Two on a CPU device, which reads shared memory a lane at a time:
		// lavapipe's forward 3.2-3.5 → 2.7 ms at 1×8×32³ (four: 2.4-2.9
		// there, but slower at 16³).
		tx = tuned(g, 1, 2)
	}
	for tx > 1 && (tile.tw%tx != 0 || (tile.tw/tx*tile.th)%wgMultiple != 0) {
		tx /= 2
	}
	return tx
}

// DepthwiseConv3d implements Engine.
func (g *GPU) DepthwiseConv3d(p ref.DepthwiseParams, x, w, b, y *Tensor) error {
	const op = "DepthwiseConv3d"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	return g.depthwiseConv(op, p, onePlanes(x), w, b, onePlanes(y), false, nil)
}

// DepthwiseConv3dJoined implements Engine.
func (g *GPU) DepthwiseConv3dJoined(p ref.DepthwiseParams, split int, x1, x2, w, b, y *Tensor) error {
	const op = "DepthwiseConv3dJoined"
	if _, err := checkJoined(g, op, p, split, x1, x2, nil, nil); err != nil {
		return err
	}
	if err := checkArgs(g, op, nil, in("w", w, p.WeightLen()), opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	return g.depthwiseConv(op, p, dwPlanes{x1, x2, split}, w, b, onePlanes(y), false, nil)
}

// DepthwiseConv3dStats implements Engine: the convolution's kernel writes
// the statistics of its tiles (or blocks) as it stores them, and
// norm_combine merges them per plane. g.dwStatsOn, when set to false, reads
// y again for them instead, as InstanceNorm3d would.
func (g *GPU) DepthwiseConv3dStats(p ref.DepthwiseParams, np ref.NormParams, split int, x1, x2, w, b, y, mean, invStd *Tensor) error {
	const op = "DepthwiseConv3dStats"
	x, err := checkDepthwiseStats(g, op, p, np, split, x1, x2, w, b, y, mean, invStd)
	if err != nil {
		return err
	}
	plan := g.newNormPlan(op, np)
	if g.dwStatsOn != nil && !*g.dwStatsOn {
		if err := g.depthwiseConv(op, p, x, w, b, onePlanes(y), false, nil); err != nil {
			return err
		}
		return g.planeStats(&plan, y, mean.gpu.buf, invStd.gpu.buf)
	}
	chunks, err := g.depthwiseStatsChunks(op, p)
	if err != nil {
		return err
	}
	partial, err := g.scratchBuf("dw-stats", 4*p.N*p.C*chunks)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if err := g.depthwiseConv(op, p, x, w, b, onePlanes(y), false, partial); err != nil {
		return err
	}
	push := plan.push
	push.Chunks = uint32(chunks)
	return g.normCombine(&plan, 0, true, push, partial, g.discard(), mean.gpu.buf, invStd.gpu.buf, p.N*p.C)
}

type pushDepthwiseDW struct {
	N, C, D, H, W            uint32
	TilesX, TilesY, TilesZ   uint32
	Blocks, Chunks, PerChunk uint32
	Split                    uint32
}

type pushDepthwiseDWSum struct {
	C, Taps, TB, Blocks, Chunks, HasDB uint32
}

// DepthwiseConv3dBackward implements Engine.
func (g *GPU) DepthwiseConv3dBackward(p ref.DepthwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	const op = "DepthwiseConv3dBackward"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		in("dy", dy, p.OutputLen()), opt("dx", dx, p.InputLen()).accumulating(), opt("dw", dw, p.WeightLen()),
		opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	return g.depthwiseBackward(op, p, onePlanes(x), w, dy, onePlanes(dx), dw, db)
}

// DepthwiseConv3dJoinedBackward implements Engine.
func (g *GPU) DepthwiseConv3dJoinedBackward(p ref.DepthwiseParams, split int, x1, x2, w, dy, dx1, dx2, dw, db *Tensor) error {
	const op = "DepthwiseConv3dJoinedBackward"
	if _, err := checkJoined(g, op, p, split, x1, x2, dx1, dx2); err != nil {
		return err
	}
	if err := checkArgs(g, op, nil, in("w", w, p.WeightLen()), in("dy", dy, p.OutputLen()),
		opt("dw", dw, p.WeightLen()), opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	return g.depthwiseBackward(op, p, dwPlanes{x1, x2, split}, w, dy, dwPlanes{dx1, dx2, split}, dw, db)
}

// depthwiseBackward records the gradients asked for (dx.first, dw, db not
// nil); x and dx may be joined. With both dx and dw asked for, one pass of
// depthwise_dw makes both where it can (fusedBackward), reading dy once.
func (g *GPU) depthwiseBackward(op string, p ref.DepthwiseParams, x dwPlanes, w, dy *Tensor, dx dwPlanes, dw, db *Tensor) error {
	if dx.first != nil && dw != nil && g.fusedBackward(op, p) {
		return g.depthwiseWeightGrad(op, p, x, dy, dw, db, w, dx)
	}
	switch {
	case dx.first != nil && p.UpFactor() != (ref.Dims3{1, 1, 1}):
		if err := g.depthwiseUpGrad(op, p, w, dy, dx.first); err != nil {
			return err
		}
	case dx.first != nil:
		if err := g.depthwiseConv(op, p, onePlanes(dy), w, nil, dx, true, nil); err != nil {
			return err
		}
	}
	if dw != nil {
		// The weight gradient's pass over dy sums it for db too.
		if err := g.depthwiseWeightGrad(op, p, x, dy, dw, db, nil, dwPlanes{}); err != nil {
			return err
		}
	} else if db != nil {
		if err := g.ChannelSum(p.N, p.C, p.Size, dy, db); err != nil {
			return fmt.Errorf("ops.%s: bias gradient: %w", op, err)
		}
	}
	return nil
}

// fusedBackward reports whether depthwise_dw makes p's data gradient in its
// pass (DX): on the tile kernels, for kernels whose taps are one block (up
// to 3³), and for an up-sampled input when the tile is made of whole
// up-sampling blocks. g.dwFusedOn, when set, can turn it off.
func (g *GPU) fusedBackward(op string, p ref.DepthwiseParams) bool {
	if g.directDepthwise(p) || (g.dwFusedOn != nil && !*g.dwFusedOn) {
		return false
	}
	t, kdb, _, err := g.weightGradTile(op, p, true)
	u := p.UpFactor()
	return err == nil && kdb == p.Kernel && t.tw%u[2] == 0 && t.th%u[1] == 0 && t.td%u[0] == 0
}

// weightGradTile is depthwise_dw's tile for p, its block of kernel planes
// and the floats of shared memory its halos take: a block of whole kernel
// planes bounds the running sums per invocation, all 27 of a 3³ kernel,
// one plane (k²) of larger kernels. With dx (DX) the tile holds dy's halo
// beside x's.
func (g *GPU) weightGradTile(op string, p ref.DepthwiseParams, dx bool) (t dwTile, kdb, halos int, err error) {
	k := p.Kernel
	kdb = max(1, min(k, 27/(k*k)))
	n := 1
	if dx {
		n = 2
	}
	halo := func(t dwTile) int { return n * (t.tw + k - 1) * (t.th + k - 1) * (t.td + kdb - 1) }
	if g.dwGradTileOver != nil {
		t, err = g.fixedTile(op, *g.dwGradTileOver, halo)
		return t, kdb, halo(t), err
	}
	// TD 8: with its loops unrolled, 18% faster than TD 4 on lavapipe
	// (before unrolling, TD 8 was no faster on an H200).
	target := dwTile{32, 8, 8}
	if g.dwGradTileTarget != nil {
		target = *g.dwGradTileTarget
	}
	t, err = g.chooseTile(op, p.Size, target, halo)
	return t, kdb, halo(t), err
}

// depthwiseUpGrad records the data gradient of a convolution of an
// up-sampled input: that of the up-sampled input, summed over each
// up-sampling block into dx by the kernel itself where its tiles allow,
// else through scratch memory and UpsampleBackward.
func (g *GPU) depthwiseUpGrad(op string, p ref.DepthwiseParams, w, dy, dx *Tensor) error {
	if g.upBlockSums(op, p) {
		return g.depthwiseConv(op, p, onePlanes(dy), w, nil, onePlanes(dx), true, nil)
	}
	full := p
	full.Up = ref.Dims3{}
	buf, err := g.scratchBuf("dw-up-grad", full.InputLen())
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	grad := &Tensor{n: full.InputLen(), owner: g, gpu: gpuTensor{buf: buf}}
	if err := g.depthwiseConv(op, full, onePlanes(dy), w, nil, onePlanes(grad), true, nil); err != nil {
		return err
	}
	up := ref.UpsampleParams{N: p.N, C: p.C, In: p.InputSize(), Factor: p.Up}
	return g.layout(op, layoutUpsampleBackward, up.InputLen(), up.In[2]%4 == 0, upsampleDims(up), pushLayout{},
		buf, dx.gpu.buf, dx.accumulate)
}

// depthwiseWeightGrad records the two passes of dw = Σ dy·x(shifted)
// (depthwise_dw, depthwise_dw_sum) and, when db is not nil, of db = Σ dy;
// x may be joined. With dx.first set (fusedBackward), the first pass makes
// the data gradient dx from dy and w too, joined as x is.
func (g *GPU) depthwiseWeightGrad(op string, p ref.DepthwiseParams, x dwPlanes, dy, dw, db, w *Tensor, dx dwPlanes) error {
	if g.directDepthwise(p) {
		return g.depthwiseDirectWeightGrad(op, p, x, dy, dw, db)
	}
	k := p.Kernel
	c := p.C
	fused := dx.first != nil
	tile, kdb, halos, err := g.weightGradTile(op, p, fused)
	if err != nil {
		return err
	}
	tb := kdb * k * k
	blocks := dwCeil(k, kdb)
	limit := int(g.dev.Info().MaxSharedMemory / 4)
	// Its tree reduction takes 8 invocations per sum.
	tx := depthwiseTX(g, k, tile, 8)
	wg := tile.tw / tx * tile.th
	// Sums per reduction round (the taps' and dy's): RG·WG floats must fit,
	// and RG·8 ≤ WG. One round (all 27 taps of a 3³ kernel) is much faster
	// than several on an H200 (0.14 against 0.44 ms at 2×32×64³ with 7
	// rounds).
	rg := min(tb+1, wg/8, limit/wg)
	if rg < 1 {
		return fmt.Errorf("ops.%s: workgroup of %d is too small to reduce", op, wg)
	}
	sh := max(halos, rg*wg)
	tl := tile.tiles(p.Size)
	perChannel := p.N * tl[0] * tl[1] * tl[2]
	target := tuned(g, dwTargetGroups, dwGroupsPerCore*cpuCores)
	chunks := min(perChannel, max(1, target/(c*blocks)))
	perChunk := dwCeil(perChannel, chunks)
	chunks = dwCeil(perChannel, perChunk)

	join, split, x2, _ := g.dwJoin(c, x, dwPlanes{})
	// Without dx its bindings take the dummy and sinks.
	acc, dx1Access, dx2Access := dx.accumulates()
	dx1, dx2 := g.discard(), g.discard()
	if fused {
		dx1 = dx.first.gpu.buf
		if dx.second != nil {
			dx2 = dx.second.gpu.buf
		}
	}
	u := p.UpFactor()
	first, err := g.kernel("depthwise_dw", []vk.Access{vk.Read, vk.Read, vk.Write, vk.Read, vk.Read, dx1Access, dx2Access}, 48,
		uint32(tile.tw/tx), uint32(tile.th), 1, uint32(tile.td), uint32(k), uint32(kdb), uint32(rg), uint32(sh), uint32(tx), join,
		uint32(u[0]), uint32(u[1]), uint32(u[2]), b32(fused), acc)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	second, err := g.kernel("depthwise_dw_sum", []vk.Access{g.input(false), vk.Write, vk.Write}, 24, elementwiseWG/4)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	groups := c * blocks * chunks
	partial, err := g.scratchBuf("dw-partial", groups*(tb+1))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushDepthwiseDW{uint32(p.N), uint32(c), uint32(p.Size[0]), uint32(p.Size[1]), uint32(p.Size[2]),
		uint32(tl[0]), uint32(tl[1]), uint32(tl[2]), uint32(blocks), uint32(chunks), uint32(perChunk), uint32(split)}
	if err := g.dispatch(op, first, vk.Grid1D(groups, 1), push, x.first.gpu.buf, dy.gpu.buf, partial, x2, g.buf(w), dx1, dx2); err != nil {
		return err
	}
	sum := pushDepthwiseDWSum{uint32(c), uint32(k * k * k), uint32(tb), uint32(blocks), uint32(chunks), b32(db != nil)}
	items := c * k * k * k
	if db != nil {
		items += p.C
	}
	return g.dispatch(op, second, vk.Grid1D(items, elementwiseWG/4), sum, partial, dw.gpu.buf, g.out(db))
}
