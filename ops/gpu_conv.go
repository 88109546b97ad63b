package ops

import (
	"fmt"
	"strings"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The GEMM family (pointwise, dense and transposed convolutions, forward and
// backward) runs on one implicit-GEMM kernel, shaders/conv_gemm.comp. Every
// operation is phrased as one convolution geometry, x [nb, c0, xs] convolved
// with w [c1, c0, ks] into y [nb, c1, ys], and one of three products:
//
//	gemmFwd   y  = w ⊛ x (+ bias)     conv forward; transposed backward data
//	gemmDgrad x  = wᵀ ⊛ y (+ bias)    conv backward data; transposed forward
//	gemmWgrad w  = Σ y·x              weight gradients, split-K over voxels
//
// A transposed convolution (in → out, weights [in, out, k]) is the backward
// data pass of the convolution out → in with the same weights, so it needs
// no kernel of its own and supports any kernel and stride. On CPU devices
// the same three products run as direct convolutions instead
// (shaders/conv_direct.comp, gpu_conv_direct.go).
const (
	gemmFwd uint32 = iota
	gemmDgrad
	gemmWgrad
)

// gemmProducts name the products in timing labels: a timed GEMM dispatch is
// labelled "Op/product", so profiles and tiling sweeps tell them apart.
var gemmProducts = [...]string{gemmFwd: "fwd", gemmDgrad: "dgrad", gemmWgrad: "wgrad"}

const productSep = "/"

// GEMMProduct returns the GEMM product ("fwd", "dgrad" or "wgrad") of a
// timing's label, or "" for a dispatch outside the GEMM family.
func GEMMProduct(label string) string {
	i := strings.LastIndex(label, productSep)
	if i < 0 {
		return ""
	}
	return label[i+1:]
}

// convGeom is a convolution in conv_gemm's terms.
type convGeom struct {
	nb, c0, c1         int
	xs, ys, ks, st, pb ref.Dims3
}

func (c convGeom) pointwise() bool {
	one := ref.Dims3{1, 1, 1}
	return c.ks == one && c.st == one && c.pb == ref.Dims3{} && c.xs == c.ys
}

// pushConv is conv_gemm's push-constant block (8 uvec4, 128 bytes, the
// minimum every device offers).
type pushConv struct {
	XS, YS, KS, ST, PB, CH, GEMM, Tiles [4]uint32
}

// GEMMTile is one tiling of conv_gemm: BM×BN outputs per workgroup, K in
// steps of BK, TM×TN outputs per invocation.
type GEMMTile struct{ BM, BN, BK, TM, TN int }

func (t GEMMTile) String() string {
	return fmt.Sprintf("%d×%d×%d/%d×%d", t.BM, t.BN, t.BK, t.TM, t.TN)
}

func (t GEMMTile) wg() int { return (t.BM / t.TM) * (t.BN / t.TN) }

// sharedBytes is the shared memory of the two tiles (rows padded by one
// vec4) and of the two K steps' index tables (an ivec4 and an int per
// column).
func (t GEMMTile) sharedBytes() int { return 4 * t.BK * (t.BM + 4 + t.BN + 4 + 10) }

// fits reports whether the tile keeps the device's workgroup and shared
// memory limits and the divisibility conv_gemm's loaders rely on (the
// workgroup is a multiple of BM, BN and BK and divides BM·BK and BN·BK; the
// shared tiles are rows of vec4s).
func (t GEMMTile) fits(info vk.DeviceInfo, maxWG int) bool {
	if t.TM < 1 || t.TN < 1 || t.BK < 1 || t.BM%t.TM != 0 || t.BN%t.TN != 0 || t.BM%4 != 0 || t.BN%4 != 0 {
		return false
	}
	w := t.wg()
	return w <= maxWG && t.sharedBytes() <= int(info.MaxSharedMemory) &&
		w%t.BM == 0 && w%t.BN == 0 && w%t.BK == 0 && t.BM*t.BK%w == 0 && t.BN*t.BK%w == 0
}

// gemmCandidates are the tilings SetGEMMTile is meant to compare: the
// built-in choices and wider register tiles.
var gemmCandidates = []GEMMTile{
	{8, 8, 16, 1, 1}, {16, 16, 16, 1, 4}, {16, 128, 16, 2, 4}, {16, 256, 16, 2, 8},
	{32, 128, 16, 4, 4}, {32, 256, 16, 4, 8}, {64, 64, 16, 4, 4}, {64, 64, 16, 8, 8}, {64, 64, 32, 4, 4}, {64, 128, 16, 4, 8},
	{64, 256, 16, 8, 8}, {128, 64, 16, 8, 4}, {128, 128, 16, 8, 8},
	{64, 128, 8, 4, 8}, {128, 128, 8, 8, 8},
}

// GEMMTiles returns the candidate tilings that fit this device.
func (g *GPU) GEMMTiles() []GEMMTile {
	var out []GEMMTile
	for _, t := range gemmCandidates {
		if t.fits(g.dev.Info(), g.gemmMaxWG()) {
			out = append(out, t)
		}
	}
	return out
}

// SetGEMMTile makes every product of the GEMM family use tile t from now on
// (nil: the built-in choice per product). It is meant for benchmarks that
// compare tilings: the tile sets the order in which K is summed, so results
// differ in their rounding between tilings.
func (g *GPU) SetGEMMTile(t *GEMMTile) error {
	if t != nil && !t.fits(g.dev.Info(), g.gemmMaxWG()) {
		return fmt.Errorf("ops.SetGEMMTile: tile %v does not fit device %s", *t, g.dev.Info().Name)
	}
	if t != nil {
		c := *t
		t = &c
	}
	g.gemmTile = t
	return nil
}

func (g *GPU) gemmMaxWG() int {
	info := g.dev.Info()
	return min(int(info.MaxWorkgroupInvocs), int(info.MaxWorkgroupSize[0]), gemmWG)
}

// gemmWG is the largest workgroup: 8 NVIDIA warps or 4 AMD waves, a
// multiple of lavapipe's 8 lanes; gemmMinWG the smallest, one AMD wave.
const (
	gemmWG    = 256
	gemmMinWG = 64
	// gemmMinWGCPU is the smallest workgroup of tiles up to 16×16 on CPU
	// devices, which need no wave to fill: two SIMD vectors, each invocation
	// 4 outputs of the product (lavapipe: the weight gradient of a pointwise
	// conv of 8 channels at 32³ 1.7× faster). Larger tiles keep gemmMinWG:
	// the workgroup bounds BN.
	gemmMinWGCPU = 16
)

// pickTile chooses the tile for an M×N product: the tile edge follows the
// matrix edge down to 8 (Cout is often 16 or 32, so 64-row tiles would idle
// half the workgroup, and the weight gradient of a pointwise conv of 8
// channels is an 8×8 product) and every invocation owns up to 4×4 outputs. It shrinks the
// tile until the device's workgroup and shared-memory limits hold, keeping
// the divisibility conv_gemm's loaders rely on.
func (g *GPU) pickTile(m, n int) (GEMMTile, error) {
	if g.gemmTile != nil {
		return *g.gemmTile, nil
	}
	t := GEMMTile{BM: 64, BN: 64, BK: 16}
	switch {
	case m <= 8:
		t.BM = 8
	case m <= 16:
		t.BM = 16
	case m <= 32:
		t.BM = 32
	}
	switch {
	case n >= 128 && t.BM <= 32:
		t.BN = 128
	case n <= 8 && t.BM <= 32:
		t.BN = 8
	case n <= 16 && t.BM <= 32:
		t.BN = 16
	case n <= 32 && t.BM <= 32:
		t.BN = 32
	}
	switch g.gemmRule { // the kernel choice gemm-tile
	case "wide":
		if n >= 256 && t.BM <= 32 {
			t.BN = 256
		} else if n >= 128 && t.BM == 64 {
			t.BN = 128
		}
	case "k32":
		t.BK = 32
	case "k8":
		t.BK = 8
	}
	info := g.dev.Info()
	maxWG := g.gemmMaxWG()
	minWG := gemmMinWG
	if t.BM*t.BN <= 16*16 {
		minWG = tuned(g, gemmMinWG, gemmMinWGCPU)
	}
	for {
		// 4×4 outputs per invocation where the workgroup can shrink to
		// fit: a small tile (weight gradients of few channels) then gets
		// fewer invocations, not fewer sums each (1×4 per invocation was
		// half as fast on lavapipe at 32×32 channels).
		wg := min(maxWG, max(t.BM*t.BN/16, min(minWG, maxWG)))
		per := max(t.BM*t.BN/wg, 1)
		t.TN = min(4, per)
		t.TM = per / t.TN
		if t.fits(info, maxWG) {
			return t, nil
		}
		switch {
		case t.BN > 32:
			t.BN /= 2
		case t.BM > 8:
			t.BM /= 2
		case t.BN > 8:
			t.BN /= 2
		default:
			return t, fmt.Errorf("device %s: no GEMM tile fits %d invocations and %d bytes of shared memory",
				info.Name, maxWG, info.MaxSharedMemory)
		}
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func dims4(d ref.Dims3, w int) [4]uint32 {
	return [4]uint32{uint32(d[0]), uint32(d[1]), uint32(d[2]), uint32(w)}
}

// Split-K: a product whose output tiles give fewer than gemmSplitTarget
// invocations splits its K range (each split summing at least gemmSplitMinK
// terms) so that it still fills a large GPU. Weight gradients (a handful of
// tiles, K = batch·voxels) always need it; forward and data-gradient passes
// need it at the deep levels, where the voxels are few and the channels
// many. Small products stay a single pass.
// A CPU implementation runs a few workgroups at a time, one per core, and
// gains nothing from splitting beyond that.
const (
	gemmSplitTarget    = 512 * gemmWG
	gemmSplitTargetCPU = 16 * gemmWG
	gemmSplitMinK      = 512
	// splitkMaxLanes bounds the invocations that share one element of
	// conv_splitk's sum (a power of two dividing elementwiseWG).
	splitkMaxLanes = 64
	// splitkWGCPU is conv_splitk's workgroup on a CPU device, which sums
	// each element in one lane: small, so that few elements still spread
	// over the cores.
	splitkWGCPU = 64
)

// convGEMM records conv_gemm in the given mode. a, b and c are the A, B and
// C operands of that mode (see conv_gemm.comp); bias is nil or has an
// element per output row. With acc the product is added to c's contents.
func (g *GPU) convGEMM(op string, mode uint32, geo convGeom, a, b, bias, c *vk.Buffer, acc bool) error {
	label := op
	if g.timed {
		label = op + productSep + gemmProducts[mode]
	}
	if g.directGEMM(geo) {
		return g.convDirect(op, label, mode, geo, a, b, bias, c, acc)
	}
	taps := geo.ks.Voxels()
	xvox, yvox := geo.xs.Voxels(), geo.ys.Voxels()
	var m, n, k, phases, cLen int
	switch mode {
	case gemmFwd:
		m, n, k, phases = geo.c1, geo.nb*yvox, geo.c0*taps, 1
		cLen = geo.nb * geo.c1 * yvox
	case gemmDgrad:
		// N and K differ per stride phase; tiles cover the largest phase.
		m, n, k = geo.c0, geo.nb, geo.c1
		phases = geo.st.Voxels()
		for ax := range 3 {
			n *= ceilDiv(geo.xs[ax], geo.st[ax])
			k *= ceilDiv(geo.ks[ax], geo.st[ax])
		}
		cLen = geo.nb * geo.c0 * xvox
	case gemmWgrad:
		m, n, k, phases = geo.c1, geo.c0*taps, geo.nb*yvox, 1
		cLen = m * n
	}
	t, err := g.pickTile(m, n)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	tilesM, tilesN := ceilDiv(m, t.BM), ceilDiv(n, t.BN)
	kTiles := ceilDiv(k, t.BK)
	info := g.dev.Info()
	target := tuned(g, gemmSplitTarget, gemmSplitTargetCPU)
	splits := min(ceilDiv(target, tilesM*tilesN*phases*t.wg()), max(kTiles*t.BK/gemmSplitMinK, 1))
	// The partials must fit one buffer binding.
	if most := int(uint64(info.MaxStorageBufferRange) / 4 / uint64(cLen)); splits > most {
		splits = max(most, 1)
	}
	chunk := ceilDiv(kTiles, splits) * t.BK
	splits = ceilDiv(k, chunk)

	groups := tilesM * tilesN * splits * phases
	gx := min(groups, int(info.MaxWorkgroupCount[0]))
	gy := ceilDiv(groups, gx)
	if gy > int(info.MaxWorkgroupCount[1]) {
		return fmt.Errorf("ops.%s: %d×%d product (%d stride phases) needs %d workgroups, more than device %s allows",
			op, m, n, phases, groups, info.Name)
	}

	pw := uint32(0)
	if geo.pointwise() {
		pw = 1
	}
	// Split, the partials are added to c by conv_splitk.
	direct := acc && splits == 1
	kern, err := g.kernel("conv_gemm", []vk.Access{vk.Read, vk.Read, vk.Read, resultAccess(direct)}, 128,
		uint32(t.wg()), 1, 1, uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.TM), uint32(t.TN), mode, pw, b32(direct))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	hasBias := 0
	if bias != nil {
		hasBias = 1
	} else {
		bias = g.dummy
	}
	push := pushConv{
		XS:    dims4(geo.xs, xvox),
		YS:    dims4(geo.ys, yvox),
		KS:    dims4(geo.ks, taps),
		ST:    dims4(geo.st, hasBias),
		PB:    dims4(geo.pb, geo.nb),
		CH:    [4]uint32{uint32(geo.c0), uint32(geo.c1), uint32(splits), uint32(chunk)},
		GEMM:  [4]uint32{uint32(m), uint32(n), uint32(k), uint32(cLen)},
		Tiles: [4]uint32{uint32(tilesM), uint32(tilesN), uint32(phases), 0},
	}
	grid := [3]uint32{uint32(gx), uint32(gy), 1}
	return g.dispatchSplit(op, label, kern, grid, push, splits, cLen, a, b, bias, c, acc)
}

// resultAccess is the access of a kernel's result binding: written, or
// read and written when the kernel adds to it.
func resultAccess(acc bool) vk.Access {
	if acc {
		return vk.ReadWrite
	}
	return vk.Write
}

// dispatchSplit records k, bound to x, y, z and its result c of n floats:
// into c when splits is 1, else into splits rows of partials (one per
// split, n floats apart) that conv_splitk adds in a fixed order. With acc
// the sums are added to c's contents (when splits is 1, k adds them).
func (g *GPU) dispatchSplit(op, label string, k *vk.Kernel, grid [3]uint32, push any, splits, n int, x, y, z, c *vk.Buffer, acc bool) error {
	if splits == 1 {
		return g.dispatchAs(op, label, k, grid, push, x, y, z, c)
	}
	part, err := g.scratchBuf("conv-splitk", splits*n)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if err := g.dispatchAs(op, label, k, grid, push, x, y, z, part); err != nil {
		return err
	}
	return g.splitSum(op, label, part, c, n, splits, acc)
}

// splitSum records conv_splitk: out[i] = Σ_s part[s·n + i] for i < n,
// s < splits, summed in a fixed order; with acc, added to out[i].
func (g *GPU) splitSum(op, label string, part, out *vk.Buffer, n, splits int, acc bool) error {
	return g.splitSum2(op, label, part, out, n, nil, 0, splits, n, 0, acc)
}

// splitSum2 is splitSum into two results in one dispatch: the first n1
// sums into out1 (with acc, added to it), the next n2 (when out2 is not
// nil) into out2; split s's partials start at offset + s·stride.
func (g *GPU) splitSum2(op, label string, part, out1 *vk.Buffer, n1 int, out2 *vk.Buffer, n2, splits, stride, offset int, acc bool) error {
	if out2 == nil {
		out2, n2 = g.discard(), 0
	}
	n := n1 + n2
	// Lanes per element on a GPU: enough that the sum, too, reaches the
	// invocation target when the elements are few. A CPU device sums each
	// element in one lane: lavapipe runs the lanes' shared-memory tree
	// slowly (the weight gradient of a 3³ conv from 8 to 16 channels at
	// 16³, 64 splits of 3472 sums: 7.6-8.1 ms with 2 lanes, 0.4-0.7 ms with
	// one; the universal step at base 8, 32³: 99-108 → 90-94 ms).
	lanes := 1
	for !g.cpuTuned() && lanes < splitkMaxLanes && 2*lanes <= splits && n*lanes < gemmSplitTarget {
		lanes *= 2
	}
	wg := tuned(g, elementwiseWG, splitkWGCPU)
	sum, err := g.kernel("conv_splitk", []vk.Access{g.input(false), resultAccess(acc), vk.Write}, 20,
		uint32(wg), 1, 1, uint32(lanes), b32(acc))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := [5]uint32{uint32(n), uint32(splits), uint32(stride), uint32(offset), uint32(n1)}
	return g.dispatchAs(op, label, sum, vk.Grid1D(n, wg/lanes), push, part, out1, out2)
}

// bufOrNil is the buffer of an optional tensor, nil when absent.
func bufOrNil(t *Tensor) *vk.Buffer {
	if t == nil {
		return nil
	}
	return t.gpu.buf
}

// convBackward records the gradients of a convolution geometry whose y is
// the operation's output: dx by gemmDgrad, dw by split-K gemmWgrad, db by
// ChannelSum. Absent gradients are skipped.
func (g *GPU) convBackward(op string, geo convGeom, x, w, dy, dx, dw, db *Tensor) error {
	if dx != nil {
		if err := g.convGEMM(op, gemmDgrad, geo, w.gpu.buf, dy.gpu.buf, nil, dx.gpu.buf, dx.accumulate); err != nil {
			return err
		}
	}
	if dw != nil {
		// conv_direct sums the bias gradient in the weights' pass, which
		// reads every dy already (lavapipe: ChannelSum's two dispatches).
		var dbDirect *vk.Buffer
		if db != nil && g.directGEMM(geo) {
			dbDirect, db = db.gpu.buf, nil
		}
		if err := g.convGEMM(op, gemmWgrad, geo, dy.gpu.buf, x.gpu.buf, dbDirect, dw.gpu.buf, false); err != nil {
			return err
		}
	}
	if db != nil {
		if err := g.ChannelSum(geo.nb, geo.c1, geo.ys, dy, db); err != nil {
			return fmt.Errorf("ops.%s: bias gradient: %w", op, err)
		}
	}
	return nil
}

func pointwiseGeom(p ref.PointwiseParams) convGeom {
	one := ref.Dims3{1, 1, 1}
	return convGeom{nb: p.N, c0: p.Cin, c1: p.Cout, xs: p.Size, ys: p.Size, ks: one, st: one}
}

func convGeomOf(p ref.ConvParams) convGeom {
	return convGeom{nb: p.N, c0: p.Cin, c1: p.Cout, xs: p.In, ys: p.OutputSize(), ks: p.Kernel, st: p.Stride, pb: p.PadBefore}
}

// transposeGeom is the convolution whose backward data pass is p: its input
// is p's output and its output p's input.
func transposeGeom(p ref.ConvTransposeParams) convGeom {
	return convGeom{nb: p.N, c0: p.Cout, c1: p.Cin, xs: p.OutputSize(), ys: p.In, ks: p.Kernel, st: p.Stride}
}

// PointwiseConv3d implements Engine: one GEMM y[n] = w·x[n] + b with the
// batch folded into the columns.
func (g *GPU) PointwiseConv3d(p ref.PointwiseParams, x, w, b, y *Tensor) error {
	const op = "PointwiseConv3d"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	if smallPointwise(p.Cin, p.Cout) {
		return g.pointwiseSmall(op, p.N, p.Cin, p.Cout, p.Size.Voxels(), false, x.gpu.buf, w.gpu.buf, bufOrNil(b), y.gpu.buf)
	}
	return g.convGEMM(op, gemmFwd, pointwiseGeom(p), w.gpu.buf, x.gpu.buf, bufOrNil(b), y.gpu.buf, false)
}

// pointwiseSmallMax bounds the channels of the memory-bound pointwise kernel:
// each invocation keeps one vec4 per input channel in registers.
const pointwiseSmallMax = 64

// pointwiseSmallItemsCPU is the items (of one plane) per invocation of
// pointwise_small on a CPU device, which then reads each weight for 4
// items (lavapipe, forward and data gradient: 8 channels at 32³ 1.08 →
// 0.84 ms, 16 at 16³ 0.57 → 0.37, 32 at 8³ 0.45-0.51 → 0.32-0.35; 2 and 8
// items were slower).
const pointwiseSmallItemsCPU = 4

func smallPointwise(cin, cout int) bool { return cin <= pointwiseSmallMax && cout <= pointwiseSmallMax }

type pushPointwise struct {
	Items, Total uint32
	Slope        float32 // the input norm's LeakyReLU
}

// pointwiseSmall records pointwise_small.comp: y[n] = w·x[n] + b, or with
// trans the data gradient x-channels cin → cout through wᵀ (w stored
// [cin][cout]). bias may be nil.
func (g *GPU) pointwiseSmall(op string, n, cin, cout, vox int, trans bool, x, w, bias, y *vk.Buffer) error {
	return g.pointwiseSmallNormed(op, n, cin, cout, vox, trans, x, w, bias, y, nil)
}

// pwNorm is the instance norm that pointwise_small applies to its input as
// it reads it: the norm's parameters and statistics.
type pwNorm struct {
	p                         ref.NormParams
	gamma, beta, mean, invStd *vk.Buffer
}

// inputNorm is the norm that the pointwise kernels apply to their input.
func inputNorm(np ref.NormParams, gamma, beta, mean, invStd *Tensor) *pwNorm {
	return &pwNorm{np, gamma.gpu.buf, beta.gpu.buf, mean.gpu.buf, invStd.gpu.buf}
}

// pwNormOrNone returns nm, or without one the dummy buffers for its
// bindings.
func (g *GPU) pwNormOrNone(nm *pwNorm) pwNorm {
	if nm != nil {
		return *nm
	}
	return pwNorm{gamma: g.dummy, beta: g.dummy, mean: g.dummy, invStd: g.dummy}
}

// pointwiseSmallNormed is pointwiseSmall whose input is normalised by nm as
// it is read, when nm is not nil.
func (g *GPU) pointwiseSmallNormed(op string, n, cin, cout, vox int, trans bool, x, w, bias, y *vk.Buffer, nm *pwNorm) error {
	const wg = 128
	items, vec4 := vec4Items(vox)
	vpi := tuned(g, 1, pointwiseSmallItemsCPU)
	for items%vpi != 0 {
		vpi--
	}
	norm := g.pwNormOrNone(nm)
	k, err := g.kernel("pointwise_small",
		[]vk.Access{g.input(vec4), g.input(false), vk.Read, vk.Write, vk.Read, vk.Read, vk.Read, vk.Read}, 12,
		wg, uint32(cin), uint32(cout), b32(trans), b32(vec4), b32(bias != nil), uint32(vpi), b32(nm != nil),
		b32(norm.p.LeakyReLU))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	if bias == nil {
		bias = g.dummy
	}
	total := n * items
	push := pushPointwise{uint32(items), uint32(total), float32(norm.p.Slope)}
	return g.dispatch(op, k, vk.Grid1D(total/vpi, wg), push, x, w, bias, y, norm.gamma, norm.beta, norm.mean, norm.invStd)
}

// checkNormed validates the arguments of PointwiseConv3dNormed and its
// backward pass that they share.
func (g *GPU) checkNormed(op string, p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd *Tensor, more ...arg) error {
	if err := g.checkNorm(op, np, x, nil, gamma, beta, in("mean", mean, np.StatsLen()), in("invStd", invStd, np.StatsLen())); err != nil {
		return err
	}
	if err := checkArgs(g, op, p, append([]arg{in("x", x, p.InputLen())}, more...)...); err != nil {
		return err
	}
	if np.N != p.N || np.C != p.Cin || np.Size != p.Size || np.Residual {
		return fmt.Errorf("ops.%s: %v does not normalise the input of %v without a residual", op, np, p)
	}
	return nil
}

// normedInput returns the normalised input of a pointwise convolution whose
// kernel cannot normalise it as it reads it: built in scratch memory.
func (g *GPU) normedInput(op string, np ref.NormParams, x, gamma, beta, mean, invStd *Tensor) (*vk.Buffer, error) {
	buf, err := g.scratchBuf("pw-normed", np.InputLen())
	if err != nil {
		return nil, fmt.Errorf("ops.%s: %w", op, err)
	}
	plan := g.newNormPlan(op, np)
	h := &Tensor{n: np.InputLen(), owner: g, gpu: gpuTensor{buf: buf}}
	return buf, g.normApply(&plan, 0, x, nil, nil, gamma, beta, mean.gpu.buf, invStd.gpu.buf, g.dummy, h, nil)
}

// PointwiseConv3dNormed implements Engine: pointwise_small normalises its
// input as it reads it; a product with many channels (the GEMM's) takes
// the normalised input from scratch memory.
func (g *GPU) PointwiseConv3dNormed(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, b, y *Tensor) error {
	const op = "PointwiseConv3dNormed"
	if err := g.checkNormed(op, p, np, x, gamma, beta, mean, invStd, in("w", w, p.WeightLen()),
		opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	if smallPointwise(p.Cin, p.Cout) {
		return g.pointwiseSmallNormed(op, p.N, p.Cin, p.Cout, p.Size.Voxels(), false, x.gpu.buf, w.gpu.buf, bufOrNil(b),
			y.gpu.buf, inputNorm(np, gamma, beta, mean, invStd))
	}
	h, err := g.normedInput(op, np, x, gamma, beta, mean, invStd)
	if err != nil {
		return err
	}
	return g.convGEMM(op, gemmFwd, pointwiseGeom(p), w.gpu.buf, h, bufOrNil(b), y.gpu.buf, false)
}

// PointwiseConv3dNormedBackward implements Engine: dh as
// PointwiseConv3dBackward's dx; dw and db from pointwise_dw normalising x as
// it reads it, or from the GEMM on the normalised input in scratch memory.
func (g *GPU) PointwiseConv3dNormedBackward(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, dy, dh, dw, db *Tensor) error {
	const op = "PointwiseConv3dNormedBackward"
	if err := g.checkNormed(op, p, np, x, gamma, beta, mean, invStd, in("w", w, p.WeightLen()),
		in("dy", dy, p.OutputLen()), opt("dh", dh, p.InputLen()), opt("dw", dw, p.WeightLen()),
		opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	if dh != nil {
		if err := g.pointwiseDataGrad(op, p, w, dy, dh); err != nil {
			return err
		}
	}
	if dw == nil {
		if db != nil {
			return g.ChannelSum(p.N, p.Cout, p.Size, dy, db)
		}
		return nil
	}
	if g.pointwiseDW(p) {
		return g.pointwiseWeightGradNormed(op, p, x, dy, dw, db, inputNorm(np, gamma, beta, mean, invStd))
	}
	h, err := g.normedInput(op, np, x, gamma, beta, mean, invStd)
	if err != nil {
		return err
	}
	ht := &Tensor{n: p.InputLen(), owner: g, gpu: gpuTensor{buf: h}}
	return g.convBackward(op, pointwiseGeom(p), ht, w, dy, nil, dw, db)
}

// PointwiseConv3dBackward implements Engine: dx = wᵀ·dy, dw = Σ dy·xᵀ over
// batch and voxels (deterministic split-K), db = ChannelSum(dy). Any of dx,
// dw and db may be nil.
func (g *GPU) PointwiseConv3dBackward(p ref.PointwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	const op = "PointwiseConv3dBackward"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		in("dy", dy, p.OutputLen()), opt("dx", dx, p.InputLen()), opt("dw", dw, p.WeightLen()),
		opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	if dx != nil {
		if err := g.pointwiseDataGrad(op, p, w, dy, dx); err != nil {
			return err
		}
		dx = nil
	}
	if dw != nil && g.pointwiseDW(p) {
		if err := g.pointwiseWeightGrad(op, p, x, dy, dw, db); err != nil {
			return err
		}
		dw, db = nil, nil
	}
	return g.convBackward(op, pointwiseGeom(p), x, w, dy, dx, dw, db)
}

// pointwiseDataGrad records dx = wᵀ·dy: with the memory-bound kernel when
// the channels are few, else the GEMM.
func (g *GPU) pointwiseDataGrad(op string, p ref.PointwiseParams, w, dy, dx *Tensor) error {
	if smallPointwise(p.Cin, p.Cout) {
		return g.pointwiseSmall(op, p.N, p.Cout, p.Cin, p.Size.Voxels(), true, dy.gpu.buf, w.gpu.buf, nil, dx.gpu.buf)
	}
	return g.convGEMM(op, gemmDgrad, pointwiseGeom(p), w.gpu.buf, dy.gpu.buf, nil, dx.gpu.buf, false)
}

// pointwiseDWBlock is the largest channel block of pointwise_dw along
// either axis: 8×8 products and 8 bias sums stay in registers. evenBlock
// sizes the blocks (the demo's 12 channels in two of 6: its pointwise_dw
// 11.1-12.1 → 9.3-10.2 ms per lavapipe training step).
const pointwiseDWBlock = 8

// vec4Items is how many items the pointwise kernels take per plane of vox
// voxels: vec4s when vox is a multiple of 4, voxels otherwise.
func vec4Items(vox int) (items int, vec4 bool) {
	if vox%4 == 0 {
		return vox / 4, true
	}
	return vox, false
}

// pointwiseDWBlocks is how many channel blocks pointwise_dw splits a
// weight gradient into; each block reads its input and output channels
// once, so the blocks multiply the bytes read.
func pointwiseDWBlocks(cin, cout int) int {
	return ceilDiv(cin, pointwiseDWBlock) * ceilDiv(cout, pointwiseDWBlock)
}

// pointwiseDW reports whether pointwise_dw computes p's weight and bias
// gradients rather than the split-K GEMM. On a GPU up to 4 blocks (16×16
// channels) read each byte at most twice, where the GEMM reads it once;
// more is not measured yet. On lavapipe pointwise_dw is faster at every
// channel count of the network (BenchmarkPointwiseWeightGrad, weight and
// bias gradients: 0.34 against 0.97 ms for 8→8 channels at 2×16³, 1.3
// against 3.9 for 32→32, 4.8 against 10.9 for 64→64, 64 blocks), and with
// few items (pointwiseOwnItems) at any number of blocks.
func (g *GPU) pointwiseDW(p ref.PointwiseParams) bool {
	blocks := pointwiseDWBlocks(p.Cin, p.Cout)
	if g.pwDWMaxBlocks != nil {
		return blocks <= *g.pwDWMaxBlocks
	}
	return blocks <= tuned(g, 4, 64) || g.pointwiseOwn(p)
}

// pointwiseOwnItems bounds the items (vec4s, or voxels) of a batch for
// which, on CPU devices, each invocation of pointwise_dw sums its own
// block and chunk (OWN) rather than a workgroup summing them in a tree:
// with few items the trees cost more than the products (lavapipe, weight
// and bias gradients at 2×4³, 256→256 channels: 13.6-14.1 → 0.87 ms, the
// GEMM 5.6-6.0; 128→128 at 2×8³ 4.2-4.6 → 1.3-1.4; 16→16 at 2×16³
// 0.72-0.73 → 0.51-0.56). With many, a workgroup's invocations read
// neighbouring items, which a CPU gathers faster than each invocation's
// own stream (16→16 at 2×64³: 14.6 against 15.7-17.1 ms).
const pointwiseOwnItems = 4096

// pointwiseOwnChunk is the fewest items an invocation sums in OWN mode
// while there are enough of them: shorter chunks leave more rows for the
// chunks' sum to add than products (8→8 channels at 2×16³: 0.50 ms with
// chunks of 2 items, 0.33 with 32, 0.25 with 64; 256→256 at 2×2³ 0.52,
// 0.53, 0.53, and 0.62 with 128).
const pointwiseOwnChunk = 64

func (g *GPU) pointwiseOwn(p ref.PointwiseParams) bool {
	items, _ := vec4Items(p.Size.Voxels())
	return g.cpuTuned() && p.N*items <= pointwiseOwnItems
}

type pushPointwiseDW struct {
	Items, Total, Chunks, PerChunk, Stride, DBAt uint32
	Slope                                        float32 // the input norm's LeakyReLU
}

// pointwiseWeightGrad records pointwise_dw and the sums of its chunks into
// dw and, when not nil, db.
func (g *GPU) pointwiseWeightGrad(op string, p ref.PointwiseParams, x, dy, dw, db *Tensor) error {
	return g.pointwiseWeightGradNormed(op, p, x, dy, dw, db, nil)
}

// pointwiseWeightGradNormed is pointwiseWeightGrad whose x is normalised by
// nm as it is read, when nm is not nil.
func (g *GPU) pointwiseWeightGradNormed(op string, p ref.PointwiseParams, x, dy, dw, db *Tensor, nm *pwNorm) error {
	cib, cob := evenBlock(p.Cin, pointwiseDWBlock), evenBlock(p.Cout, pointwiseDWBlock)
	vox := p.Size.Voxels()
	items, vec4 := vec4Items(vox)
	total := p.N * items
	blocks := pointwiseDWBlocks(p.Cin, p.Cout)
	stride := p.Cout*p.Cin + p.Cout
	// CPU devices take two neighbouring items per invocation and step,
	// halving the loads and stores of the sums (lavapipe, 16→16 channels at
	// 2×64³ 14.7-15.2 → 11.5-11.7 ms); GPUs read neighbouring items in
	// neighbouring invocations instead.
	vpi := tuned(g, 1, 2)
	own := g.pointwiseOwn(p)
	wg, rg, chunks := directWG, 1, 0
	if own {
		chunks = min(ceilDiv(total, pointwiseOwnChunk), max(1, ceilDiv(directInvocsPerCore*cpuCores, blocks)))
	} else {
		wg = tuned(g, 256, 64)
		// Sums per reduction round: RG·WG floats of shared memory.
		rg = min(cib*cob+cob, wg/8, int(g.dev.Info().MaxSharedMemory/4)/wg)
		if rg < 1 {
			return fmt.Errorf("ops.%s: %d-invocation workgroup does not fit shared memory to reduce", op, wg)
		}
		chunks = min(ceilDiv(total, wg), max(1, tuned(g, dwTargetGroups, dwGroupsPerCore*cpuCores)/blocks))
	}
	perChunk := ceilDiv(total, chunks)
	chunks = ceilDiv(total, perChunk)
	groups := blocks * chunks
	if own {
		groups = ceilDiv(groups, wg)
	}
	norm := g.pwNormOrNone(nm)
	k, err := g.kernel("pointwise_dw",
		[]vk.Access{g.input(vec4), g.input(vec4), vk.Write, vk.Read, vk.Read, vk.Read, vk.Read}, 28,
		uint32(wg), uint32(p.Cin), uint32(p.Cout), uint32(cib), uint32(cob), b32(vec4), uint32(rg), uint32(vpi), b32(own),
		b32(nm != nil), b32(norm.p.LeakyReLU))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	part, err := g.scratchBuf("pw-partial", chunks*stride)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	push := pushPointwiseDW{uint32(items), uint32(total), uint32(chunks), uint32(perChunk), uint32(stride), uint32(p.Cout * p.Cin),
		float32(norm.p.Slope)}
	if err := g.dispatch(op, k, vk.Grid1D(groups, 1), push, x.gpu.buf, dy.gpu.buf, part,
		norm.gamma, norm.beta, norm.mean, norm.invStd); err != nil {
		return err
	}
	// A row holds dw's sums and then db's: one dispatch adds both.
	return g.splitSum2(op, op, part, dw.gpu.buf, p.Cout*p.Cin, bufOrNil(db), p.Cout, chunks, stride, 0, false)
}

// Conv3d implements Engine as an implicit GEMM (M = Cout, N = batch·output
// voxels, K = Cin·taps) that gathers the padded, strided input windows while
// loading its tiles.
func (g *GPU) Conv3d(p ref.ConvParams, x, w, b, y *Tensor) error {
	const op = "Conv3d"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	return g.convGEMM(op, gemmFwd, convGeomOf(p), w.gpu.buf, x.gpu.buf, bufOrNil(b), y.gpu.buf, false)
}

// Conv3dBackward implements Engine. dx gathers over the output positions
// each input voxel reaches, one stride phase per workgroup so that
// only contributing taps are visited; dw is a split-K GEMM over batch and
// output voxels summed in a fixed order; db is ChannelSum(dy). Any of dx, dw
// and db may be nil.
func (g *GPU) Conv3dBackward(p ref.ConvParams, x, w, dy, dx, dw, db *Tensor) error {
	const op = "Conv3dBackward"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		in("dy", dy, p.OutputLen()), opt("dx", dx, p.InputLen()).accumulating(), opt("dw", dw, p.WeightLen()),
		opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	return g.convBackward(op, convGeomOf(p), x, w, dy, dx, dw, db)
}

// ConvTranspose3d implements Engine for any kernel and stride: it is the
// backward data pass of the convolution Cout → Cin with the same weights.
// When the kernel equals the stride (the network's up-sampling) each output
// voxel sees exactly one tap, and the memory-bound conv_taps kernel writes
// the output in whole rows instead.
func (g *GPU) ConvTranspose3d(p ref.ConvTransposeParams, x, w, b, y *Tensor) error {
	const op = "ConvTranspose3d"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		opt("b", b, p.BiasLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	if tapsOnly(p) {
		return g.convTaps(op, p, tapsUp, x, w, b, y)
	}
	return g.convGEMM(op, gemmDgrad, transposeGeom(p), w.gpu.buf, x.gpu.buf, bufOrNil(b), y.gpu.buf, false)
}

// convTapsMax bounds the taps of conv_taps: each invocation keeps four
// output channels' sums for every tap in registers.
const convTapsMax = 8

// tapsOnly reports whether conv_taps computes p: kernel = stride, few taps.
func tapsOnly(p ref.ConvTransposeParams) bool {
	return p.Kernel == p.Stride && p.Stride.Voxels() <= convTapsMax
}

// Modes of conv_taps: the transposed convolution and its data gradient.
const (
	tapsUp uint32 = iota
	tapsDown
)

type pushTaps struct {
	In                       [4]uint32
	Cin, Cout, Groups, Total uint32
}

// convTaps records conv_taps.comp for a transposed convolution with kernel
// = stride: going up, y from x (b may be nil); going down, the data
// gradient dx (into y) from dy (in x), b nil.
func (g *GPU) convTaps(op string, p ref.ConvTransposeParams, mode uint32, x, w, b, y *Tensor) error {
	acc := y.accumulate // tapsDown only: the forward pass refuses a view
	reduced, result := p.Cin, p.Cout
	if mode == tapsDown {
		reduced, result = p.Cout, p.Cin
	}
	vox := p.In.Voxels()
	total := p.N * vox
	push := pushTaps{In: dims4(p.In, vox), Cin: uint32(p.Cin), Cout: uint32(p.Cout), Groups: uint32(ceilDiv(result, 4)),
		Total: uint32(total)}
	// On GPUs an invocation takes one voxel, or two along w (tapsPairs,
	// rows of even length) with half the reduced channels per stage, for
	// the registers.
	vx := 1
	if g.tapsPairs && p.In[2]%2 == 0 && !g.cpuTuned() {
		vx = 2
	}
	spec := []uint32{128, uint32(p.Stride[0]), uint32(p.Stride[1]), uint32(p.Stride[2]), uint32(min(reduced, 32/vx)), mode,
		b32(b != nil), uint32(vx), b32(acc)}
	access := []vk.Access{vk.Read, vk.Read, vk.Read, resultAccess(acc)}
	grid := vk.Grid1D(int(push.Groups)*ceilDiv(total/vx, 128), 1)
	if g.cpuTuned() {
		// The texel variant: runs of up to tapsVXCPU voxels along w (the
		// longest that divides the rows), whose outputs with stride 2
		// along w are whole vec4s.
		vx := tapsVXCPU
		for p.In[2]%vx != 0 {
			vx /= 2
		}
		taps := p.Stride.Voxels()
		xVec4 := mode == tapsDown && vx*p.Stride[2]%4 == 0
		access = []vk.Access{g.input(xVec4), g.input(taps%4 == 0), vk.Read, resultAccess(acc)}
		spec[0], spec[7] = tapsWGCPU, uint32(vx)
		grid = vk.Grid1D(ceilDiv(result, tapsCOBCPU)*total/vx, tapsWGCPU)
	}
	k, err := g.kernel("conv_taps", access, 32, spec...)
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return g.dispatch(op, k, grid, push, x.gpu.buf, w.gpu.buf, g.buf(b), y.gpu.buf)
}

// conv_taps' texel variant on CPU devices: result channels per invocation
// (COB in the shader) and the workgroup.
const (
	tapsCOBCPU = 2
	tapsVXCPU  = 16
	tapsWGCPU  = 64
)

// ConvTranspose3dBackward implements Engine: dx is the forward convolution
// of dy with w (conv_taps when the kernel equals the stride), dw a split-K
// GEMM of x against the strided windows of dy, db = ChannelSum(dy). Any of
// dx, dw and db may be nil.
func (g *GPU) ConvTranspose3dBackward(p ref.ConvTransposeParams, x, w, dy, dx, dw, db *Tensor) error {
	const op = "ConvTranspose3dBackward"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("w", w, p.WeightLen()),
		in("dy", dy, p.OutputLen()), opt("dx", dx, p.InputLen()).accumulating(), opt("dw", dw, p.WeightLen()),
		opt("db", db, p.BiasLen())); err != nil {
		return err
	}
	geo := transposeGeom(p)
	if dx != nil && tapsOnly(p) {
		if err := g.convTaps(op, p, tapsDown, dy, w, nil, dx); err != nil {
			return err
		}
	} else if dx != nil {
		if err := g.convGEMM(op, gemmFwd, geo, w.gpu.buf, dy.gpu.buf, nil, dx.gpu.buf, dx.accumulate); err != nil {
			return err
		}
	}
	if dw != nil {
		if err := g.convGEMM(op, gemmWgrad, geo, x.gpu.buf, dy.gpu.buf, nil, dw.gpu.buf, false); err != nil {
			return err
		}
	}
	if db != nil {
		if err := g.ChannelSum(p.N, p.Cout, p.OutputSize(), dy, db); err != nil {
			return fmt.Errorf("ops.%s: bias gradient: %w", op, err)
		}
	}
	return nil
}
