package vk

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	vkapi "github.com/vulkan-go/vulkan"
)

// Limits of one command buffer and one descriptor pool: a long batch is split
// into several command buffers, each submitted in order.
const (
	commandsPerChunk = 4096
	setsPerPool      = 512
	maxBindings      = 16
	queriesPerPool   = 4096
)

// Pipeline stages and accesses that batches synchronise: compute shaders and
// transfers (copies and fills).
const (
	stagesAll   = C.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.VK_PIPELINE_STAGE_TRANSFER_BIT
	accessWrite = C.VK_ACCESS_SHADER_WRITE_BIT | C.VK_ACCESS_TRANSFER_WRITE_BIT
	accessAll   = C.VK_ACCESS_SHADER_READ_BIT | C.VK_ACCESS_SHADER_WRITE_BIT |
		C.VK_ACCESS_TRANSFER_READ_BIT | C.VK_ACCESS_TRANSFER_WRITE_BIT
)

// access is one command's use of a byte range of a block.
type access struct {
	block  *block
	lo, hi uint64
	write  bool
}

func (a access) overlaps(b access) bool {
	return a.block == b.block && a.lo < b.hi && b.lo < a.hi
}

type download struct {
	staging *Buffer
	dst     []byte
}

// Timing is the GPU time of one dispatch of a timed batch: from the moment
// every earlier command of the batch had completed to the moment this one
// had. Consecutive timings therefore never overlap, and their durations add
// up to the batch's busy time even where independent dispatches run
// concurrently (such overlap is credited to the later dispatch).
type Timing struct {
	Kernel   string
	Label    string        // the batch's label when the dispatch was recorded (SetLabel)
	Start    time.Duration // since the start of the batch's first timed dispatch
	Duration time.Duration
}

// Batch records dispatches, fills, copies, uploads and downloads, then runs
// them with one wait. Between two commands it records a barrier only when the
// later one reads what the earlier wrote (a memory barrier), writes what it
// wrote (a memory barrier) or writes what it read (an execution dependency).
//
// Recording errors are sticky: the first one is returned by Run, and later
// commands are ignored, so a long recording needs no error check per call.
// A recorded batch can be Run many times; each run repeats the uploads with
// the data given at recording time and refreshes the downloads' slices.
type Batch struct {
	dev    *Device
	err    error
	chunks []vkapi.CommandBuffer
	count  int // commands in the last chunk
	ended  bool
	fence  vkapi.Fence

	pools    []C.VkDescriptorPool
	poolLeft int

	// pending are the accesses since the last barrier.
	pending     []access
	pendWrite   bool
	hostReads   bool
	staging     []*Buffer
	downloads   []download
	dispatches  int
	barriers    int
	noBarriers  bool                   // tests only: proves that validation sees hazards
	setScratch  [4][maxBindings]uint64 // buffers, offsets, ranges, texel views
	typeScratch [maxBindings]uint32
	accScratch  []access
	timed       bool
	queryPools  []vkapi.QueryPool
	queryLabels []string
	queryTags   []string // SetLabel's label per timed dispatch
	label       string
	timings     []Timing
}

// NewBatch starts an empty batch.
func (d *Device) NewBatch() *Batch { return &Batch{dev: d} }

// NewTimedBatch starts a batch that records a GPU timestamp before and after
// every dispatch; Timings returns them after Run.
func (d *Device) NewTimedBatch() *Batch {
	b := &Batch{dev: d, timed: true}
	if !d.info.Timestamps {
		b.err = fmt.Errorf("vk: device %s cannot write timestamps on its compute queue", d.info.Name)
	}
	return b
}

// Err returns the first recording error, if any.
func (b *Batch) Err() error { return b.err }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// cmd returns the command buffer to record the next command into, starting a
// new chunk when the current one is full.
func (b *Batch) cmd() (vkapi.CommandBuffer, bool) {
	if b.err != nil {
		return nil, false
	}
	if b.ended {
		b.fail(errors.New("vk: batch recorded into after Run; record a new batch"))
		return nil, false
	}
	if err := b.dev.usable(); err != nil {
		b.fail(err)
		return nil, false
	}
	if len(b.chunks) == 0 || b.count >= commandsPerChunk {
		if len(b.chunks) > 0 {
			if err := check(vkapi.EndCommandBuffer(b.chunks[len(b.chunks)-1]), "ending command buffer"); err != nil {
				b.fail(err)
				return nil, false
			}
		}
		cbs := make([]vkapi.CommandBuffer, 1)
		r := vkapi.AllocateCommandBuffers(b.dev.handle, &vkapi.CommandBufferAllocateInfo{
			SType:              vkapi.StructureTypeCommandBufferAllocateInfo,
			CommandPool:        b.dev.cmdPool,
			Level:              vkapi.CommandBufferLevelPrimary,
			CommandBufferCount: 1,
		}, cbs)
		if err := check(r, "allocating command buffer"); err != nil {
			b.fail(err)
			return nil, false
		}
		b.chunks = append(b.chunks, cbs[0])
		b.count = 0
		r = vkapi.BeginCommandBuffer(cbs[0], &vkapi.CommandBufferBeginInfo{SType: vkapi.StructureTypeCommandBufferBeginInfo})
		if err := check(r, "beginning command buffer"); err != nil {
			b.fail(err)
			return nil, false
		}
	}
	b.count++
	return b.chunks[len(b.chunks)-1], true
}

// sync records the barrier that accs need against the pending accesses, if
// any, and then adds accs to the pending set.
func (b *Batch) sync(cb vkapi.CommandBuffer, accs []access) {
	hazard, memory := false, false
	for _, a := range accs {
		for _, p := range b.pending {
			if !a.overlaps(p) {
				continue
			}
			if p.write {
				hazard, memory = true, true // read or write after write
			} else if a.write {
				hazard = true // write after read: execution order suffices
			}
		}
	}
	if hazard && !b.noBarriers {
		var src, dst C.uint32_t
		if memory {
			src, dst = accessWrite, accessAll
		}
		C.u2_barrier(b.dev.fns, (C.VkCommandBuffer)(unsafe.Pointer(cb)), stagesAll, stagesAll, src, dst)
		b.barriers++
		b.pending = b.pending[:0]
	}
	b.pending = append(b.pending, accs...)
}

func (b *Batch) checkBuffer(buf *Buffer, what string) bool {
	if err := b.bufferError(buf); err != nil {
		b.fail(fmt.Errorf("vk: %s: %w", what, err))
		return false
	}
	return true
}

// bufferError says why buf cannot be used in this batch, or returns nil.
func (b *Batch) bufferError(buf *Buffer) error {
	switch {
	case buf == nil:
		return errors.New("nil buffer")
	case buf.freed:
		return ErrBufferReleased
	case buf.block.alloc.dev != b.dev || buf.block.alloc.hostVis:
		return errors.New("buffer belongs to another device or is a staging buffer")
	}
	return nil
}

// Dispatch records kernel k over groups workgroups with push constants push
// (a fixed-size value or pointer to one, encoded little-endian; nil for none)
// and one buffer per binding.
func (b *Batch) Dispatch(k *Kernel, groups [3]uint32, push any, bufs ...*Buffer) {
	if b.err != nil {
		return
	}
	if k == nil {
		b.fail(errors.New("vk: Dispatch of a nil kernel"))
		return
	}
	name := k.spec.Name
	if len(bufs) != len(k.spec.Bindings) {
		b.fail(fmt.Errorf("vk: kernel %s takes %d buffers, got %d", name, len(k.spec.Bindings), len(bufs)))
		return
	}
	lim := b.dev.info.MaxWorkgroupCount
	for i, g := range groups {
		if g == 0 || g > lim[i] {
			b.fail(fmt.Errorf("vk: kernel %s: workgroup count %v out of range 1..%v on axis %d", name, groups, lim, i))
			return
		}
	}
	var pushBytes []byte
	if push != nil {
		var err error
		if pushBytes, err = binary.Append(nil, binary.LittleEndian, push); err != nil {
			b.fail(fmt.Errorf("vk: kernel %s: encoding push constants: %v", name, err))
			return
		}
	}
	if len(pushBytes) != k.spec.PushSize {
		b.fail(fmt.Errorf("vk: kernel %s takes %d bytes of push constants, got %d", name, k.spec.PushSize, len(pushBytes)))
		return
	}
	accs := b.accScratch[:0]
	for i, buf := range bufs {
		// The description is formatted only on failure: this runs for
		// every binding of every dispatch.
		if err := b.bufferError(buf); err != nil {
			b.fail(fmt.Errorf("vk: kernel %s binding %d: %w", name, i, err))
			return
		}
		a := k.spec.Bindings[i]
		accs = append(accs, access{buf.block, buf.offset, buf.offset + buf.size, a&Write != 0})
		b.setScratch[0][i] = uint64(uintptr(unsafe.Pointer(buf.block.buffer)))
		b.setScratch[1][i] = buf.offset
		b.setScratch[2][i] = buf.size
		b.setScratch[3][i] = 0
		b.typeScratch[i] = uint32(bindingType(a))
		if a.Texel() {
			v, err := buf.texelView(a.texelSize() == 16)
			if err != nil {
				b.fail(fmt.Errorf("vk: kernel %s binding %d: %w", name, i, err))
				return
			}
			b.setScratch[3][i] = uint64(uintptr(unsafe.Pointer(v)))
		}
	}
	b.accScratch = accs
	set, ok := b.descriptorSet(k)
	if !ok {
		return
	}
	cb, ok := b.cmd()
	if !ok {
		return
	}
	n := C.uint32_t(len(bufs))
	cset := set
	if n > 0 {
		C.u2_write_set(b.dev.fns, cset, n, (*C.uint32_t)(&b.typeScratch[0]), (*C.uint64_t)(&b.setScratch[0][0]),
			(*C.uint64_t)(&b.setScratch[1][0]), (*C.uint64_t)(&b.setScratch[2][0]), (*C.uint64_t)(&b.setScratch[3][0]))
	}
	b.sync(cb, accs)
	if b.timed {
		// Bottom of pipe, not top: a top-of-pipe stamp may be written as
		// soon as the command is reached, while earlier work still runs,
		// and would count that work twice.
		b.timestamp(cb, vkapi.PipelineStageBottomOfPipeBit, name)
	}
	var pp unsafe.Pointer
	if len(pushBytes) > 0 {
		pp = unsafe.Pointer(&pushBytes[0])
	}
	C.u2_dispatch(b.dev.fns, (C.VkCommandBuffer)(unsafe.Pointer(cb)), k.obj.pipeline,
		k.obj.layout, cset, pp, C.uint32_t(len(pushBytes)),
		C.uint32_t(groups[0]), C.uint32_t(groups[1]), C.uint32_t(groups[2]))
	if b.timed {
		b.timestamp(cb, vkapi.PipelineStageBottomOfPipeBit, "")
	}
	b.dispatches++
}

// Dispatches returns the number of dispatches recorded.
func (b *Batch) Dispatches() int { return b.dispatches }

func (b *Batch) descriptorSet(k *Kernel) (C.VkDescriptorSet, bool) {
	if b.poolLeft == 0 {
		var pool C.VkDescriptorPool
		r := C.u2_create_pool(b.dev.fns, setsPerPool, setsPerPool*maxBindings, &pool)
		if err := check(vkapi.Result(r), "creating descriptor pool"); err != nil {
			b.fail(err)
			return nil, false
		}
		b.pools = append(b.pools, pool)
		b.poolLeft = setsPerPool
	}
	var set C.VkDescriptorSet
	r := C.u2_alloc_set(b.dev.fns, b.pools[len(b.pools)-1], k.obj.set_layout, &set)
	if err := check(vkapi.Result(r), "allocating descriptor set"); err != nil {
		b.fail(err)
		return nil, false
	}
	b.poolLeft--
	return set, true
}

func (b *Batch) timestamp(cb vkapi.CommandBuffer, stage vkapi.PipelineStageFlagBits, label string) {
	n := len(b.queryLabels)
	if n%queriesPerPool == 0 {
		var pool vkapi.QueryPool
		r := vkapi.CreateQueryPool(b.dev.handle, &vkapi.QueryPoolCreateInfo{
			SType:      vkapi.StructureTypeQueryPoolCreateInfo,
			QueryType:  vkapi.QueryTypeTimestamp,
			QueryCount: queriesPerPool,
		}, nil, &pool)
		if err := check(r, "creating timestamp query pool"); err != nil {
			b.fail(err)
			return
		}
		b.queryPools = append(b.queryPools, pool)
		vkapi.CmdResetQueryPool(cb, pool, 0, queriesPerPool)
	}
	vkapi.CmdWriteTimestamp(cb, stage, b.queryPools[n/queriesPerPool], uint32(n%queriesPerPool))
	b.queryLabels = append(b.queryLabels, label)
	b.queryTags = append(b.queryTags, b.label)
}

// SetLabel names the dispatches recorded from now on in their Timings
// (say, the operation they belong to).
func (b *Batch) SetLabel(label string) { b.label = label }

// Fill sets every 32-bit word of dst to value (dst's size must be a multiple
// of 4).
func (b *Batch) Fill(dst *Buffer, value uint32) {
	if b.err != nil || !b.checkBuffer(dst, "Fill") {
		return
	}
	if dst.size%4 != 0 {
		b.fail(fmt.Errorf("vk: Fill of a %d-byte buffer: size must be a multiple of 4", dst.size))
		return
	}
	cb, ok := b.cmd()
	if !ok {
		return
	}
	b.sync(cb, []access{{dst.block, dst.offset, dst.offset + dst.size, true}})
	vkapi.CmdFillBuffer(cb, dst.block.buffer, vkapi.DeviceSize(dst.offset), vkapi.DeviceSize(dst.size), value)
}

// Copy copies src into dst; the two must have the same size.
func (b *Batch) Copy(dst, src *Buffer) {
	if b.err != nil || !b.checkBuffer(dst, "Copy destination") || !b.checkBuffer(src, "Copy source") {
		return
	}
	if dst.size != src.size {
		b.fail(fmt.Errorf("vk: Copy from %d bytes into %d bytes", src.size, dst.size))
		return
	}
	cb, ok := b.cmd()
	if !ok {
		return
	}
	b.sync(cb, []access{
		{src.block, src.offset, src.offset + src.size, false},
		{dst.block, dst.offset, dst.offset + dst.size, true},
	})
	vkapi.CmdCopyBuffer(cb, src.block.buffer, dst.block.buffer, 1, []vkapi.BufferCopy{{
		SrcOffset: vkapi.DeviceSize(src.offset), DstOffset: vkapi.DeviceSize(dst.offset), Size: vkapi.DeviceSize(src.size),
	}})
}

// Upload copies host data (a []float32, []int32, []uint32 or []byte) into the
// start of dst. The data is copied at once into staging memory, so the caller
// may reuse its slice immediately.
func (b *Batch) Upload(dst *Buffer, data any) {
	src, err := hostBytes(data)
	if err != nil {
		b.fail(fmt.Errorf("vk: Upload: %w", err))
		return
	}
	if slot := b.UploadSlot(dst, uint64(len(src))); slot != nil {
		slot.write(src)
	}
}

// Slot is the staging memory of a recorded upload: what is written into it
// before a Run is what that run copies to the device. It lets a recorded
// batch run again on new input.
type Slot struct {
	parts []*Buffer
	size  uint64
}

// Write sets the data the next runs upload (a []float32, []int32, []uint32
// or []byte of the slot's size).
func (s *Slot) Write(data any) error {
	src, err := hostBytes(data)
	if err != nil {
		return fmt.Errorf("vk: Slot.Write: %w", err)
	}
	if uint64(len(src)) != s.size {
		return fmt.Errorf("vk: Slot.Write of %d bytes into a %d-byte slot", len(src), s.size)
	}
	s.write(src)
	return nil
}

func (s *Slot) write(src []byte) {
	for i, st := range s.parts {
		hostCopy(st.host(), src[i*stagingBlockSize:])
	}
}

// UploadSlot records a copy of n bytes from staging memory into the start
// of dst and returns the staging slot to fill before each Run (nil after a
// recording error).
func (b *Batch) UploadSlot(dst *Buffer, n uint64) *Slot {
	if b.err != nil || !b.checkBuffer(dst, "Upload") {
		return nil
	}
	if n > dst.size {
		b.fail(fmt.Errorf("vk: Upload of %d bytes into a %d-byte buffer", n, dst.size))
		return nil
	}
	slot := &Slot{size: n}
	for off := uint64(0); off < n; off += stagingBlockSize {
		part := min(stagingBlockSize, n-off)
		st, err := b.dev.stagingMem.alloc(part)
		if err != nil {
			b.fail(fmt.Errorf("vk: Upload: staging: %w", err))
			return nil
		}
		b.staging = append(b.staging, st)
		slot.parts = append(slot.parts, st)
		cb, ok := b.cmd()
		if !ok {
			return nil
		}
		at := dst.offset + off
		b.sync(cb, []access{{dst.block, at, at + part, true}})
		vkapi.CmdCopyBuffer(cb, st.block.buffer, dst.block.buffer, 1, []vkapi.BufferCopy{{
			SrcOffset: vkapi.DeviceSize(st.offset), DstOffset: vkapi.DeviceSize(at), Size: vkapi.DeviceSize(part),
		}})
	}
	return slot
}

// Download copies the start of src into data (a []float32, []int32, []uint32
// or []byte) when the batch runs; data is written during Run.
func (b *Batch) Download(data any, src *Buffer) {
	dst, err := hostBytes(data)
	if err != nil {
		b.fail(fmt.Errorf("vk: Download: %w", err))
		return
	}
	b.download(dst, src)
}

// ReadSlot is the destination of a recorded download: a batch run again
// copies into whatever slice was last set.
type ReadSlot struct {
	b     *Batch
	first int // index of the slot's first part in b.downloads
	parts int
	size  int
}

// SetDest sets the slice (a []float32, []int32, []uint32 or []byte of the
// slot's size) that the next runs fill.
func (s *ReadSlot) SetDest(data any) error {
	dst, err := hostBytes(data)
	if err != nil {
		return fmt.Errorf("vk: ReadSlot.SetDest: %w", err)
	}
	if len(dst) != s.size {
		return fmt.Errorf("vk: ReadSlot.SetDest of %d bytes for a %d-byte slot", len(dst), s.size)
	}
	for i := range s.parts {
		off := i * stagingBlockSize
		s.b.downloads[s.first+i].dst = dst[off:min(off+stagingBlockSize, len(dst))]
	}
	return nil
}

// DownloadSlot records a download of the first n bytes of src whose
// destination is set, and may be changed between runs, with SetDest (nil
// after a recording error).
func (b *Batch) DownloadSlot(src *Buffer, n int) *ReadSlot {
	first := len(b.downloads)
	if !b.download(make([]byte, n), src) {
		return nil
	}
	return &ReadSlot{b: b, first: first, parts: len(b.downloads) - first, size: n}
}

// download records the copy of src's first len(dst) bytes into dst and
// reports whether it was recorded.
func (b *Batch) download(dst []byte, src *Buffer) bool {
	if b.err != nil || !b.checkBuffer(src, "Download") {
		return false
	}
	if uint64(len(dst)) > src.size {
		b.fail(fmt.Errorf("vk: Download of %d bytes from a %d-byte buffer", len(dst), src.size))
		return false
	}
	for off := 0; off < len(dst); off += stagingBlockSize {
		part := dst[off:min(off+stagingBlockSize, len(dst))]
		st, err := b.dev.stagingMem.alloc(uint64(len(part)))
		if err != nil {
			b.fail(fmt.Errorf("vk: Download: staging: %w", err))
			return false
		}
		b.staging = append(b.staging, st)
		cb, ok := b.cmd()
		if !ok {
			return false
		}
		at := src.offset + uint64(off)
		b.sync(cb, []access{{src.block, at, at + uint64(len(part)), false}})
		vkapi.CmdCopyBuffer(cb, src.block.buffer, st.block.buffer, 1, []vkapi.BufferCopy{{
			SrcOffset: vkapi.DeviceSize(at), DstOffset: vkapi.DeviceSize(st.offset), Size: vkapi.DeviceSize(len(part)),
		}})
		b.downloads = append(b.downloads, download{staging: st, dst: part})
		b.hostReads = true
	}
	return true
}

// hostBytes views a host slice as bytes.
func hostBytes(data any) ([]byte, error) {
	switch s := data.(type) {
	case []byte:
		return s, nil
	case []float32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s)), nil
	case []int32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s)), nil
	case []uint32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s)), nil
	}
	return nil, fmt.Errorf("unsupported host type %T (want []float32, []int32, []uint32 or []byte)", data)
}

// end closes the recording: the last barrier makes transfers visible to the
// host before the fence signals.
func (b *Batch) end() error {
	if b.ended {
		return nil
	}
	if len(b.chunks) == 0 {
		// An empty batch still submits one command buffer, so Run is uniform.
		if _, ok := b.cmd(); !ok {
			return b.err
		}
		b.count--
	}
	cb := b.chunks[len(b.chunks)-1]
	if b.hostReads {
		C.u2_barrier(b.dev.fns, (C.VkCommandBuffer)(unsafe.Pointer(cb)),
			C.VK_PIPELINE_STAGE_TRANSFER_BIT, C.VK_PIPELINE_STAGE_HOST_BIT,
			C.VK_ACCESS_TRANSFER_WRITE_BIT, C.VK_ACCESS_HOST_READ_BIT)
	}
	if err := check(vkapi.EndCommandBuffer(cb), "ending command buffer"); err != nil {
		return err
	}
	b.ended = true
	var fence vkapi.Fence
	r := vkapi.CreateFence(b.dev.handle, &vkapi.FenceCreateInfo{SType: vkapi.StructureTypeFenceCreateInfo}, nil, &fence)
	if err := check(r, "creating fence"); err != nil {
		return err
	}
	b.fence = fence
	return nil
}

// Run submits the batch, waits for it to finish, fills the downloads' slices
// and reports validation messages printed meanwhile as an error.
func (b *Batch) Run() error {
	if b.err != nil {
		return b.err
	}
	if err := b.dev.usable(); err != nil {
		return err
	}
	if err := b.end(); err != nil {
		b.fail(err)
		return err
	}
	if err := check(vkapi.ResetFences(b.dev.handle, 1, []vkapi.Fence{b.fence}), "resetting fence"); err != nil {
		return err
	}
	// One submission per chunk keeps each short; queue order and the
	// barriers recorded across chunks keep them correct.
	for i, cb := range b.chunks {
		var fence C.VkFence
		if i == len(b.chunks)-1 {
			fence = (C.VkFence)(unsafe.Pointer(b.fence))
		}
		r := vkapi.Result(C.u2_submit(b.dev.fns, (C.VkQueue)(unsafe.Pointer(b.dev.queue)), (C.VkCommandBuffer)(unsafe.Pointer(cb)), fence))
		b.dev.noteResult(r)
		if err := check(r, fmt.Sprintf("submitting command buffer %d of %d", i+1, len(b.chunks))); err != nil {
			return err
		}
	}
	for {
		r := vkapi.WaitForFences(b.dev.handle, 1, []vkapi.Fence{b.fence}, vkapi.True, uint64(10*time.Second))
		if r == vkapi.Timeout {
			continue // long batches on slow devices are normal; loss is reported as such
		}
		b.dev.noteResult(r)
		if err := check(r, "waiting for batch"); err != nil {
			return err
		}
		break
	}
	for _, dl := range b.downloads {
		hostCopy(dl.dst, dl.staging.host())
	}
	if b.timed {
		if err := b.readTimings(); err != nil {
			return err
		}
	}
	return takeValidationMessages()
}

func (b *Batch) readTimings() error {
	n := len(b.queryLabels)
	ticks := make([]uint64, n)
	for p, pool := range b.queryPools {
		first := p * queriesPerPool
		count := min(queriesPerPool, n-first)
		r := vkapi.GetQueryPoolResults(b.dev.handle, pool, 0, uint32(count), uint(8*count),
			unsafe.Pointer(&ticks[first]), 8,
			vkapi.QueryResultFlags(vkapi.QueryResult64Bit|vkapi.QueryResultWaitBit))
		if err := check(r, "reading timestamps"); err != nil {
			return err
		}
	}
	period := float64(b.dev.info.TimestampPeriod)
	b.timings = b.timings[:0]
	for i := 0; i+1 < n; i += 2 {
		start := float64(ticks[i]-ticks[0]) * period
		dt := float64(ticks[i+1]-ticks[i]) * period
		b.timings = append(b.timings, Timing{Kernel: b.queryLabels[i], Label: b.queryTags[i], Start: time.Duration(start), Duration: time.Duration(dt)})
	}
	return nil
}

// Timings returns the GPU time of each dispatch of a timed batch's last run.
func (b *Batch) Timings() []Timing { return append([]Timing(nil), b.timings...) }

// Release frees the batch's command buffers, descriptor sets, staging memory
// and queries. It waits for a run still in flight.
func (b *Batch) Release() {
	d := b.dev
	if d.closed {
		return
	}
	if b.fence != vkapi.NullFence {
		vkapi.WaitForFences(d.handle, 1, []vkapi.Fence{b.fence}, vkapi.True, ^uint64(0))
		vkapi.DestroyFence(d.handle, b.fence, nil)
		b.fence = vkapi.NullFence
	}
	if len(b.chunks) > 0 {
		vkapi.FreeCommandBuffers(d.handle, d.cmdPool, uint32(len(b.chunks)), b.chunks)
		b.chunks = nil
	}
	for _, p := range b.pools {
		vkapi.DestroyDescriptorPool(d.handle, vkapi.DescriptorPool(unsafe.Pointer(p)), nil)
	}
	b.pools = nil
	for _, p := range b.queryPools {
		vkapi.DestroyQueryPool(d.handle, p, nil)
	}
	b.queryPools = nil
	for _, st := range b.staging {
		st.Release()
	}
	b.staging = nil
	b.downloads = nil
	b.fail(errors.New("vk: batch was released"))
}
