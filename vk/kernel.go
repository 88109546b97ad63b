package vk

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	vkapi "github.com/vulkan-go/vulkan"
)

// Access says how a kernel uses one of its bindings; batches derive their
// barriers from it.
type Access uint8

// Binding access modes.
const (
	Read Access = 1 << iota
	Write
	texel     // a uniform texel buffer rather than a storage buffer
	texel4    // of four floats per texel
	ReadWrite = Read | Write
	// ReadTexel and ReadTexel4 bind a read-only buffer as a uniform texel
	// buffer of 32-bit floats (GLSL samplerBuffer), one or four per texel
	// (R32_SFLOAT, R32G32B32A32_SFLOAT; a partial last texel is left out).
	// A CPU implementation fetches texels for all SIMD lanes with vector
	// gathers, where it loads storage buffers a lane at a time.
	ReadTexel  = Read | texel
	ReadTexel4 = Read | texel | texel4
)

// Texel reports whether the binding is a texel buffer.
func (a Access) Texel() bool { return a&texel != 0 }

// texelSize is the bytes of one texel of a texel binding.
func (a Access) texelSize() uint64 {
	if a&texel4 != 0 {
		return 16
	}
	return 4
}

// KernelSpec describes a compute kernel. The shader's bindings are 0..n-1 of
// descriptor set 0: storage buffers, or uniform texel buffers where the
// access says so; its specialization constants are ids 0..len(Spec)-1 (by
// convention 0, 1, 2 are the workgroup size).
type KernelSpec struct {
	Name     string   // for errors and profiles, e.g. "fill"
	SPIRV    []byte   // the module; its entry point is "main"
	Bindings []Access // one per binding, in binding order
	PushSize int      // bytes of push constants, a multiple of 4
	Spec     []uint32 // specialization constants
}

// key identifies a pipeline: the same module with other specialization
// constants, bindings or push constants is another pipeline, since the
// access modes of the bindings decide a batch's barriers.
func (s KernelSpec) key() string {
	var b strings.Builder
	b.WriteString(s.Name)
	for _, v := range s.Spec {
		fmt.Fprintf(&b, ",%d", v)
	}
	b.WriteString(";")
	for _, a := range s.Bindings {
		fmt.Fprintf(&b, "%d", a)
	}
	fmt.Fprintf(&b, ";%d", s.PushSize)
	return b.String()
}

// Kernel is a compute pipeline ready to dispatch.
type Kernel struct {
	spec KernelSpec
	obj  C.u2_kernel
}

// Name returns the kernel's name.
func (k *Kernel) Name() string { return k.spec.Name }

// Kernel returns the pipeline for spec, building it on first use; later calls
// with the same name and specialization constants return the same Kernel.
func (d *Device) Kernel(spec KernelSpec) (*Kernel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return nil, err
	}
	key := spec.key()
	if k, ok := d.kernels[key]; ok {
		return k, nil
	}
	if err := spec.validate(d.info); err != nil {
		return nil, err
	}
	k, err := d.buildKernel(spec)
	if err != nil {
		return nil, fmt.Errorf("vk: building kernel %s: %w", key, err)
	}
	d.kernels[key] = k
	return k, nil
}

func (s KernelSpec) validate(info DeviceInfo) error {
	switch {
	case s.Name == "":
		return fmt.Errorf("vk: kernel without a name")
	case len(s.SPIRV) < 20 || len(s.SPIRV)%4 != 0 || binary.LittleEndian.Uint32(s.SPIRV) != 0x07230203:
		return fmt.Errorf("vk: kernel %s: not a SPIR-V module (%d bytes)", s.Name, len(s.SPIRV))
	case s.PushSize%4 != 0 || s.PushSize < 0:
		return fmt.Errorf("vk: kernel %s: push constant size %d is not a multiple of 4", s.Name, s.PushSize)
	case len(s.Bindings) > maxBindings:
		return fmt.Errorf("vk: kernel %s: %d bindings, at most %d are supported", s.Name, len(s.Bindings), maxBindings)
	case uint32(s.PushSize) > info.MaxPushConstants:
		return fmt.Errorf("vk: kernel %s: %d bytes of push constants, device allows %d", s.Name, s.PushSize, info.MaxPushConstants)
	}
	for i, a := range s.Bindings {
		if a != Read && a != Write && a != ReadWrite && a != ReadTexel && a != ReadTexel4 {
			return fmt.Errorf("vk: kernel %s: binding %d has no valid access mode", s.Name, i)
		}
	}
	return nil
}

func (d *Device) buildKernel(spec KernelSpec) (*Kernel, error) {
	if d.cache == nil {
		d.cache = openPipelineCache(d)
	}
	k := &Kernel{spec: spec}
	// The create infos are built in C from C copies of the code and the
	// constants: the driver must never see Go memory.
	code := C.CBytes(spec.SPIRV)
	defer C.free(code)
	var specPtr *C.uint32_t
	if n := len(spec.Spec); n > 0 {
		p := C.malloc(C.size_t(4 * n))
		defer C.free(p)
		copy(unsafe.Slice((*uint32)(p), n), spec.Spec)
		specPtr = (*C.uint32_t)(p)
	}
	types := (*C.uint32_t)(C.malloc(C.size_t(4 * max(1, len(spec.Bindings)))))
	defer C.free(unsafe.Pointer(types))
	typeSlice := unsafe.Slice(types, len(spec.Bindings))
	for i, a := range spec.Bindings {
		typeSlice[i] = bindingType(a)
	}
	r := C.u2_create_kernel(d.fns, (*C.uint32_t)(code), C.size_t(len(spec.SPIRV)), types, C.uint32_t(len(spec.Bindings)),
		C.uint32_t(spec.PushSize), specPtr, C.uint32_t(len(spec.Spec)),
		(C.VkPipelineCache)(unsafe.Pointer(d.cache.handle)), &k.obj)
	if err := check(vkapi.Result(r), "creating compute pipeline"); err != nil {
		return nil, err
	}
	d.setName(C.VK_OBJECT_TYPE_PIPELINE, unsafe.Pointer(k.obj.pipeline), "kernel "+spec.key())
	return k, nil
}

// bindingType is the shim's descriptor type of a binding.
func bindingType(a Access) C.uint32_t {
	if a.Texel() {
		return C.U2_TEXEL
	}
	return C.U2_STORAGE
}

func (k *Kernel) destroy(d *Device) { C.u2_destroy_kernel(d.fns, &k.obj) }

// pipelineCache is the VkPipelineCache persisted between runs, so that the
// driver compiles each kernel once per machine rather than once per process.
type pipelineCache struct {
	handle vkapi.PipelineCache
	path   string // "" when not persisted
}

// cacheHeaderSize is the size of VkPipelineCacheHeaderVersionOne.
const cacheHeaderSize = 32

// CacheDir is the folder of the files kept per device between runs (the
// pipeline cache, kernel tunings): dir when not empty, else
// $U2NET_CACHE_DIR, else os.UserCacheDir()/u2net. It is "" where there is
// none, or where the one named is "-" (kept nowhere).
func CacheDir(dir string) string {
	if dir == "" {
		dir = os.Getenv("U2NET_CACHE_DIR")
	}
	if dir == "" {
		user, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(user, "u2net")
	}
	if dir == "-" {
		return ""
	}
	return dir
}

// CacheDir is the device's folder of files kept between runs (see the
// function CacheDir and Options.PipelineCacheDir), "" where there is none.
func (d *Device) CacheDir() string { return CacheDir(d.opts.PipelineCacheDir) }

// openPipelineCache loads the cache file if it belongs to this device and
// driver; a missing, corrupt or foreign file is ignored.
func openPipelineCache(d *Device) *pipelineCache {
	pc := &pipelineCache{}
	if dir := d.CacheDir(); dir != "" {
		pc.path = filepath.Join(dir, fmt.Sprintf("pipelines-%04x-%04x.bin", d.info.VendorID, d.info.DeviceID))
	}
	var initial []byte
	if pc.path != "" {
		if data, err := os.ReadFile(pc.path); err == nil && cacheMatches(data, d.info) {
			initial = data
		}
	}
	ci := vkapi.PipelineCacheCreateInfo{SType: vkapi.StructureTypePipelineCacheCreateInfo}
	if len(initial) > 0 {
		p := C.CBytes(initial)
		defer C.free(p)
		ci.InitialDataSize = uint(len(initial))
		ci.PInitialData = p
	}
	var handle vkapi.PipelineCache
	if vkapi.CreatePipelineCache(d.handle, &ci, nil, &handle) != vkapi.Success {
		// A driver that rejects the data gets an empty cache instead.
		ci.InitialDataSize, ci.PInitialData = 0, nil
		if vkapi.CreatePipelineCache(d.handle, &ci, nil, &handle) != vkapi.Success {
			handle = vkapi.NullPipelineCache
		}
	}
	pc.handle = handle
	return pc
}

// cacheMatches checks the cache header: its size and version, and that the
// vendor, device and cache UUID are this device's.
func cacheMatches(data []byte, info DeviceInfo) bool {
	if len(data) < cacheHeaderSize {
		return false
	}
	le := binary.LittleEndian
	return le.Uint32(data[0:]) == cacheHeaderSize &&
		le.Uint32(data[4:]) == 1 && // VK_PIPELINE_CACHE_HEADER_VERSION_ONE
		le.Uint32(data[8:]) == info.VendorID &&
		le.Uint32(data[12:]) == info.DeviceID &&
		bytes.Equal(data[16:32], info.cacheUUID[:])
}

// save writes the cache atomically: a crash never leaves a torn file.
// Failing to persist it costs only compile time next run, so it is silent.
func (pc *pipelineCache) save(d *Device) {
	if pc.path == "" || pc.handle == vkapi.NullPipelineCache {
		return
	}
	var n uint
	if vkapi.GetPipelineCacheData(d.handle, pc.handle, &n, nil) != vkapi.Success || n == 0 {
		return
	}
	buf := C.malloc(C.size_t(n))
	defer C.free(buf)
	if vkapi.GetPipelineCacheData(d.handle, pc.handle, &n, buf) != vkapi.Success {
		return
	}
	data := C.GoBytes(buf, C.int(n))
	if err := os.MkdirAll(filepath.Dir(pc.path), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(pc.path), ".pipelines-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), pc.path) != nil {
		os.Remove(tmp.Name())
	}
}

func (pc *pipelineCache) destroy(d *Device) {
	if pc.handle != vkapi.NullPipelineCache {
		vkapi.DestroyPipelineCache(d.handle, pc.handle, nil)
	}
}
