package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/vk"
)

// CPU devices run the GEMM family's products as direct convolutions
// (shaders/conv_direct.comp): register blocks of sums, no shared memory,
// no barriers. conv_gemm stages its operands through shared memory, which
// a CPU implementation loads one SIMD lane at a time; on lavapipe the
// direct kernels are several times faster (BenchmarkConvDirect).
const (
	// directCOB is the result channels per invocation. The forward and
	// data-gradient passes take directVox voxels per channel (a row of up
	// to directVox along w, and as many rows as fit); the weight gradient
	// takes the taps of whole kernel planes up to directWgradTaps and
	// steps along w by directWgradTX voxels.
	// Larger blocks run faster but take lavapipe's compiler longer, and
	// every process compiles its pipelines (Mesa's disk cache aside).
	// Lavapipe, 3³ at 2×32³ and 16 channels (BenchmarkConvDirect, forward,
	// data and weight gradients): 8 channels × 32 voxels 40, 40 and 41 ms,
	// compiled in 0.8 s per product and level; 16 × 32 voxels 36, 31 and
	// 31 ms, compiled in up to 2.8 s (5 s for the weight gradient);
	// 8 × 8 voxels with 9 taps 74, 72 and 63 ms. Rows of a multiple of 4
	// voxels are read as vec4s (all three products: 125-143 → 105-107 ms).
	directCOB       = 8
	directVox       = 32
	directWgradTX   = 4
	directWgradTaps = 27
	// directMaxK and directMaxStride bound the kernel and stride along w
	// and h: the taps along w, the row segment and (weight gradient) the
	// taps along h are unrolled into registers.
	directMaxK      = 5
	directMaxStride = 4
	// directWG is the workgroup: two SIMD vectors of lavapipe.
	directWG = 16
	// directInvocsPerCore is how many invocations a weight gradient splits
	// into for each of cpuCores, so that every core has work while the
	// splits stay long.
	directInvocsPerCore = 128
)

// directGEMM reports whether conv_direct computes geo's products: on CPU
// devices, for kernels and strides along h and w it can unroll, unless a
// GEMM tiling is forced (SetGEMMTile).
func (g *GPU) directGEMM(geo convGeom) bool {
	on := g.cpuTuned() && g.gemmTile == nil
	if g.directOn != nil {
		on = *g.directOn
	}
	return on && geo.ks[1] <= directMaxK && geo.ks[2] <= directMaxK &&
		geo.st[1] <= directMaxStride && geo.st[2] <= directMaxStride
}

// pushDirect is conv_direct's push-constant block (96 bytes).
type pushDirect struct {
	XS, YS    [4]uint32
	Geo, Pad  [4]int32
	CH, Split [4]uint32
}

// convDirect records conv_direct for one product of geo; a, b, bias, c and
// acc are convGEMM's (bias nil or an element per result channel; acc only
// with the forward product or the data gradient).
func (g *GPU) convDirect(op, label string, mode uint32, geo convGeom, a, b, bias, c *vk.Buffer, acc bool) error {
	taps := geo.ks.Voxels()
	push := pushDirect{
		XS:  dims4(geo.xs, geo.xs.Voxels()),
		YS:  dims4(geo.ys, geo.ys.Voxels()),
		Geo: [4]int32{int32(geo.ks[0]), int32(geo.st[0]), int32(geo.st[1]), int32(taps)},
		Pad: [4]int32{int32(geo.pb[0]), int32(geo.pb[1]), 0, 0},
		CH:  [4]uint32{uint32(geo.nb), uint32(geo.c0), uint32(geo.c1), 0},
	}
	var cob, tx, ty, wkd, invocs int
	// Source channels per step: a data gradient at stride SW along w gives
	// each sum about KW/SW products per source row, and a CPU device loads
	// and stores the sums for each row; SW channels at a time restore the
	// forward pass's KW (network's strided conv, lavapipe: 2×16×32³ → 32
	// channels, data gradient 11.0-12.2 → 9.7-10.5 ms; 4 channels 9.0-9.9).
	cib := 1
	if mode == gemmDgrad {
		cib = geo.st[2]
	}
	// The weight gradient's splits and the floats of each one's partials.
	splits, partLen := 1, 0
	// Rows read as vec4s: the source's (x, or y in the data gradient) when
	// every segment starts at a multiple of 4 plus a constant, and dy's in
	// the weight gradient.
	var src4, dy4 bool
	switch mode {
	case gemmFwd, gemmDgrad:
		res, cRes := geo.ys, geo.c1
		if mode == gemmDgrad {
			res, cRes = geo.xs, geo.c0
		}
		cob = evenBlock(cRes, directCOB)
		// A data gradient's blocks along w start at stride phase 0.
		sw := 1
		if mode == gemmDgrad {
			sw = geo.st[2]
		}
		tx = ceilDiv(min(res[2], directVox), sw) * sw
		// Several rows share their weights where every row takes the same
		// taps along h.
		ty = 1
		if mode == gemmFwd || geo.st[1] == 1 {
			ty = max(1, min(res[1], directVox/tx))
		}
		if mode == gemmFwd {
			src4 = geo.xs[2]%4 == 0 && tx*geo.st[2]%4 == 0
		} else {
			src4 = geo.ys[2]%4 == 0 && (tx/sw)%4 == 0
		}
		blocksW, blocksH := ceilDiv(res[2], tx), ceilDiv(res[1], ty)
		if mode == gemmDgrad && geo.st[1] > 1 {
			// Rows by stride phase (see conv_direct.comp), each phase as
			// many.
			blocksH = ceilDiv(res[1], geo.st[1]) * geo.st[1]
		}
		cBlocks := ceilDiv(cRes, cob)
		push.Pad[2], push.Pad[3] = int32(blocksW), int32(cBlocks)
		push.Split[0] = uint32(blocksH)
		invocs = cBlocks * geo.nb * res[0] * blocksH * blocksW
	case gemmWgrad:
		cob = evenBlock(geo.c1, directCOB)
		tx, ty = min(geo.ys[2], directWgradTX), 1
		wkd = max(1, min(geo.ks[0], directWgradTaps/(geo.ks[1]*geo.ks[2])))
		src4 = geo.xs[2]%4 == 0 && tx*geo.st[2]%4 == 0
		dy4 = geo.ys[2]%4 == 0 && tx%4 == 0
		cBlocks := ceilDiv(geo.c1, cob)
		perSplit := ceilDiv(geo.ks[0], wkd) * geo.c0 * cBlocks
		rows := geo.nb * geo.ys[0] * geo.ys[1]
		splits = min(rows, max(1, ceilDiv(directInvocsPerCore*cpuCores, perSplit)))
		perRows := ceilDiv(rows, splits)
		splits = ceilDiv(rows, perRows)
		push.Pad[3] = int32(cBlocks)
		partLen = geo.c1 * geo.c0 * taps
		if bias != nil {
			partLen += geo.c1 // the bias gradient's sums after the weights'
		}
		push.Split = [4]uint32{uint32(splits), uint32(perRows), uint32(rows), uint32(partLen)}
		invocs = perSplit * splits
	}
	push.CH[3] = uint32(invocs)
	if acc && mode == gemmWgrad {
		return fmt.Errorf("ops.%s: conv_direct cannot add a weight gradient to its result", op)
	}
	kern, err := g.kernel("conv_direct", []vk.Access{g.input(src4), g.input(dy4), vk.Read, resultAccess(acc)}, 96,
		directWG, uint32(cob), uint32(tx), uint32(geo.ks[2]), uint32(geo.ks[1]), uint32(geo.st[2]), uint32(geo.pb[2]),
		mode, b32(bias != nil), uint32(ty), uint32(max(wkd, 1)), b32(src4), b32(dy4), uint32(cib), b32(acc))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	grid := vk.Grid1D(invocs, directWG)
	if mode == gemmWgrad && bias != nil {
		// bias receives the bias gradient: each split's row of partials
		// holds the weights' sums and then the bias's, added in one pass.
		part, err := g.scratchBuf("conv-splitk", splits*partLen)
		if err != nil {
			return fmt.Errorf("ops.%s: %w", op, err)
		}
		if err := g.dispatchAs(op, label, kern, grid, push, b, a, g.dummy, part); err != nil {
			return err
		}
		n := geo.c1 * geo.c0 * taps
		return g.splitSum2(op, label, part, c, n, bias, geo.c1, splits, partLen, 0, false)
	}
	if bias == nil {
		bias = g.dummy
	}
	return g.dispatchSplit(op, label, kern, grid, push, splits, partLen, b, a, bias, c, acc)
}
