package vk

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	vkapi "github.com/vulkan-go/vulkan"
)

// Options configure Open.
type Options struct {
	// Selector chooses the device as Choose does; "cpu" is refused here since
	// the reference engine needs no Vulkan device.
	Selector string
	// PipelineCacheDir holds the files kept for the device between runs:
	// the persisted VkPipelineCache and kernel tunings. Empty means
	// $U2NET_CACHE_DIR, else the user's cache directory
	// (os.UserCacheDir()/u2net); "-" keeps none.
	PipelineCacheDir string
	// MemoryLimit caps the device-local memory the device allocates for
	// tensors, in bytes (0: no cap beyond the device's own). Past it an
	// allocation fails with ErrOutOfMemory, as when the device is full, so
	// a process can leave room on a shared GPU.
	MemoryLimit uint64
}

// Device is an opened Vulkan device with one compute queue. Its methods are
// safe for use by one goroutine at a time; Batches must not be recorded from
// several goroutines at once.
type Device struct {
	info   DeviceInfo
	phys   C.VkPhysicalDevice
	handle vkapi.Device
	queue  vkapi.Queue
	fns    *C.u2_dev // recording entry points

	cmdPool vkapi.CommandPool

	deviceMem  *allocator // device-local blocks for tensors
	stagingMem *allocator // host-visible, mapped blocks for transfers

	mu      sync.Mutex
	kernels map[string]*Kernel
	cache   *pipelineCache
	opts    Options
	closed  bool
	lost    bool
}

// Open opens the device named by opts.Selector (see Choose).
func Open(opts Options) (*Device, error) {
	c, err := Choose(opts.Selector)
	if err != nil {
		return nil, err
	}
	if c.CPU {
		if c.Reason != "" {
			return nil, fmt.Errorf("vk: no Vulkan device to open: %s", c.Reason)
		}
		return nil, errors.New(`vk: selector "cpu" names the reference engine, not a Vulkan device`)
	}
	return openInfo(c.Device, opts)
}

func openInfo(info DeviceInfo, opts Options) (*Device, error) {
	phys := instance.phys[indexOf(info.Index)]
	var handle C.VkDevice
	if r := C.u2_create_device(instance.handle, phys, C.uint32_t(info.queueFamily), &handle); r != C.VK_SUCCESS {
		return nil, check(vkapi.Result(r), "creating device "+info.Name)
	}
	d := &Device{
		info:    info,
		opts:    opts,
		phys:    phys,
		handle:  vkapi.Device(unsafe.Pointer(handle)),
		kernels: map[string]*Kernel{},
	}
	// vulkan-go's out-parameters must be locals: cgo refuses pointers into
	// structs that hold Go pointers.
	var queue vkapi.Queue
	vkapi.GetDeviceQueue(d.handle, info.queueFamily, 0, &queue)
	d.queue = queue
	if d.fns = C.u2_dev_load(instance.handle, handle); d.fns == nil {
		vkapi.DestroyDevice(d.handle, nil)
		return nil, fmt.Errorf("vk: device %s lacks core Vulkan 1.0 commands", info.Name)
	}
	var cmdPool vkapi.CommandPool
	r := vkapi.CreateCommandPool(d.handle, &vkapi.CommandPoolCreateInfo{
		SType:            vkapi.StructureTypeCommandPoolCreateInfo,
		Flags:            vkapi.CommandPoolCreateFlags(vkapi.CommandPoolCreateResetCommandBufferBit),
		QueueFamilyIndex: info.queueFamily,
	}, nil, &cmdPool)
	d.cmdPool = cmdPool
	if err := check(r, "creating command pool"); err != nil {
		vkapi.DestroyDevice(d.handle, nil)
		C.u2_dev_free(d.fns)
		return nil, err
	}
	var err error
	if d.deviceMem, err = newAllocator(d, false); err == nil {
		d.deviceMem.limit = opts.MemoryLimit
		d.stagingMem, err = newAllocator(d, true)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func indexOf(deviceIndex int) int {
	for i, inf := range instance.infos {
		if inf.Index == deviceIndex {
			return i
		}
	}
	return -1
}

// Info describes the device.
func (d *Device) Info() DeviceInfo { return d.info }

// Validating reports whether the validation layer watches this device.
func (d *Device) Validating() bool { return instance.validate }

// ValidationErrors returns, and forgets, the validation messages printed
// since the last call, as one error (nil when there are none).
func (d *Device) ValidationErrors() error { return takeValidationMessages() }

// Close waits for the device, saves the pipeline cache and frees everything.
// It returns the validation messages not yet reported, if any.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if r := vkapi.DeviceWaitIdle(d.handle); r != vkapi.Success && !d.lost {
		errs = append(errs, check(r, "waiting for the device before closing"))
	}
	if d.cache != nil {
		d.cache.save(d)
		d.cache.destroy(d)
	}
	for _, k := range d.kernels {
		k.destroy(d)
	}
	if d.stagingMem != nil {
		d.stagingMem.destroy()
	}
	if d.deviceMem != nil {
		d.deviceMem.destroy()
	}
	vkapi.DestroyCommandPool(d.handle, d.cmdPool, nil)
	vkapi.DestroyDevice(d.handle, nil)
	C.u2_dev_free(d.fns)
	errs = append(errs, takeValidationMessages())
	return errors.Join(errs...)
}

// usable returns an error when the device can no longer take work.
func (d *Device) usable() error {
	if d.closed {
		return ErrClosed
	}
	if d.lost {
		return ErrDeviceLost
	}
	return nil
}

// noteResult remembers device loss so later calls fail fast.
func (d *Device) noteResult(r vkapi.Result) {
	if r == vkapi.ErrorDeviceLost {
		d.lost = true
	}
}
