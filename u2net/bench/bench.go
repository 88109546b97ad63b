// Package bench measures the network's operations and whole training steps
// on an engine: per-operation forward and backward times with the bytes and
// FLOPs they must move, the fraction of the device's measured peaks they
// reach, separable against dense convolution, time per voxel as volumes
// grow, and the PyTorch + cuDNN numbers measured on an H200 beside ours;
// and on a Vulkan device the whole network under each kernel choice, from
// which Tune picks the device's fastest.
package bench

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

//go:embed h200-pytorch-2.11.json
var anchorJSON []byte

// Anchor is a PyTorch 2.11 + cuDNN measurement on an NVIDIA H200 (fp32).
type Anchor struct {
	Shape      []int      `json:"shape"`
	FwdMS      float64    `json:"fwd_ms"`
	FwdBwdMS   float64    `json:"fwd_bwd_ms"`
	FwdRangeMS [2]float64 `json:"fwd_range_ms"` // the fastest and slowest repeats
	BwdRangeMS [2]float64 `json:"bwd_range_ms"`
	ActivateMB float64    `json:"act_MB"`
}

// Anchors returns the per-operation PyTorch numbers by our op names.
func Anchors() map[string]Anchor {
	var raw struct {
		Ops map[string]Anchor `json:"ops_fp32"`
	}
	if err := json.Unmarshal(anchorJSON, &raw); err != nil {
		return nil
	}
	names := map[string]string{
		"depthwise3x3x3": "depthwise3", "pointwise1x1x1": "pointwise", "dense3x3x3": "dense3",
		"instnorm_affine": "instnorm", "leakyrelu": "leakyrelu", "convT2x2x2_s2": "convT2", "dense3x3x3_s2": "dense3s2",
	}
	out := map[string]Anchor{}
	for k, v := range raw.Ops {
		if n, ok := names[k]; ok {
			out[n] = v
		}
	}
	return out
}

// Shape is an NCDHW activation shape.
type Shape struct {
	N, C int
	S    ref.Dims3
}

func (s Shape) String() string { return fmt.Sprintf("%d×%d×%v", s.N, s.C, s.S) }
func (s Shape) len() int       { return s.N * s.C * s.S.Voxels() }

// OpResult is one operation's measurement.
type OpResult struct {
	Op         string     `json:"op"`
	Shape      string     `json:"shape"`
	Level      int        `json:"level"`
	FwdMS      float64    `json:"fwd_ms"`
	BwdMS      float64    `json:"bwd_ms"`
	FwdBwdMS   float64    `json:"fwd_bwd_ms"`
	FwdRangeMS [2]float64 `json:"fwd_range_ms"` // the fastest and slowest repeats
	BwdRangeMS [2]float64 `json:"bwd_range_ms"`
	// FwdWarmMS and BwdWarmMS are a GPU's time per call in each round of
	// the warm-up (ops.GPU.WarmUp): falling values are its clocks rising.
	FwdWarmMS []float64 `json:"fwd_warm_ms,omitempty"`
	BwdWarmMS []float64 `json:"bwd_warm_ms,omitempty"`
	// FwdDispatches and BwdDispatches are a GPU's median time of each
	// dispatch of a call, in the order recorded.
	FwdDispatches []KernelTime `json:"fwd_dispatches,omitempty"`
	BwdDispatches []KernelTime `json:"bwd_dispatches,omitempty"`
	GFLOP         float64      `json:"gflop"`    // forward + backward
	GB            float64      `json:"gb"`       // least bytes moved, forward + backward
	GBps          float64      `json:"gb_per_s"` // GB / time
	GFLOPs        float64      `json:"gflop_per_s"`
	PeakFrac      float64      `json:"peak_fraction"` // of the larger of the bandwidth and FMA floors
	// Skipped says why the operation was not measured (it does not fit
	// the device); its times are then zero.
	Skipped    string  `json:"skipped,omitempty"`
	TorchFwd   float64 `json:"pytorch_fwd_ms,omitempty"`
	TorchTotal float64 `json:"pytorch_fwd_bwd_ms,omitempty"`
}

// op is a benchmarkable operation: setup allocates its tensors (several
// input sets, rotated so caches do not flatter: setsFor) and returns the
// forward and backward calls.
type op struct {
	name         string
	in           Shape
	flops, bytes float64 // forward + backward
	setup        func(e ops.Engine, sets int) (fwd, bwd func(i int) error, free func(), err error)
}

// tensors allocates random tensors and remembers them for freeing.
type tensors struct {
	e   ops.Engine
	all []*ops.Tensor
	r   *rand.Rand
	err error
}

func (t *tensors) make(n int) *ops.Tensor {
	if t.err != nil {
		return nil
	}
	x, err := t.e.Alloc(n)
	if err != nil {
		t.err = err
		return nil
	}
	t.all = append(t.all, x)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(t.r.NormFloat64())
	}
	t.err = t.e.Write(x, v)
	return x
}

// sets returns k tensors of n elements, all different: the first random,
// each other made from the first and the one before it on the engine
// (x₀ − x/2), which is much faster than on the host when sets are many.
func (t *tensors) sets(k, n int) []*ops.Tensor {
	out := make([]*ops.Tensor, k)
	out[0] = t.make(n)
	for i := 1; i < k && t.err == nil; i++ {
		x, err := t.e.Alloc(n)
		if err != nil {
			t.err = err
			break
		}
		t.all = append(t.all, x)
		if t.err = t.e.Copy(x, out[0]); t.err == nil {
			t.err = t.e.Axpy(-0.5, out[i-1], x)
		}
		out[i] = x
	}
	return out
}

// Rotation: an operation's calls take their inputs from enough sets that
// together they exceed the device's caches (an H200's last level holds
// 50 MB, a CPU's some tens of MB), so that no timed call finds its inputs
// where the calls before it left them.
// Tiny operations, whose time is the dispatch's rather than their bytes',
// rotate over at most maxSets (at 1×2×4³ a CPU device's 64 MB took 65536
// sets, whose allocations alone took minutes).
const (
	rotateBytesGPU = 256 << 20
	rotateBytesCPU = 64 << 20
	maxSets        = 1024
)

// setsFor returns how many input sets op's calls rotate over on e: enough
// for rotateBytes of inputs (counting an input and an output gradient of
// the input's size per set), at most a quarter of a device's memory limit,
// at least 2 and at most maxSets.
func setsFor(e ops.Engine, o op) int {
	budget := rotateBytesGPU
	g, ok := e.(*ops.GPU)
	if !ok || g.Device().Info().Type == vk.TypeCPU {
		budget = rotateBytesCPU
	}
	if ok && g.Device().MemoryLimit() > 0 {
		budget = min(budget, int(g.Device().MemoryLimit()/4))
	}
	per := 2 * 4 * o.in.len()
	return min(maxSets, max(2, (budget+per-1)/per))
}

func (t *tensors) free() {
	for _, x := range t.all {
		t.e.Free(x)
	}
}

// levelOps returns the network's operations at one level: activation shape
// s, and the next level's channels for the strided and transposed convs.
func levelOps(s Shape) []op {
	n, c, v := float64(s.N), float64(s.C), float64(s.S.Voxels())
	act := 4 * n * c * v // bytes of one activation
	half := ref.Dims3{max(1, s.S[0]/2), max(1, s.S[1]/2), max(1, s.S[2]/2)}
	var list []op
	add := func(o op) { list = append(list, o) }

	add(op{name: "depthwise3", in: s, flops: 3 * 2 * 27 * n * c * v, bytes: 5 * act,
		setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
			t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 2))}
			p := ref.DepthwiseParams{N: s.N, C: s.C, Size: s.S, Kernel: 3}
			x, dy := t.sets(k, s.len()), t.sets(k, s.len())
			w, b, y, dx, dw, db := t.make(s.C*27), t.make(s.C), t.make(s.len()), t.make(s.len()), t.make(s.C*27), t.make(s.C)
			return func(i int) error { return e.DepthwiseConv3d(p, x[i], w, b, y) },
				func(i int) error { return e.DepthwiseConv3dBackward(p, x[i], w, dy[i], dx, dw, db) }, t.free, t.err
		}})
	add(op{name: "pointwise", in: s, flops: 3 * 2 * n * c * c * v, bytes: 5 * act,
		setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
			t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 3))}
			p := ref.PointwiseParams{N: s.N, Cin: s.C, Cout: s.C, Size: s.S}
			x, dy := t.sets(k, s.len()), t.sets(k, s.len())
			w, b, y, dx, dw, db := t.make(s.C*s.C), t.make(s.C), t.make(s.len()), t.make(s.len()), t.make(s.C*s.C), t.make(s.C)
			return func(i int) error { return e.PointwiseConv3d(p, x[i], w, b, y) },
				func(i int) error { return e.PointwiseConv3dBackward(p, x[i], w, dy[i], dx, dw, db) }, t.free, t.err
		}})
	dense := func(name string, cout int, stride ref.Dims3, before, after ref.Dims3) op {
		out := ref.Dims3{(s.S[0]+before[0]+after[0]-3)/stride[0] + 1, (s.S[1]+before[1]+after[1]-3)/stride[1] + 1, (s.S[2]+before[2]+after[2]-3)/stride[2] + 1}
		outAct := 4 * n * float64(cout) * float64(out.Voxels())
		return op{name: name, in: s, flops: 3 * 2 * 27 * n * c * float64(cout) * float64(out.Voxels()), bytes: 3*act + 2*outAct,
			setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
				t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 4))}
				p := ref.ConvParams{N: s.N, Cin: s.C, Cout: cout, In: s.S, Kernel: ref.Dims3{3, 3, 3}, Stride: stride, PadBefore: before, PadAfter: after}
				ol := s.N * cout * out.Voxels()
				x, dy := t.sets(k, s.len()), t.sets(k, ol)
				w, b, y, dx, dw, db := t.make(cout*s.C*27), t.make(cout), t.make(ol), t.make(s.len()), t.make(cout*s.C*27), t.make(cout)
				return func(i int) error { return e.Conv3d(p, x[i], w, b, y) },
					func(i int) error { return e.Conv3dBackward(p, x[i], w, dy[i], dx, dw, db) }, t.free, t.err
			}}
	}
	one := ref.Dims3{1, 1, 1}
	add(dense("dense3", s.C, one, one, one))
	add(op{name: "instnorm", in: s, flops: 20 * n * c * v, bytes: 6 * act,
		setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
			t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 5))}
			p := ref.NormParams{N: s.N, C: s.C, Size: s.S, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: ref.DefaultSlope}
			x, dy := t.sets(k, s.len()), t.sets(k, s.len())
			// The forward pass saves each input set's statistics for the
			// backward pass, as training (and PyTorch) does.
			mean, inv := t.sets(k, p.StatsLen()), t.sets(k, p.StatsLen())
			g, b, y, dx, dg, db := t.make(s.C), t.make(s.C), t.make(s.len()), t.make(s.len()), t.make(s.C), t.make(s.C)
			return func(i int) error { return e.InstanceNorm3d(p, x[i], nil, g, b, y, mean[i], inv[i]) },
				func(i int) error {
					return e.InstanceNorm3dBackward(p, x[i], nil, g, b, mean[i], inv[i], dy[i], dx, nil, dg, db)
				}, t.free, t.err
		}})
	add(op{name: "leakyrelu", in: s, flops: 2 * n * c * v, bytes: 5 * act,
		setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
			t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 6))}
			x, dy := t.sets(k, s.len()), t.sets(k, s.len())
			y, dx := t.make(s.len()), t.make(s.len())
			return func(i int) error { return e.LeakyReLU(ref.DefaultSlope, x[i], y) },
				func(i int) error { return e.LeakyReLUBackward(ref.DefaultSlope, x[i], dy[i], dx) }, t.free, t.err
		}})
	if s.C >= 2 {
		cout := s.C / 2
		out := ref.Dims3{2 * s.S[0], 2 * s.S[1], 2 * s.S[2]}
		outAct := 4 * n * float64(cout) * float64(out.Voxels())
		add(op{name: "convT2", in: s, flops: 3 * 2 * n * c * float64(cout) * float64(out.Voxels()), bytes: 2*act + 3*outAct,
			setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
				t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 7))}
				two := ref.Dims3{2, 2, 2}
				p := ref.ConvTransposeParams{N: s.N, Cin: s.C, Cout: cout, In: s.S, Kernel: two, Stride: two}
				ol := s.N * cout * out.Voxels()
				x, dy := t.sets(k, s.len()), t.sets(k, ol)
				w, b, y, dx, dw, db := t.make(s.C*cout*8), t.make(cout), t.make(ol), t.make(s.len()), t.make(s.C*cout*8), t.make(cout)
				return func(i int) error { return e.ConvTranspose3d(p, x[i], w, b, y) },
					func(i int) error { return e.ConvTranspose3dBackward(p, x[i], w, dy[i], dx, dw, db) }, t.free, t.err
			}})
	}
	// Nearest up-sampling by 2 (the dense decoders' and deep supervision's):
	// forward copies each value to 8 outputs, backward sums each 8 back.
	add(op{name: "upsample2", in: s, flops: 7 * n * c * v, bytes: 18 * act,
		setup: func(e ops.Engine, k int) (func(int) error, func(int) error, func(), error) {
			t := &tensors{e: e, r: rand.New(rand.NewPCG(1, 8))}
			p := ref.UpsampleParams{N: s.N, C: s.C, In: s.S, Factor: ref.Dims3{2, 2, 2}}
			x, dy := t.sets(k, p.InputLen()), t.sets(k, p.OutputLen())
			y, dx := t.make(p.OutputLen()), t.make(p.InputLen())
			return func(i int) error { return e.Upsample(p, x[i], y) },
				func(i int) error { return e.UpsampleBackward(p, dy[i], dx) }, t.free, t.err
		}})
	if half != s.S {
		add(dense("dense3s2", 2*s.C, ref.Dims3{2, 2, 2}, ref.Dims3{0, 0, 0}, one))
	}
	return list
}

// timer measures one call on an engine. On the GPU engine the calls are
// recorded back to back into one submission after a warm-up of the GPU's
// own time (ops.GPU.TimeCalls), so the clocks run at their sustained speed,
// and each call's time is the sum of its dispatches' GPU timestamps; the
// median over calls is returned with the range and the warm-up's rounds.
// Other engines are timed by the wall clock, call by call, after one
// warm-up call.
func timer(e ops.Engine, repeats int, f func(i int) error, sets int) (timing, error) {
	if g, isGPU := e.(*ops.GPU); isGPU {
		calls, warm, err := g.TimeCalls(g.WarmTime(), repeats, func(i int) error { return f(i % sets) })
		if err != nil {
			return timing{}, err
		}
		t := timingOf(ops.CallTimes(calls))
		for _, w := range warm {
			t.warm = append(t.warm, ms(w))
		}
		t.dispatches = dispatchMedians(calls)
		return t, nil
	}
	var ts []time.Duration
	for r := 0; r <= repeats; r++ {
		start := time.Now()
		if err := f(r % sets); err != nil {
			return timing{}, err
		}
		if err := e.Sync(); err != nil {
			return timing{}, err
		}
		if r > 0 { // the first call builds pipelines and warms up
			ts = append(ts, time.Since(start))
		}
	}
	return timingOf(ts), nil
}

// timing is a measurement's median over its repeats and their range: a
// wide range says the median is not to be trusted (another process on the
// device, clocks that changed). warm is a GPU's time per call in each
// round of the warm-up, in ms; dispatches the median time of each of a
// call's dispatches, which says where a GPU spends an operation's time.
type timing struct {
	median, min, max time.Duration
	warm             []float64
	dispatches       []KernelTime
}

// dispatchMedians is the median over calls of each dispatch's time (every
// call records the same dispatches in the same order), in call order.
func dispatchMedians(calls [][]vk.Timing) []KernelTime {
	if len(calls) == 0 {
		return nil
	}
	out := make([]KernelTime, len(calls[0]))
	ts := make([]time.Duration, len(calls))
	for j, d := range calls[0] {
		for i, c := range calls {
			ts[i] = c[j].Duration
		}
		out[j] = KernelTime{Kernel: d.Kernel, Op: d.Label, Dispatches: 1, MS: ms(median(ts))}
	}
	return out
}

func timingOf(ts []time.Duration) timing {
	m := median(ts) // sorts ts
	return timing{median: m, min: ts[0], max: ts[len(ts)-1]}
}

// Spread is the widest range of the two passes' repeats, relative to
// their medians.
func (r OpResult) Spread() float64 {
	spread := func(rg [2]float64, med float64) float64 {
		if med <= 0 {
			return 0
		}
		return (rg[1] - rg[0]) / med
	}
	return max(spread(r.FwdRangeMS, r.FwdMS), spread(r.BwdRangeMS, r.BwdMS))
}

func median(ts []time.Duration) time.Duration {
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts[len(ts)/2]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// measure runs every op and fills the derived numbers. An op whose
// tensors or kernels do not fit the device is reported as skipped, and the
// others are still measured.
func measure(e ops.Engine, list []op, level int, repeats int, peaks ops.Peaks, anchors map[string]Anchor) ([]OpResult, error) {
	var out []OpResult
	for _, o := range list {
		r, err := measureOp(e, o, level, repeats, peaks, anchors)
		if ops.DoesNotFit(err) {
			r = OpResult{Op: o.name, Shape: o.in.String(), Level: level, Skipped: fmt.Sprintf("does not fit the device: %v", err)}
		} else if err != nil {
			return nil, fmt.Errorf("%s %v: %w", o.name, o.in, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// measureOp times one op forward and backward, on tensors it frees (and
// synchronises, so that the engine releases them before the next op).
func measureOp(e ops.Engine, o op, level int, repeats int, peaks ops.Peaks, anchors map[string]Anchor) (_ OpResult, err error) {
	sets := setsFor(e, o)
	fwd, bwd, free, err := o.setup(e, sets)
	defer func() {
		free()
		if serr := e.Sync(); err == nil {
			err = serr
		}
	}()
	if err != nil {
		return OpResult{}, err
	}
	tf, err := timer(e, repeats, fwd, sets)
	if err != nil {
		return OpResult{}, err
	}
	tb, err := timer(e, repeats, bwd, sets)
	if err != nil {
		return OpResult{}, err
	}
	r := OpResult{Op: o.name, Shape: o.in.String(), Level: level,
		FwdMS: ms(tf.median), BwdMS: ms(tb.median), FwdBwdMS: ms(tf.median + tb.median),
		FwdRangeMS: [2]float64{ms(tf.min), ms(tf.max)}, BwdRangeMS: [2]float64{ms(tb.min), ms(tb.max)},
		FwdWarmMS: tf.warm, BwdWarmMS: tb.warm, FwdDispatches: tf.dispatches, BwdDispatches: tb.dispatches,
		GFLOP: o.flops / 1e9, GB: o.bytes / 1e9}
	secs := (tf.median + tb.median).Seconds()
	r.GBps, r.GFLOPs = r.GB/secs, r.GFLOP/secs
	if peaks.CopyGBps > 0 {
		floor := max(r.GB/peaks.CopyGBps, r.GFLOP/peaks.GFLOPs)
		r.PeakFrac = floor / secs
	}
	if a, ok := anchors[o.name]; ok && len(a.Shape) == 5 && a.Shape[0] == o.in.N && a.Shape[1] == o.in.C &&
		a.Shape[2] == o.in.S[0] && a.Shape[3] == o.in.S[1] && a.Shape[4] == o.in.S[2] {
		r.TorchFwd, r.TorchTotal = a.FwdMS, a.FwdBwdMS
	}
	return r, nil
}
