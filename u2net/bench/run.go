package bench

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/vk"
)

// Options choose what to measure.
type Options struct {
	// Levels are the activation shapes of the per-level op table; nil
	// means the reference's levels (batch 2, base 16, 128³), scaled down to
	// fit the device's largest buffer binding.
	Levels []Shape
	// Anchor adds the §8 op set at 2×32×64³ with the PyTorch numbers.
	Anchor  bool
	Repeats int
	// Network times a training step and a forward pass, universal against
	// independent, at this setting; Domains 0 skips it.
	Network NetSetting
	// Scaling times the universal forward at these cubic sizes, with the
	// base channels and batch of ScalingNet.
	Scaling    []int
	ScalingNet NetSetting
	// Tiles times the GEMM-family operations (dense, strided, transposed
	// and pointwise convolutions) at this activation shape under every
	// candidate tiling of the GPU's GEMM kernel; N 0 skips it.
	Tiles Shape
	// Kernels times the universal network at this setting under each value
	// of each kernel choice in turn (ops.KernelChoices), the other choices
	// as set, against the choices as set: on GPU engines; Domains 0 skips
	// it.
	Kernels NetSetting
}

// NetSetting is a whole-network benchmark configuration.
type NetSetting struct {
	Domains, Base, Batch, Size int
	Pools                      [3]int
}

// QuickOptions finish in about a minute on lavapipe.
func QuickOptions() Options {
	return Options{
		Levels:  []Shape{{N: 1, C: 8, S: ref.Dims3{16, 16, 16}}, {N: 1, C: 16, S: ref.Dims3{8, 8, 8}}},
		Repeats: 3,
		Network: NetSetting{Domains: 1, Base: 8, Batch: 1, Size: 32, Pools: [3]int{3, 3, 3}},
		Scaling: []int{16, 32}, ScalingNet: NetSetting{Domains: 1, Base: 8, Batch: 1},
	}
}

// FullOptions are the reference's setting: batch 2, base 16, 128³ levels,
// five domains, the §8 op set.
func FullOptions() Options {
	return Options{
		Anchor: true, Repeats: 10, Tiles: Shape{N: 2, C: 32, S: ref.Dims3{64, 64, 64}},
		Network: NetSetting{Domains: 5, Base: 16, Batch: 2, Size: 128, Pools: [3]int{5, 5, 5}},
		Scaling: []int{32, 64, 96, 128}, ScalingNet: NetSetting{Domains: 1, Base: 16, Batch: 2},
	}
}

// SepResult compares a separable unit (depthwise 3³ + pointwise) with a
// dense 3³ conv at one level.
type SepResult struct {
	Level          int     `json:"level"`
	Shape          string  `json:"shape"`
	SepParams      int     `json:"separable_params"`
	DenseParams    int     `json:"dense_params"`
	SepGFLOP       float64 `json:"separable_gflop"`
	DenseGFLOP     float64 `json:"dense_gflop"`
	SepFwdMS       float64 `json:"separable_fwd_ms"`
	DenseFwdMS     float64 `json:"dense_fwd_ms"`
	SepFwdBwdMS    float64 `json:"separable_fwd_bwd_ms"`
	DenseFwdBwdMS  float64 `json:"dense_fwd_bwd_ms"`
	SpeedupFwdBwd  float64 `json:"speedup_fwd_bwd"`
	SepGB, DenseGB float64
}

// NetResult is a whole-network measurement.
type NetResult struct {
	Mode    string `json:"mode"`
	Setting string `json:"setting"`
	Params  int    `json:"parameters"`
	// StepMS and ForwardMS are wall times from the host's data to the
	// host's results (uploads, downloads and recording included; the
	// forward pass writes its logits into one slice every time, as
	// predict does);
	// StepGPUMS and ForwardGPUMS the GPU time of the pass alone (the
	// median of the repeats), its data already on the device, which is
	// what PyTorch's numbers measure.
	StepMS       float64 `json:"train_step_ms"`
	ForwardMS    float64 `json:"forward_ms"`
	StepGPUMS    float64 `json:"train_step_gpu_ms,omitempty"`
	ForwardGPUMS float64 `json:"forward_gpu_ms,omitempty"`
	PlanGiB      float64 `json:"plan_gib"`
	PeakGiB      float64 `json:"peak_gib,omitempty"`
	// ForwardPeakGiB is the peak memory of the forward pass alone, on the
	// inference graph that predict runs, in a net of its own.
	ForwardPeakGiB float64 `json:"forward_peak_gib,omitempty"`
	TorchStep      float64 `json:"pytorch_step_ms,omitempty"`
	TorchTF32      float64 `json:"pytorch_step_tf32_ms,omitempty"`
	TorchFwdMS     float64 `json:"pytorch_forward_ms,omitempty"`
	TorchPeak      float64 `json:"pytorch_peak_gib,omitempty"`
	// Note says why the setting differs from the one asked for.
	Note string `json:"note,omitempty"`
	// StepProfile and ForwardProfile are the GPU time per kernel family of
	// the step and of the forward pass whose GPU time was the median of the
	// repeats, largest first.
	StepProfile    []KernelTime `json:"step_profile,omitempty"`
	ForwardProfile []KernelTime `json:"forward_profile,omitempty"`
}

// KernelTime is the GPU time one kernel family took within a pass.
type KernelTime struct {
	Kernel     string  `json:"kernel"`
	Op         string  `json:"op"` // the engine operation that recorded the dispatches
	Dispatches int     `json:"dispatches"`
	MS         float64 `json:"ms"`
}

// profile runs f repeats times on a timed GPU engine and sums the GPU
// time by kernel of the run whose total is the median: one run's
// breakdown, steadier than a single run.
func profile(g *ops.GPU, repeats int, f func() error) ([]KernelTime, error) {
	if err := g.SetTimed(true); err != nil {
		return nil, err
	}
	defer g.SetTimed(false)
	var runs [][]KernelTime
	for range max(repeats, 1) {
		if err := f(); err != nil {
			return nil, err
		}
		by := map[[2]string]*KernelTime{}
		for _, t := range g.TakeTimings() {
			key := [2]string{t.Kernel, t.Label}
			k := by[key]
			if k == nil {
				k = &KernelTime{Kernel: t.Kernel, Op: t.Label}
				by[key] = k
			}
			k.Dispatches++
			k.MS += ms(t.Duration)
		}
		out := make([]KernelTime, 0, len(by))
		for _, k := range by {
			out = append(out, *k)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
		runs = append(runs, out)
	}
	sort.SliceStable(runs, func(i, j int) bool { return totalMS(runs[i]) < totalMS(runs[j]) })
	return runs[len(runs)/2], nil
}

// totalMS is the GPU time of a whole profile: the dispatches' times do not
// overlap (see vk.Timing), so their sum is the pass's time on the device.
func totalMS(ks []KernelTime) float64 {
	t := 0.0
	for _, k := range ks {
		t += k.MS
	}
	return t
}

// totalDispatches counts the dispatches of a whole profile: each costs a
// launch, and most a barrier, however little it computes.
func totalDispatches(ks []KernelTime) int {
	n := 0
	for _, k := range ks {
		n += k.Dispatches
	}
	return n
}

// ScaleResult is the forward time of one volume size, or why the size was
// skipped (it does not fit the device).
type ScaleResult struct {
	Size      int     `json:"size"`
	ForwardMS float64 `json:"forward_ms,omitempty"`
	NSPerVox  float64 `json:"ns_per_voxel,omitempty"`
	Skipped   string  `json:"skipped,omitempty"`
}

// Report is everything measured on one engine.
type Report struct {
	Engine string `json:"engine"`
	// Kernels are the kernel choices overridden on the engine
	// (ops.GPU.SetKernel).
	Kernels   []string      `json:"kernels,omitempty"`
	Peaks     ops.Peaks     `json:"peaks"`
	Ops       []OpResult    `json:"ops"`
	Separable []SepResult   `json:"separable_vs_dense"`
	Network   []NetResult   `json:"network"`
	Scaling   []ScaleResult `json:"scaling"`
	Tiles     []TileResult  `json:"gemm_tiles,omitempty"`
	// KernelAB is the universal network under each kernel choice's values
	// (Options.Kernels), the baseline first.
	KernelAB []KernelResult `json:"kernel_choices,omitempty"`
}

// KernelResult is the universal network under one kernel choice, "name=value"
// (Choice "" for the baseline: the engine's choices as set).
type KernelResult struct {
	Choice       string  `json:"choice"`
	Setting      string  `json:"setting"`
	StepMS       float64 `json:"train_step_ms"`
	ForwardMS    float64 `json:"forward_ms"`
	StepGPUMS    float64 `json:"train_step_gpu_ms"`
	ForwardGPUMS float64 `json:"forward_gpu_ms"`
	// Error is why the network could not be measured under the choice,
	// which the other measurements do not wait on.
	Error string `json:"error,omitempty"`
	// Same marks a choice not measured: the network records the
	// dispatches it records under the rules (u2net tune) or the baseline
	// (bench --sections kernels).
	Same bool `json:"same_as_rules,omitempty"`
}

// TileResult is one GEMM-family operation under one tiling ("default" is
// the built-in choice per product). Products splits the forward and
// backward GPU time by GEMM product (fwd, dgrad, wgrad; "other" for the
// operation's dispatches outside the GEMM family), each the median over the
// timed calls.
type TileResult struct {
	Op       string             `json:"op"`
	Shape    string             `json:"shape"`
	Tile     string             `json:"tile"`
	FwdMS    float64            `json:"fwd_ms"`
	BwdMS    float64            `json:"bwd_ms"`
	FwdBwdMS float64            `json:"fwd_bwd_ms"`
	Products map[string]float64 `json:"products_ms"`
}

// Run measures on e; log receives progress lines.
func Run(e ops.Engine, opt Options, log func(string)) (*Report, error) {
	rep := &Report{Engine: e.Name()}
	if opt.Repeats < 1 {
		opt.Repeats = 1
	}
	if g, ok := e.(*ops.GPU); ok {
		rep.Kernels = g.Kernels()
		log("measuring copy bandwidth and FMA throughput")
		// Two buffers of this size, within a memory limit's quarter.
		size := min(256<<20, int(g.Device().Info().MaxStorageBufferRange)/2)
		if limit := g.Device().MemoryLimit(); limit > 0 {
			size = min(size, int(limit/4))
		}
		p, err := g.MeasurePeaks(size, opt.Repeats)
		if err != nil {
			return nil, fmt.Errorf("peaks: %w", err)
		}
		rep.Peaks = p
	}
	levels := opt.Levels
	if levels == nil {
		levels = referenceLevels(e)
	}
	anchors := Anchors()
	for i, s := range levels {
		log(fmt.Sprintf("level %d: %v", i, s))
		res, err := measure(e, levelOps(s), i, opt.Repeats, rep.Peaks, anchors)
		if err != nil {
			return nil, err
		}
		rep.Ops = append(rep.Ops, res...)
		rep.Separable = append(rep.Separable, separable(i, s, res))
	}
	if opt.Anchor {
		log("the §8 operation set at 2×32×64³")
		res, err := measure(e, levelOps(Shape{N: 2, C: 32, S: ref.Dims3{64, 64, 64}}), -1, opt.Repeats, rep.Peaks, anchors)
		if err != nil {
			return nil, err
		}
		rep.Ops = append(rep.Ops, res...)
	}
	if opt.Network.Domains > 0 {
		for _, mode := range []string{u2net.ModeUniversal, u2net.ModeIndependent} {
			set := opt.Network // each mode fitted on its own
			r, err := fittedNetwork(e, mode, &set, opt.Repeats, log)
			if err != nil {
				return nil, fmt.Errorf("network %s: %w", mode, err)
			}
			rep.Network = append(rep.Network, r)
		}
	}
	for _, size := range opt.Scaling {
		log(fmt.Sprintf("scaling: %d³", size))
		set := opt.ScalingNet
		set.Domains, set.Size = 1, size
		set.Pools = poolsFor(size)
		ms, err := forwardOnly(e, set, opt.Repeats)
		if ops.DoesNotFit(err) {
			// The larger sizes do not fit either; each says so.
			log(fmt.Sprintf("scaling %d³ does not fit the device: %v", size, err))
			rep.Scaling = append(rep.Scaling, ScaleResult{Size: size, Skipped: err.Error()})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("scaling %d³: %w", size, err)
		}
		vox := float64(set.Batch * size * size * size)
		rep.Scaling = append(rep.Scaling, ScaleResult{Size: size, ForwardMS: ms, NSPerVox: ms * 1e6 / vox})
	}
	if g, ok := e.(*ops.GPU); ok && opt.Kernels.Domains > 0 {
		res, err := kernelAB(g, opt.Kernels, opt.Repeats, log)
		if err != nil {
			return nil, fmt.Errorf("kernel choices: %w", err)
		}
		rep.KernelAB = res
	}
	if g, ok := e.(*ops.GPU); ok && opt.Tiles.N > 0 {
		if info := g.Device().Info(); info.Type == vk.TypeCPU {
			// Nothing to choose there, and hours of work on a CPU.
			log(fmt.Sprintf("GEMM tilings skipped: device %s runs the GEMM family on direct kernels", info.Name))
			return rep, nil
		}
		log(fmt.Sprintf("GEMM tilings at %v", opt.Tiles))
		res, err := tileSweep(g, opt.Tiles, opt.Repeats, log)
		if err != nil {
			return nil, fmt.Errorf("GEMM tilings: %w", err)
		}
		rep.Tiles = res
	}
	return rep, nil
}

// kernelAB measures the universal network under the engine's kernel
// choices as set, then under each other value of each choice, one at a
// time (a value that fails is recorded with its error), and sets the
// choices back as they were.
func kernelAB(g *ops.GPU, set NetSetting, repeats int, log func(string)) ([]KernelResult, error) {
	asSet := g.Kernels()
	was := map[string]string{}
	for _, k := range asSet {
		name, value, _ := strings.Cut(k, "=")
		was[name] = value
	}
	// Each measurement starts at the size the last one fitted. The first
	// runs cold, so the baseline is measured twice (as in Tune).
	if _, err := withKernels(g, u2net.ModeUniversal, &set, repeats, log, asSet); err != nil {
		return nil, err
	}
	base, err := withKernels(g, u2net.ModeUniversal, &set, repeats, log, asSet)
	if err != nil {
		return nil, err
	}
	base.Choice = "" // the baseline
	out := []KernelResult{base}
	// A value under which the network records the baseline's dispatches
	// changes nothing here: it is listed, not measured (as in Tune).
	baseDispatches, baseErr := dispatchesUnder(g, u2net.ModeUniversal, set, asSet)
	sameAsBase := func(choices []string) bool {
		if baseErr != nil {
			return false
		}
		d, err := dispatchesUnder(g, u2net.ModeUniversal, set, choices)
		return err == nil && d == baseDispatches
	}
	for _, c := range ops.KernelChoices() {
		for _, v := range c.Values {
			if v == cmp.Or(was[c.Name], "auto") {
				continue
			}
			choices := []string{c.Name + "=" + v}
			for _, k := range asSet {
				if !strings.HasPrefix(k, c.Name+"=") {
					choices = append(choices, k)
				}
			}
			if sameAsBase(choices) {
				out = append(out, KernelResult{Choice: choices[0], Setting: base.Setting, Same: true})
				continue
			}
			r, err := withKernels(g, u2net.ModeUniversal, &set, repeats, log, choices)
			r.Choice = choices[0]
			if err != nil {
				// One choice failing (a tile the device cannot hold) leaves
				// the others to measure.
				log(fmt.Sprintf("kernel choices: %s: %v", r.Choice, err))
				r.Error = err.Error()
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// withKernels measures the network of mode with the engine's kernel
// choices set to choices, and sets them back as they were. The result's
// Choice is the choices joined by commas ("" for none: the engine's own
// rules).
func withKernels(g *ops.GPU, mode string, set *NetSetting, repeats int, log func(string), choices []string) (_ KernelResult, err error) {
	was := g.Kernels()
	if err := g.SetKernels(choices); err != nil {
		return KernelResult{}, err
	}
	defer func() {
		if rerr := g.SetKernels(was); err == nil {
			err = rerr
		}
	}()
	name := strings.Join(choices, ",")
	log(fmt.Sprintf("kernel choices: the %s network with %s", mode, cmp.Or(name, "the engine's own rules")))
	r, err := fittedNetwork(g, mode, set, repeats, func(string) {})
	if err == nil { // each result as it comes: a run cut short still says something
		log(fmt.Sprintf("kernel choices: %s: train step %.1f ms (GPU %.1f), forward %.1f (GPU %.1f)",
			cmp.Or(name, "auto"), r.StepMS, r.StepGPUMS, r.ForwardMS, r.ForwardGPUMS))
	}
	return KernelResult{Choice: name, Setting: r.Setting, StepMS: r.StepMS, ForwardMS: r.ForwardMS,
		StepGPUMS: r.StepGPUMS, ForwardGPUMS: r.ForwardGPUMS}, err
}

// dispatchesUnder records the network of mode at set (one training step of
// its first domain and one forward pass) under the kernel choices and
// returns the fingerprint of its dispatches (ops.GPU.RecordedDispatches).
func dispatchesUnder(g *ops.GPU, mode string, set NetSetting, choices []string) (_ uint64, err error) {
	was := g.Kernels()
	if err := g.SetKernels(choices); err != nil {
		return 0, err
	}
	defer func() {
		if rerr := g.SetKernels(was); err == nil {
			err = rerr
		}
	}()
	return g.RecordedDispatches(func() error {
		_, net, err := newNet(g, netConfig(mode, set))
		if err != nil {
			return err
		}
		defer net.Close()
		size := [3]int{set.Size, set.Size, set.Size}
		x, l := randomBatch(set)
		if _, err := net.TrainStep(0, set.Batch, size, x, l); err != nil {
			return err
		}
		_, err = net.Forward(0, set.Batch, size, x)
		return err
	})
}

// tileSweep measures the GEMM-family operations at shape s under the
// built-in tiling and under each candidate the device fits, splitting each
// call's time by GEMM product so that each product's best tiling shows.
// Each operation's tensors are made once for all its tilings, and each
// result is logged as it comes, so a sweep cut short still says something.
func tileSweep(g *ops.GPU, s Shape, repeats int, log func(string)) ([]TileResult, error) {
	defer g.SetGEMMTile(nil)
	tiles := []*ops.GEMMTile{nil} // nil: the built-in choice
	for _, t := range g.GEMMTiles() {
		tiles = append(tiles, &t)
	}
	byName := map[string]op{}
	for _, o := range levelOps(s) {
		byName[o.name] = o
	}
	var out []TileResult
	// The operations furthest from their floors on an H200 first.
	for _, name := range []string{"dense3s2", "convT2", "pointwise", "dense3"} {
		o, ok := byName[name]
		if !ok {
			continue
		}
		res, err := sweepOp(g, o, tiles, repeats, log)
		out = append(out, res...)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sweepOp times one operation under each tiling, on tensors made once.
func sweepOp(g *ops.GPU, o op, tiles []*ops.GEMMTile, repeats int, log func(string)) (_ []TileResult, err error) {
	fwd, bwd, free, err := o.setup(g, 2)
	defer func() {
		free()
		if serr := g.Sync(); err == nil { // releases the tensors
			err = serr
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("%s %v: %w", o.name, o.in, err)
	}
	var out []TileResult
	for _, t := range tiles {
		name := "default"
		if t != nil {
			name = t.String()
		}
		if err := g.SetGEMMTile(t); err != nil {
			return nil, err
		}
		r, err := tileRun(g, o, fwd, bwd, repeats)
		if err != nil {
			return nil, fmt.Errorf("tile %s, %s %v: %w", name, o.name, o.in, err)
		}
		r.Tile = name
		log(fmt.Sprintf("tile %s %s: fwd %.3f ms, bwd %.3f ms %v", name, o.name, r.FwdMS, r.BwdMS, r.Products))
		out = append(out, r)
	}
	return out, nil
}

// tileRun times one operation's forward and backward calls by product.
func tileRun(g *ops.GPU, o op, fwd, bwd func(int) error, repeats int) (TileResult, error) {
	r := TileResult{Op: o.name, Shape: o.in.String(), Products: map[string]float64{}}
	for _, pass := range []struct {
		f  func(int) error
		ms *float64
	}{{fwd, &r.FwdMS}, {bwd, &r.BwdMS}} {
		calls, _, err := g.TimeCalls(g.WarmTime(), repeats, func(i int) error { return pass.f(i % 2) })
		if err != nil {
			return r, err
		}
		total := ops.CallTimes(calls)
		by := map[string][]time.Duration{}
		for _, c := range calls {
			sums := map[string]time.Duration{}
			for _, t := range c {
				p := ops.GEMMProduct(t.Label)
				if p == "" {
					p = "other"
				}
				sums[p] += t.Duration
			}
			for p, d := range sums {
				by[p] = append(by[p], d)
			}
		}
		*pass.ms = ms(median(total))
		for p, ds := range by {
			r.Products[p] += ms(median(ds))
		}
	}
	r.FwdBwdMS = r.FwdMS + r.BwdMS
	return r, nil
}

// At is the setting at size³, with as many poolings as size allows (at
// most five, none below 4³).
func (s NetSetting) At(size int) NetSetting {
	s.Size, s.Pools = size, poolsFor(size)
	return s
}

func poolsFor(size int) [3]int {
	p := 0
	for n := size; p < 5 && n%2 == 0 && n/2 >= 4; n /= 2 {
		p++
	}
	return [3]int{p, p, p}
}

// referenceLevels are the activations of the reference's levels (batch 2,
// base 16, 128³, five poolings), halving the volume until every tensor fits
// the device's largest binding.
func referenceLevels(e ops.Engine) []Shape {
	limit := 1 << 62
	if g, ok := e.(*ops.GPU); ok {
		limit = int(g.Device().Info().MaxStorageBufferRange)
	}
	size := 128
	for 4*2*16*size*size*size > limit && size > 8 {
		size /= 2
	}
	var out []Shape
	for i := 0; size>>i >= 4 && i < 6; i++ {
		s := size >> i
		out = append(out, Shape{N: 2, C: 16 << i, S: ref.Dims3{s, s, s}})
	}
	return out
}

func separable(level int, s Shape, res []OpResult) SepResult {
	by := map[string]OpResult{}
	for _, r := range res {
		by[r.Op] = r
	}
	dw, pw, d := by["depthwise3"], by["pointwise"], by["dense3"]
	r := SepResult{
		Level: level, Shape: s.String(),
		SepParams: s.C*27 + s.C + s.C*s.C + s.C, DenseParams: s.C*s.C*27 + s.C,
		SepGFLOP: dw.GFLOP + pw.GFLOP, DenseGFLOP: d.GFLOP,
		SepFwdMS: dw.FwdMS + pw.FwdMS, DenseFwdMS: d.FwdMS,
		SepFwdBwdMS: dw.FwdBwdMS + pw.FwdBwdMS, DenseFwdBwdMS: d.FwdBwdMS,
		SepGB: dw.GB + pw.GB, DenseGB: d.GB,
	}
	if dw.Skipped != "" || pw.Skipped != "" || d.Skipped != "" {
		r.SepFwdMS, r.DenseFwdMS, r.SepFwdBwdMS, r.DenseFwdBwdMS = 0, 0, 0, 0
	}
	if r.SepFwdBwdMS > 0 && r.DenseFwdBwdMS > 0 {
		r.SpeedupFwdBwd = r.DenseFwdBwdMS / r.SepFwdBwdMS
	}
	return r
}

func netConfig(mode string, set NetSetting) u2net.Config {
	cfg := u2net.DefaultConfig()
	cfg.Mode, cfg.BaseChannels, cfg.PoolsPerAxis = mode, set.Base, set.Pools
	cfg.Upsample = u2net.UpsampleNearest // the reference's, for comparable numbers
	names := []string{"heart", "liver", "prostate", "pancreas", "hippocampus", "spleen", "colon"}
	for d := 0; d < set.Domains; d++ {
		name := fmt.Sprintf("domain%d", d)
		if d < len(names) {
			name = names[d]
		}
		cfg.Domains = append(cfg.Domains, u2net.Domain{Name: name, InChannels: 1, Classes: 2})
	}
	if mode == u2net.ModeIndependent {
		cfg.Domains = cfg.Domains[:1] // one independent network per domain: time one
	}
	return cfg
}

func randomBatch(set NetSetting) ([]float32, []int32) {
	r := rand.New(rand.NewPCG(7, 7))
	vox := set.Size * set.Size * set.Size
	x := make([]float32, set.Batch*vox)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	l := make([]int32, set.Batch*vox)
	for i := range l {
		l[i] = int32(r.IntN(2))
	}
	return x, l
}

// wall returns the median wall time of f, after warm-up calls on a GPU
// engine (pipelines, caches, and clocks risen from idle): for at least the
// engine's WarmTime, at least one. The reference engine has nothing to
// warm, and at its speed a warm-up call would double the time of a quick
// run.
func wall(e ops.Engine, repeats int, f func() error) (float64, error) {
	if g, gpu := e.(*ops.GPU); gpu {
		start := time.Now()
		for first := true; first || time.Since(start) < g.WarmTime(); first = false {
			if err := f(); err != nil {
				return 0, err
			}
		}
	}
	var ts []float64
	for r := 0; r < repeats; r++ {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ts = append(ts, ms(time.Since(start)))
	}
	sort.Float64s(ts)
	return ts[len(ts)/2], nil
}

// fittedNetwork measures the network at set, halving the volume (and the
// poolings, so that the deepest level keeps two voxels) while it does not
// fit the device, as the reference's 128³ does not fit lavapipe's
// 128 MiB bindings; set is left at the size measured, where the next
// measurement of the same network can start. The result's setting names
// the size measured and its note the size asked for.
func fittedNetwork(e ops.Engine, mode string, set *NetSetting, repeats int, log func(string)) (NetResult, error) {
	asked := set.Size
	for {
		log(fmt.Sprintf("network: %s at %d³", mode, set.Size))
		r, err := network(e, mode, *set, repeats)
		if ops.DoesNotFit(err) && set.Size >= 8 {
			log(fmt.Sprintf("network %s at %d³ does not fit the device (%v); measuring at %d³", mode, set.Size, err, set.Size/2))
			set.Size /= 2
			for a := range set.Pools {
				for set.Pools[a] > 0 && set.Size>>set.Pools[a] < 2 {
					set.Pools[a]--
				}
			}
			continue
		}
		if err == nil && set.Size != asked {
			r.Note = fmt.Sprintf("%d³ does not fit the device", asked)
		}
		return r, err
	}
}

func network(e ops.Engine, mode string, set NetSetting, repeats int) (NetResult, error) {
	cfg := netConfig(mode, set)
	if g, ok := e.(*ops.GPU); ok {
		if err := g.Sync(); err != nil {
			return NetResult{}, err
		}
		g.Device().ResetPeakMemory()
	}
	m, net, err := newNet(e, cfg)
	if err != nil {
		return NetResult{}, err
	}
	defer net.Close()
	size := [3]int{set.Size, set.Size, set.Size}
	x, l := randomBatch(set)
	r := NetResult{Mode: mode, Params: m.Counts().Total,
		Setting: fmt.Sprintf("%d domain(s), base %d, pools %v, %d³, batch %d", len(cfg.Domains), set.Base, set.Pools, set.Size, set.Batch)}
	// One step of every other domain first: a run's domains take turns, so
	// the peak memory holds what their graphs hold together.
	for dom := 1; dom < len(cfg.Domains); dom++ {
		if _, err := net.TrainStep(dom, set.Batch, size, x, l); err != nil {
			return r, err
		}
	}
	if r.StepMS, err = wall(e, repeats, func() error { _, err := net.TrainStep(0, set.Batch, size, x, l); return err }); err != nil {
		return r, err
	}
	if b, err := net.PlanBytes(0, set.Batch, size, true); err == nil {
		r.PlanGiB = float64(b) / (1 << 30)
	}
	g, gpu := e.(*ops.GPU)
	if gpu {
		_, peak := g.Device().MemoryInUse()
		r.PeakGiB = float64(peak) / (1 << 30)
		if r.StepProfile, err = profile(g, repeats, func() error { _, err := net.TrainStep(0, set.Batch, size, x, l); return err }); err != nil {
			return r, err
		}
		r.StepGPUMS = totalMS(r.StepProfile)
	}
	// The forward pass runs on an inference graph, as predict's does, in a
	// net of its own once the training one is gone.
	net.Close()
	if gpu {
		if err := g.Sync(); err != nil { // releases the training net's memory
			return r, err
		}
		g.Device().ResetPeakMemory()
	}
	fnet, err := u2net.NewNet(m, e)
	if err != nil {
		return r, err
	}
	defer fnet.Close()
	out, err := fnet.OutputLen(0, set.Batch, size)
	if err != nil {
		return r, err
	}
	logits := make([]float32, out) // one slice for every pass, as predict's
	forward := func() error { return fnet.ForwardInto(0, set.Batch, size, x, logits) }
	if r.ForwardMS, err = wall(e, repeats, forward); err != nil {
		return r, err
	}
	if gpu {
		_, peak := g.Device().MemoryInUse()
		r.ForwardPeakGiB = float64(peak) / (1 << 30)
		if r.ForwardProfile, err = profile(g, repeats, forward); err != nil {
			return r, err
		}
		r.ForwardGPUMS = totalMS(r.ForwardProfile)
	}
	if set.Size == 128 && set.Batch == 2 && set.Base == 16 && set.Pools == [3]int{5, 5, 5} {
		if mode == u2net.ModeUniversal && set.Domains == 5 {
			r.TorchStep, r.TorchTF32, r.TorchFwdMS, r.TorchPeak = 711.02, 149.97, 37.38, 14.80
		} else if mode == u2net.ModeIndependent {
			r.TorchStep, r.TorchTF32, r.TorchFwdMS, r.TorchPeak = 866.46, 94.86, 51.43, 8.11
		}
	}
	return r, nil
}

// newNet builds a model of cfg (seed 1) and its network on e.
func newNet(e ops.Engine, cfg u2net.Config) (*u2net.Model, *u2net.Net, error) {
	m, err := u2net.New(cfg, 1)
	if err != nil {
		return nil, nil, err
	}
	net, err := u2net.NewNet(m, e)
	return m, net, err
}

func forwardOnly(e ops.Engine, set NetSetting, repeats int) (float64, error) {
	_, net, err := newNet(e, netConfig(u2net.ModeUniversal, set))
	if err != nil {
		return 0, err
	}
	defer net.Close()
	size := [3]int{set.Size, set.Size, set.Size}
	x, _ := randomBatch(set)
	out, err := net.OutputLen(0, set.Batch, size)
	if err != nil {
		return 0, err
	}
	logits := make([]float32, out)
	return wall(e, repeats, func() error { return net.ForwardInto(0, set.Batch, size, x, logits) })
}
