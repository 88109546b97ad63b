package vk

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sort"
	"unsafe"

	vkapi "github.com/vulkan-go/vulkan"
)

// Buffer is a range of one memory block. Device-local buffers hold tensors;
// host-visible ones, owned by batches, stage transfers.
type Buffer struct {
	block  *block
	offset uint64
	size   uint64 // bytes asked for
	span   uint64 // bytes reserved (size rounded up to the alignment)
	freed  bool
	view   bool // a range of another buffer: Release does nothing
}

// Size returns the buffer's size in bytes.
func (b *Buffer) Size() uint64 { return b.size }

// Release returns the buffer's memory to its block. Releasing twice is a
// no-op; a released buffer must not be used again.
func (b *Buffer) Release() {
	if b == nil || b.freed || b.view {
		return
	}
	b.freed = true
	b.block.alloc.free(b)
}

// View returns the range [offset, offset+size) of b as a buffer of its own
// for binding; offset must be a multiple of the device's storage-buffer
// alignment (and of its texel-buffer alignment for a texel binding). The
// view lives as long as b; releasing it does nothing.
func (b *Buffer) View(offset, size uint64) (*Buffer, error) {
	align := b.block.alloc.dev.info.StorageAlignment
	switch {
	case b.freed:
		return nil, ErrBufferReleased
	case size == 0 || offset+size > b.size || offset+size < offset:
		return nil, fmt.Errorf("vk: view [%d, +%d) outside a %d-byte buffer", offset, size, b.size)
	case align > 0 && offset%align != 0:
		return nil, fmt.Errorf("vk: view offset %d is not a multiple of the storage-buffer alignment %d", offset, align)
	}
	return &Buffer{block: b.block, offset: b.offset + offset, size: size, span: size, view: true}, nil
}

// host returns the mapped bytes of a host-visible buffer.
func (b *Buffer) host() []byte {
	return unsafe.Slice((*byte)(unsafe.Add(b.block.mapped, b.offset)), b.size)
}

// span is a free range inside a block.
type span struct{ off, size uint64 }

// block is one VkBuffer bound to its own VkDeviceMemory; buffers are
// first-fit ranges of it, so binding a tensor never allocates.
type block struct {
	alloc  *allocator
	id     int
	buffer vkapi.Buffer
	memory vkapi.DeviceMemory
	size   uint64
	free   []span // sorted by offset, coalesced
	mapped unsafe.Pointer
	// views are the texel views made of the block's buffers (and views
	// of them), kept until the buffer is released.
	views map[viewKey]C.VkBufferView
}

type viewKey struct {
	offset, size uint64
	format       C.VkFormat
}

// texelView returns a view of buf as texels of one or four floats (a
// partial last texel left out), made on first use.
func (b *Buffer) texelView(four bool) (C.VkBufferView, error) {
	bl := b.block
	info := &bl.alloc.dev.info
	format, size := C.VkFormat(C.VK_FORMAT_R32_SFLOAT), uint64(4)
	if four {
		format, size = C.VK_FORMAT_R32G32B32A32_SFLOAT, 16
	}
	n := b.size / size
	switch {
	case n == 0:
		return nil, fmt.Errorf("a %d-byte buffer holds no %d-byte texel", b.size, size)
	case n > uint64(info.MaxTexelBufferElements):
		return nil, fmt.Errorf("%d texels, the device %q binds at most %d per texel buffer (maxTexelBufferElements)",
			n, info.Name, info.MaxTexelBufferElements)
	case info.TexelAlignment > 0 && b.offset%info.TexelAlignment != 0:
		return nil, fmt.Errorf("offset %d is not a multiple of the texel-buffer alignment %d", b.offset, info.TexelAlignment)
	}
	key := viewKey{b.offset, n * size, format}
	if v, ok := bl.views[key]; ok {
		return v, nil
	}
	var v C.VkBufferView
	r := C.u2_create_view(bl.alloc.dev.fns, (C.VkBuffer)(unsafe.Pointer(bl.buffer)), C.uint64_t(key.offset),
		C.uint64_t(key.size), format, &v)
	if err := check(vkapi.Result(r), "creating a texel buffer view"); err != nil {
		return nil, err
	}
	if bl.views == nil {
		bl.views = map[viewKey]C.VkBufferView{}
	}
	bl.views[key] = v
	return v, nil
}

// allocator sub-allocates buffers from blocks of one memory type.
type allocator struct {
	dev       *Device
	hostVis   bool
	memType   uint32
	align     uint64
	blockSize uint64
	blocks    []*block
	nextID    int
	inUse     uint64
	peak      uint64
	// limit caps the bytes of all blocks together (0: none).
	limit uint64
}

const (
	mib = 1 << 20
	// Host-visible staging never needs huge blocks: transfers are chunked.
	stagingBlockSize = 64 * mib
)

func newAllocator(d *Device, hostVisible bool) (*allocator, error) {
	var props vkapi.PhysicalDeviceMemoryProperties
	vkapi.GetPhysicalDeviceMemoryProperties(vkapi.PhysicalDevice(unsafe.Pointer(d.phys)), &props)
	props.Deref()
	want := vkapi.MemoryPropertyFlags(vkapi.MemoryPropertyDeviceLocalBit)
	if hostVisible {
		want = vkapi.MemoryPropertyFlags(vkapi.MemoryPropertyHostVisibleBit | vkapi.MemoryPropertyHostCoherentBit)
	}
	best := -1
	for i := 0; i < int(props.MemoryTypeCount); i++ {
		t := props.MemoryTypes[i]
		t.Deref()
		if t.PropertyFlags&want != want {
			continue
		}
		if best < 0 {
			best = i
		}
		// Downloads read staging memory on the host: cached is much faster.
		if hostVisible && t.PropertyFlags&vkapi.MemoryPropertyFlags(vkapi.MemoryPropertyHostCachedBit) != 0 {
			best = i
			break
		}
	}
	if best < 0 {
		kind := "device-local"
		if hostVisible {
			kind = "host-visible coherent"
		}
		return nil, fmt.Errorf("vk: device %s has no %s memory type", d.info.Name, kind)
	}
	a := &allocator{dev: d, hostVis: hostVisible, memType: uint32(best)}
	// Every buffer may be bound as a storage or a texel buffer.
	a.align = max(d.info.StorageAlignment, d.info.TexelAlignment, 64)
	if hostVisible && d.info.nonCoherentAtm > a.align {
		a.align = d.info.nonCoherentAtm
	}
	a.blockSize = stagingBlockSize
	if !hostVisible {
		a.blockSize = 256 * mib
		if d.info.Type == TypeCPU {
			a.blockSize = 64 * mib
		}
	}
	return a, nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// Alloc returns a device-local buffer of n bytes. A buffer larger than the
// device's storage-buffer range could not be bound to a kernel, so it is
// refused with ErrTooLarge.
func (d *Device) Alloc(n uint64) (*Buffer, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("vk: Alloc of 0 bytes")
	}
	if limit := uint64(d.info.MaxStorageBufferRange); n > limit {
		return nil, fmt.Errorf("%w: asked for %d bytes, the device %q binds at most %d bytes (maxStorageBufferRange)",
			ErrTooLarge, n, d.info.Name, limit)
	}
	return d.deviceMem.alloc(n)
}

// MemoryInUse returns the bytes of device-local buffers now allocated and
// the peak since the device was opened.
func (d *Device) MemoryInUse() (now, peak uint64) { return d.deviceMem.inUse, d.deviceMem.peak }

// MemoryLimit returns the cap of Options.MemoryLimit on the device-local
// memory allocated (0: none).
func (d *Device) MemoryLimit() uint64 { return d.deviceMem.limit }

// ResetPeakMemory starts a new peak measurement from the bytes now in use.
func (d *Device) ResetPeakMemory() { d.deviceMem.peak = d.deviceMem.inUse }

func (a *allocator) alloc(n uint64) (*Buffer, error) {
	need := alignUp(n, a.align)
	for _, b := range a.blocks {
		if buf := b.take(n, need); buf != nil {
			a.account(need)
			return buf, nil
		}
	}
	b, err := a.grow(need)
	if errors.Is(err, ErrOutOfMemory) && a.dropEmptyBlocks() {
		// The empty block kept for reuse may be what stands in the way.
		b, err = a.grow(need)
	}
	if err != nil {
		return nil, fmt.Errorf("vk: allocating %d bytes on %s: %w", n, a.dev.info.Name, err)
	}
	buf := b.take(n, need)
	a.account(need)
	return buf, nil
}

func (a *allocator) account(n uint64) {
	a.inUse += n
	if a.inUse > a.peak {
		a.peak = a.inUse
	}
}

func (b *block) take(n, need uint64) *Buffer {
	for i, s := range b.free {
		if s.size < need {
			continue
		}
		buf := &Buffer{block: b, offset: s.off, size: n, span: need}
		if s.size == need {
			b.free = append(b.free[:i], b.free[i+1:]...)
		} else {
			b.free[i] = span{s.off + need, s.size - need}
		}
		return buf
	}
	return nil
}

func (a *allocator) free(buf *Buffer) {
	a.inUse -= buf.span
	b := buf.block
	// Views of the range go with it, so that they do not pile up over the
	// many ranges a long run allocates.
	for k, v := range b.views {
		if k.offset >= buf.offset && k.offset < buf.offset+buf.span {
			C.u2_destroy_view(a.dev.fns, v)
			delete(b.views, k)
		}
	}
	i := sort.Search(len(b.free), func(i int) bool { return b.free[i].off > buf.offset })
	b.free = append(b.free, span{})
	copy(b.free[i+1:], b.free[i:])
	b.free[i] = span{buf.offset, buf.span}
	// Coalesce with the next and the previous free range.
	if i+1 < len(b.free) && b.free[i].off+b.free[i].size == b.free[i+1].off {
		b.free[i].size += b.free[i+1].size
		b.free = append(b.free[:i+1], b.free[i+2:]...)
	}
	if i > 0 && b.free[i-1].off+b.free[i-1].size == b.free[i].off {
		b.free[i-1].size += b.free[i].size
		b.free = append(b.free[:i], b.free[i+1:]...)
	}
	// Keep one empty block for reuse; give the rest back to the driver.
	if b.empty() && a.emptyBlocks() > 1 {
		a.dropBlock(b)
	}
}

// dropEmptyBlocks gives every empty block back to the driver and reports
// whether there was one.
func (a *allocator) dropEmptyBlocks() bool {
	dropped := false
	for i := 0; i < len(a.blocks); {
		if b := a.blocks[i]; b.empty() {
			a.dropBlock(b)
			dropped = true
			continue
		}
		i++
	}
	return dropped
}

// empty reports whether no buffer is left in the block.
func (b *block) empty() bool { return len(b.free) == 1 && b.free[0].size == b.size }

// held returns the bytes of all blocks.
func (a *allocator) held() uint64 {
	var n uint64
	for _, b := range a.blocks {
		n += b.size
	}
	return n
}

func (a *allocator) emptyBlocks() int {
	n := 0
	for _, b := range a.blocks {
		if b.empty() {
			n++
		}
	}
	return n
}

// grow adds a block with room for need bytes: of the usual size, or
// dedicated to a larger buffer, or shorter to stay under the memory limit.
func (a *allocator) grow(need uint64) (*block, error) {
	size := max(need, a.blockSize)
	if a.limit > 0 {
		held := a.held()
		if held+need > a.limit {
			return nil, fmt.Errorf("%w: the memory limit of %d bytes would be passed (%d held)", ErrOutOfMemory, a.limit, held)
		}
		size = max(need, min(a.blockSize, a.limit-held))
	}
	b, err := a.newBlock(size)
	if err != nil {
		return nil, fmt.Errorf("block of %d bytes: %w", size, err)
	}
	return b, nil
}

func (a *allocator) newBlock(size uint64) (*block, error) {
	d := a.dev.handle
	usage := vkapi.BufferUsageFlags(vkapi.BufferUsageStorageBufferBit | vkapi.BufferUsageTransferSrcBit |
		vkapi.BufferUsageTransferDstBit)
	if !a.hostVis {
		usage |= vkapi.BufferUsageFlags(vkapi.BufferUsageUniformTexelBufferBit)
	}
	var buf vkapi.Buffer
	r := vkapi.CreateBuffer(d, &vkapi.BufferCreateInfo{
		SType:       vkapi.StructureTypeBufferCreateInfo,
		Size:        vkapi.DeviceSize(size),
		Usage:       usage,
		SharingMode: vkapi.SharingModeExclusive,
	}, nil, &buf)
	if err := resultError(r); err != nil {
		return nil, err
	}
	var req vkapi.MemoryRequirements
	vkapi.GetBufferMemoryRequirements(d, buf, &req)
	req.Deref()
	if req.MemoryTypeBits&(1<<a.memType) == 0 {
		vkapi.DestroyBuffer(d, buf, nil)
		return nil, fmt.Errorf("memory type %d cannot hold storage buffers", a.memType)
	}
	var mem vkapi.DeviceMemory
	r = vkapi.AllocateMemory(d, &vkapi.MemoryAllocateInfo{
		SType:           vkapi.StructureTypeMemoryAllocateInfo,
		AllocationSize:  req.Size,
		MemoryTypeIndex: a.memType,
	}, nil, &mem)
	if err := resultError(r); err != nil {
		vkapi.DestroyBuffer(d, buf, nil)
		if r == vkapi.ErrorOutOfHostMemory && !a.hostVis {
			err = ErrOutOfMemory
		}
		return nil, err
	}
	if err := resultError(vkapi.BindBufferMemory(d, buf, mem, 0)); err != nil {
		vkapi.FreeMemory(d, mem, nil)
		vkapi.DestroyBuffer(d, buf, nil)
		return nil, err
	}
	b := &block{alloc: a, id: a.nextID, buffer: buf, memory: mem, size: size, free: []span{{0, size}}}
	a.nextID++
	if a.hostVis {
		var p unsafe.Pointer
		if err := resultError(vkapi.MapMemory(d, mem, 0, vkapi.DeviceSize(vkapi.WholeSize), 0, &p)); err != nil {
			vkapi.FreeMemory(d, mem, nil)
			vkapi.DestroyBuffer(d, buf, nil)
			return nil, err
		}
		b.mapped = p
	}
	a.blocks = append(a.blocks, b)
	return b, nil
}

func (a *allocator) dropBlock(b *block) {
	for i, x := range a.blocks {
		if x == b {
			a.blocks = append(a.blocks[:i], a.blocks[i+1:]...)
			break
		}
	}
	a.destroyBlock(b)
}

func (a *allocator) destroyBlock(b *block) {
	d := a.dev.handle
	for _, v := range b.views {
		C.u2_destroy_view(a.dev.fns, v)
	}
	b.views = nil
	if b.mapped != nil {
		vkapi.UnmapMemory(d, b.memory)
	}
	vkapi.DestroyBuffer(d, b.buffer, nil)
	vkapi.FreeMemory(d, b.memory, nil)
}

func (a *allocator) destroy() {
	for _, b := range a.blocks {
		a.destroyBlock(b)
	}
	a.blocks = nil
}
