package ops

import (
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"slices"

	"github.com/u2net-vk/u2net/shaders"
	"github.com/u2net-vk/u2net/vk"
)

// gpuTensor is the GPU engine's part of a Tensor.
type gpuTensor struct {
	buf *vk.Buffer
}

// GPU runs the operations as Vulkan compute kernels. Methods record into the
// engine's current batch; Sync, Read and ReadLabels submit it and wait.
type GPU struct {
	dev     *vk.Device
	ownsDev bool
	batch   *vk.Batch
	timed   bool
	// gemmTile, when set, overrides the GEMM tiling (SetGEMMTile);
	// gemmRule, when not "", varies the built-in tiling (the kernel choice
	// gemm-tile).
	gemmTile *GEMMTile
	gemmRule string
	// class, when not ClassOfDevice, overrides the device class that picks
	// the sizes tuned for CPU devices (cpuTuned): tests run both on one
	// device.
	class DeviceClass
	// pwDWMaxBlocks, when set, bounds the blocks of pointwiseDW in place of
	// its rule: tests take both weight-gradient paths, benchmarks compare
	// them.
	pwDWMaxBlocks *int
	// dwTX, when set, overrides depthwiseTX (tests, benchmarks).
	dwTX *int
	// dwTileOver and dwGradTileOver, when set, override the tiles of
	// depthwise.comp (depthwiseTile) and depthwise_dw.comp
	// (weightGradTile): benchmarks sweep tilings on a device, tests check
	// them.
	dwTileOver, dwGradTileOver *dwTile
	// dwTileTarget, dwGradTileTarget and dwStreamTarget, when set, are the
	// tiles depthwise.comp, depthwise_dw.comp and depthwise_stream.comp fit
	// to each volume in place of their own (the kernel choices
	// depthwise-tile, depthwise-grad-tile, depthwise-forward).
	dwTileTarget, dwGradTileTarget, dwStreamTarget *dwTile
	// dwStreamOn, when set to true, runs the depthwise forward pass on
	// depthwise_stream.comp (streamDepthwise): tests check it, benchmarks
	// compare it with depthwise.comp's tiles.
	dwStreamOn *bool
	// kernelSet holds the kernel choices SetKernel overrides.
	kernelSet map[string]string
	// tapsPairs, when set, has conv_taps' GPU variant take two voxels per
	// invocation where rows allow (convTaps): tests check it, benchmarks
	// compare it with one.
	tapsPairs bool
	// dispatchLog, while RecordedDispatches runs, takes a line per
	// dispatch recorded.
	dispatchLog hash.Hash64
	// directOn, when set, overrides whether the GEMM family and the
	// depthwise convolution take their direct kernels (directGEMM,
	// directDepthwise): tests take both paths, benchmarks compare.
	directOn *bool
	// dwFusedOn, when set to false, keeps the depthwise convolution's
	// data gradient out of its weight gradient's pass (fusedBackward):
	// tests compare the two paths, benchmarks time them.
	dwFusedOn *bool
	// dwStatsOn, when set to false, makes DepthwiseConv3dStats read its
	// output again for the statistics: tests and benchmarks compare.
	dwStatsOn *bool
	// fusedNormOn, when set, overrides whether an instance norm runs as
	// norm_fused (fusedNorm): benchmarks compare the two on a device.
	fusedNormOn *bool
	timings     []vk.Timing

	scratch map[string]*vk.Buffer
	// retired buffers may still be read by recorded work: they are released
	// after the next Sync.
	retired []*vk.Buffer
	dummy   *vk.Buffer // bound in place of an absent optional input
	// sink holds slots bound in place of unwanted outputs; rotating through
	// them keeps unrelated dispatches from sharing one written range (which
	// would cost a barrier each).
	sink     []*vk.Buffer
	sinkNext int

	capturing  bool
	pinScratch bool         // recordings exist: grown scratch buffers are kept
	pinned     []*vk.Buffer // released at Close

	// kernels finds a built kernel without formatting a key or copying its
	// SPIR-V: a training step looks one up for each of its dispatches.
	kernels map[kernelKey]*vk.Kernel
}

// kernelKey identifies a kernel: family, bindings, push size and up to
// maxKernelSpec specialization constants (a comparable value, no
// allocation per lookup).
type kernelKey struct {
	name     string
	bindings [maxKernelBindings]vk.Access
	nb, ns   uint8
	push     int
	spec     [maxKernelSpec]uint32
}

const (
	maxKernelBindings = 10
	maxKernelSpec     = 16
)

// sinkSlots is the number of unwanted-output slots.
const sinkSlots = 32

// OpenGPU opens the Vulkan device chosen by selector (see vk.Choose) and
// returns an engine that owns it.
func OpenGPU(selector string) (*GPU, error) { return OpenGPUWith(vk.Options{Selector: selector}) }

// OpenGPUWith is OpenGPU with the device's options.
func OpenGPUWith(opts vk.Options) (*GPU, error) {
	d, err := vk.Open(opts)
	if err != nil {
		return nil, err
	}
	g, err := NewGPU(d)
	if err != nil {
		d.Close()
		return nil, err
	}
	g.ownsDev = true
	return g, nil
}

// NewGPU returns an engine on an opened device; Close leaves the device open.
func NewGPU(d *vk.Device) (*GPU, error) {
	g := &GPU{dev: d, scratch: map[string]*vk.Buffer{}, kernels: map[kernelKey]*vk.Kernel{}}
	var err error
	if g.dummy, err = d.Alloc(16); err != nil {
		return nil, err
	}
	slot := max(256, d.Info().StorageAlignment)
	whole, err := d.Alloc(slot * sinkSlots)
	if err != nil {
		return nil, err
	}
	g.scratch["sink"] = whole
	for i := uint64(0); i < sinkSlots; i++ {
		v, err := whole.View(i*slot, 16)
		if err != nil {
			return nil, err
		}
		g.sink = append(g.sink, v)
	}
	g.batch = d.NewBatch()
	return g, nil
}

// Device returns the engine's Vulkan device.
func (g *GPU) Device() *vk.Device { return g.dev }

// Name implements Engine.
func (g *GPU) Name() string {
	info := g.dev.Info()
	return fmt.Sprintf("gpu %d: %s (%s)", info.Index, info.Name, info.Type)
}

// SetTimed makes the batches recorded from now on write GPU timestamps
// around each dispatch; TakeTimings returns them.
func (g *GPU) SetTimed(on bool) error {
	if err := g.Sync(); err != nil {
		return err
	}
	g.timed = on
	g.timings = nil
	g.batch.Release()
	g.batch = g.newBatch()
	return nil
}

// Timed reports whether the engine records GPU timestamps (SetTimed).
func (g *GPU) Timed() bool { return g.timed }

// TakeTimings returns the per-dispatch GPU times recorded by a timed engine
// since the last call, and forgets them.
func (g *GPU) TakeTimings() []vk.Timing {
	t := g.timings
	g.timings = nil
	return t
}

func (g *GPU) newBatch() *vk.Batch {
	if g.timed {
		return g.dev.NewTimedBatch()
	}
	return g.dev.NewBatch()
}

// Alloc implements Engine.
func (g *GPU) Alloc(n int) (*Tensor, error) { return g.alloc(n, Float32) }

// AllocLabels implements Engine.
func (g *GPU) AllocLabels(n int) (*Tensor, error) { return g.alloc(n, Int32) }

func (g *GPU) alloc(n int, dt DType) (*Tensor, error) {
	if err := checkAlloc(n); err != nil {
		return nil, err
	}
	buf, err := g.dev.Alloc(4 * uint64(n))
	if err != nil {
		return nil, fmt.Errorf("ops.Alloc of %d %s elements: %w", n, dt, err)
	}
	return &Tensor{n: n, dtype: dt, owner: g, gpu: gpuTensor{buf: buf}}, nil
}

// AllocPacked implements Engine: the parts are views of the whole at
// multiples of the device's storage- and texel-buffer alignments.
func (g *GPU) AllocPacked(lens []int) (*Tensor, []*Tensor, error) {
	info := g.dev.Info()
	align := max(1, int(max(info.StorageAlignment, info.TexelAlignment)+3)/4)
	offsets, total, err := packLayout(lens, align)
	if err != nil {
		return nil, nil, err
	}
	whole, err := g.alloc(total, Float32)
	if err != nil {
		return nil, nil, err
	}
	if err := g.Fill(whole, 0); err != nil {
		g.Free(whole)
		return nil, nil, err
	}
	parts := make([]*Tensor, len(lens))
	for i, off := range offsets {
		v, err := whole.gpu.buf.View(4*uint64(off), 4*uint64(lens[i]))
		if err != nil {
			g.Free(whole)
			return nil, nil, fmt.Errorf("ops.AllocPacked: part %d: %w", i, err)
		}
		parts[i] = &Tensor{n: lens[i], owner: g, gpu: gpuTensor{buf: v}}
	}
	return whole, parts, nil
}

// Free implements Engine. Work already recorded may still use the tensor,
// so its memory returns to the pool after the next Sync.
func (g *GPU) Free(t *Tensor) {
	if t == nil || t.accumulate || t.gpu.buf == nil {
		return
	}
	g.retired = append(g.retired, t.gpu.buf)
	t.gpu.buf, t.n = nil, 0
}

// Write implements Engine.
func (g *GPU) Write(t *Tensor, src []float32) error {
	if err := checkArgs(g, "Write", nil, in("tensor", t, len(src))); err != nil {
		return err
	}
	g.batch.Upload(t.gpu.buf, src)
	return g.recorded("Write")
}

// WriteLabels implements Engine.
func (g *GPU) WriteLabels(t *Tensor, src []int32) error {
	if err := checkArgs(g, "WriteLabels", nil, labels("tensor", t, len(src))); err != nil {
		return err
	}
	g.batch.Upload(t.gpu.buf, src)
	return g.recorded("WriteLabels")
}

// Read implements Engine.
func (g *GPU) Read(t *Tensor, dst []float32) error {
	if err := checkArgs(g, "Read", nil, in("tensor", t, len(dst))); err != nil {
		return err
	}
	g.batch.Download(dst, t.gpu.buf)
	return g.Sync()
}

// ReadLabels implements Engine.
func (g *GPU) ReadLabels(t *Tensor, dst []int32) error {
	if err := checkArgs(g, "ReadLabels", nil, labels("tensor", t, len(dst))); err != nil {
		return err
	}
	g.batch.Download(dst, t.gpu.buf)
	return g.Sync()
}

// Sync implements Engine: it submits the recorded work, waits, and starts a
// new batch.
func (g *GPU) Sync() error {
	if g.capturing {
		return errSyncInCapture
	}
	err := g.batch.Run()
	if err == nil && g.timed {
		g.timings = append(g.timings, g.batch.Timings()...)
	}
	g.batch.Release()
	g.batch = g.newBatch()
	for _, b := range g.retired {
		b.Release()
	}
	g.retired = g.retired[:0]
	if err != nil {
		return fmt.Errorf("ops: running recorded GPU work: %w", err)
	}
	return nil
}

// Close implements Engine.
func (g *GPU) Close() error {
	err := g.Sync()
	g.batch.Release()
	for _, b := range g.scratch {
		b.Release()
	}
	for _, b := range g.pinned {
		b.Release()
	}
	g.dummy.Release()
	if g.ownsDev {
		err = errors.Join(err, g.dev.Close())
	}
	return err
}

// recorded returns the batch's recording error, naming the operation.
func (g *GPU) recorded(op string) error {
	if err := g.batch.Err(); err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return nil
}

// kernel returns the pipeline of the kernel family name (a shaders/*.comp
// file) for the given bindings, push-constant size and specialization
// constants.
func (g *GPU) kernel(name string, bindings []vk.Access, push int, spec ...uint32) (*vk.Kernel, error) {
	key, cacheable := kernelKey{name: name, nb: uint8(len(bindings)), ns: uint8(len(spec)), push: push},
		len(bindings) <= maxKernelBindings && len(spec) <= maxKernelSpec
	if cacheable {
		copy(key.bindings[:], bindings)
		copy(key.spec[:], spec)
		if k, ok := g.kernels[key]; ok {
			return k, nil
		}
	}
	// A family's texel variant reads the bindings marked as texels.
	if slices.ContainsFunc(bindings, vk.Access.Texel) {
		name += ".texel"
	}
	code, err := shaders.SPIRV(name)
	if err != nil {
		return nil, err
	}
	k, err := g.dev.Kernel(vk.KernelSpec{Name: name, SPIRV: code, Bindings: bindings, PushSize: push, Spec: spec})
	if err == nil && cacheable {
		g.kernels[key] = k
	}
	return k, err
}

// RecordedDispatches runs fn and returns a fingerprint of the dispatches
// the engine recorded meanwhile, in order: each one's kernel (family,
// bindings and specialization), workgroups and push constants. Work that
// records the same dispatches under two sets of kernel choices has the same
// fingerprint both times: the choices that differ change nothing of it
// (u2net tune does not measure such a value). Fills and copies are not
// counted.
func (g *GPU) RecordedDispatches(fn func() error) (uint64, error) {
	if g.dispatchLog != nil {
		return 0, errors.New("ops.RecordedDispatches: called inside itself")
	}
	g.dispatchLog = fnv.New64a()
	defer func() { g.dispatchLog = nil }()
	if err := fn(); err != nil {
		return 0, err
	}
	return g.dispatchLog.Sum64(), nil
}

// DeviceClass names the class of device whose kernels and sizes an engine
// chooses.
type DeviceClass int

const (
	ClassOfDevice DeviceClass = iota // the device's own class
	ClassCPU                         // as for a CPU device such as lavapipe
	ClassGPU                         // as for a GPU
)

// SetDeviceClass makes the engine choose its kernels and sizes as for the
// given class of device from now on, whatever its own: tests take a GPU's
// code paths on lavapipe (and a CPU device's on a GPU) with it. The
// classes sum in different orders, so their results differ in rounding.
// It is the kernel choice device-class (SetKernel).
func (g *GPU) SetDeviceClass(c DeviceClass) {
	value := map[DeviceClass]string{ClassOfDevice: "auto", ClassCPU: "cpu", ClassGPU: "gpu"}[c]
	if err := g.SetKernel("device-class=" + value); err != nil {
		panic(err) // the values are SetKernel's own
	}
}

// cpuTuned reports whether the kernels take the sizes tuned for CPU
// devices (lavapipe), which run a few workgroups at a time, one per core,
// each a SIMD vector at a time between barriers: fewer and larger split
// reductions, smaller trees. Other devices take the GPU sizes.
func (g *GPU) cpuTuned() bool {
	switch g.class {
	case ClassCPU:
		return true
	case ClassGPU:
		return false
	}
	return g.dev.Info().Type == vk.TypeCPU
}

// evenBlock is the size of the blocks that cut n channels into as few
// blocks of at most most as can hold them, all of one size but the last:
// 12 into two of 6 rather than 8 and 4, since a kernel's lanes past the
// last channel still do the work.
func evenBlock(n, most int) int { return ceilDiv(n, ceilDiv(n, most)) }

// cpuCores is the number of cores the split reductions of CPU devices plan
// for. It is a constant rather than this host's core count: a split sets
// the order of a sum and so its rounding, and a fixed split makes a CPU
// device give the same bits on every host, whatever its cores. Eight is a
// desktop's; planning for it costs a 2-core host about 4% of a training
// step against planning for 2 (demo setting, lavapipe), and leaves some
// cores of a large host idle during the weight gradients.
const cpuCores = 8

// input is the access of a kernel input that a family reading it through
// shaders/inputs.glsl takes: on CPU devices a texel buffer of four floats
// (vec4 reads) or one, which lavapipe fetches with vector gathers where it
// loads a storage buffer a SIMD lane at a time (depthwise_direct at 1×8×32³:
// 1.05-1.13 → 0.77-0.79 ms); elsewhere a storage buffer.
func (g *GPU) input(vec4 bool) vk.Access {
	switch {
	case !g.cpuTuned():
		return vk.Read
	case vec4:
		return vk.ReadTexel4
	}
	return vk.ReadTexel
}

// tuned returns the size for this device's class: gpu, or cpu when
// cpuTuned.
func tuned[T any](g *GPU, gpu, cpu T) T {
	if g.cpuTuned() {
		return cpu
	}
	return gpu
}

// dispatch records one kernel and returns the recording error, if any.
func (g *GPU) dispatch(op string, k *vk.Kernel, groups [3]uint32, push any, bufs ...*vk.Buffer) error {
	return g.dispatchAs(op, op, k, groups, push, bufs...)
}

// dispatchAs is dispatch with the timing label given apart from op.
func (g *GPU) dispatchAs(op, label string, k *vk.Kernel, groups [3]uint32, push any, bufs ...*vk.Buffer) error {
	if g.timed {
		g.batch.SetLabel(label)
	}
	if g.dispatchLog != nil {
		// A kernel is made once per family, bindings and specialization
		// (the engine keeps them), so its address names all three.
		fmt.Fprintf(g.dispatchLog, "%p %v %+v\n", k, groups, push)
	}
	g.batch.Dispatch(k, groups, push, bufs...)
	return g.recorded(op)
}

// buf returns t's buffer, or the dummy buffer for an absent input.
func (g *GPU) buf(t *Tensor) *vk.Buffer {
	if t == nil {
		return g.dummy
	}
	return t.gpu.buf
}

// out returns t's buffer, or a sink slot for an unwanted output: a binding
// the shader may write must never be the read-only dummy.
func (g *GPU) out(t *Tensor) *vk.Buffer {
	if t == nil {
		return g.discard()
	}
	return t.gpu.buf
}

// discard returns the next sink slot.
func (g *GPU) discard() *vk.Buffer {
	b := g.sink[g.sinkNext]
	g.sinkNext = (g.sinkNext + 1) % len(g.sink)
	return b
}

// scratchBuf returns the engine's scratch buffer called key with room for n
// float32 values. Scratch buffers persist; the batch's barriers order the
// operations that share one. A buffer too small is retired and replaced.
func (g *GPU) scratchBuf(key string, n int) (*vk.Buffer, error) {
	if n < 1 {
		n = 1
	}
	need := 4 * uint64(n)
	if b, ok := g.scratch[key]; ok && b.Size() >= need {
		return b, nil
	} else if ok && g.pinScratch {
		g.pinned = append(g.pinned, b)
	} else if ok {
		g.retired = append(g.retired, b)
	}
	b, err := g.dev.Alloc(need)
	if err != nil {
		delete(g.scratch, key)
		return nil, fmt.Errorf("ops: scratch %q of %d floats: %w", key, n, err)
	}
	g.scratch[key] = b
	return b, nil
}

// Fill implements Engine.
func (g *GPU) Fill(t *Tensor, v float32) error {
	if err := checkArgs(g, "Fill", nil, in("tensor", t, -1)); err != nil {
		return err
	}
	g.batch.Fill(t.gpu.buf, math.Float32bits(v))
	return g.recorded("Fill")
}

// Copy implements Engine.
func (g *GPU) Copy(dst, src *Tensor) error {
	if err := checkArgs(g, "Copy", nil, in("src", src, -1), in("dst", dst, src.Len())); err != nil {
		return err
	}
	g.batch.Copy(dst.gpu.buf, src.gpu.buf)
	return g.recorded("Copy")
}
