package vk

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	vkapi "github.com/vulkan-go/vulkan"
)

// ErrNoLoader is returned (wrapped) when the Vulkan loader library cannot be
// opened.
var ErrNoLoader = errors.New("vk: no Vulkan loader (libvulkan.so.1) found; install one, e.g. on Debian/Ubuntu: apt-get install libvulkan1 mesa-vulkan-drivers")

// ErrNoDevice is returned (wrapped) when the loader works but reports no
// physical device with a compute queue.
var ErrNoDevice = errors.New("vk: no Vulkan device found; install a driver, e.g. on Debian/Ubuntu: apt-get install mesa-vulkan-drivers (lavapipe, a CPU implementation)")

// The process keeps one Vulkan instance; every Device is created from it.
var instance struct {
	once     sync.Once
	err      error
	handle   C.VkInstance
	validate bool
	phys     []C.VkPhysicalDevice
	infos    []DeviceInfo
}

// ValidationRequested reports whether U2NET_VK_VALIDATE asks for the
// validation layer.
func ValidationRequested() bool {
	v := os.Getenv("U2NET_VK_VALIDATE")
	return v != "" && v != "0" && v != "false"
}

// initInstance loads the loader, creates the instance and lists devices,
// once per process.
func initInstance() error {
	instance.once.Do(func() {
		instance.err = createInstance()
	})
	return instance.err
}

func createInstance() error {
	var errbuf [512]C.char
	if C.u2_load(&errbuf[0], C.int(len(errbuf))) != 0 {
		return fmt.Errorf("%w (%s)", ErrNoLoader, C.GoString(&errbuf[0]))
	}
	vkapi.SetGetInstanceProcAddr(C.u2_get_instance_proc_addr())
	if err := vkapi.Init(); err != nil {
		return fmt.Errorf("vk: initialising vulkan-go: %v", err)
	}
	// Ask for the newest version the loader knows, up to 1.3; the device's own
	// version decides which features are used.
	api := C.u2_instance_version()
	if api > C.VK_API_VERSION_1_3 {
		api = C.VK_API_VERSION_1_3
	}
	validate := ValidationRequested()
	var inst C.VkInstance
	if r := C.u2_create_instance(C.uint32_t(api), boolInt(validate), &inst, &errbuf[0], C.int(len(errbuf))); r != C.VK_SUCCESS {
		return fmt.Errorf("vk: %s: %w", C.GoString(&errbuf[0]), resultError(vkapi.Result(r)))
	}
	if err := vkapi.InitInstance(vkapi.Instance(unsafe.Pointer(inst))); err != nil {
		return fmt.Errorf("vk: loading instance functions: %v", err)
	}
	instance.handle = inst
	instance.validate = validate

	var n uint32
	if r := vkapi.EnumeratePhysicalDevices(vkInstance(), &n, nil); r != vkapi.Success {
		return fmt.Errorf("vk: listing devices: %w", resultError(r))
	}
	devs := make([]vkapi.PhysicalDevice, n)
	if n > 0 {
		if r := vkapi.EnumeratePhysicalDevices(vkInstance(), &n, devs); r != vkapi.Success {
			return fmt.Errorf("vk: listing devices: %w", resultError(r))
		}
	}
	for i, d := range devs[:n] {
		phys := C.VkPhysicalDevice(unsafe.Pointer(d))
		var p C.u2_props
		C.u2_query(inst, phys, &p)
		info := infoFromProps(i, &p)
		if p.compute_queue_family < 0 {
			continue // a device that cannot run compute shaders is of no use here
		}
		instance.phys = append(instance.phys, phys)
		instance.infos = append(instance.infos, info)
	}
	return nil
}

func vkInstance() vkapi.Instance { return vkapi.Instance(unsafe.Pointer(instance.handle)) }

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// takeValidationMessages returns the messages the validation layer has
// printed since the last call, joined into one error, or nil.
func takeValidationMessages() error {
	var errs []error
	var buf [4096]C.char
	for C.u2_take_message(&buf[0], C.int(len(buf))) != 0 {
		errs = append(errs, errors.New(C.GoString(&buf[0])))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("vk: %d validation message(s): %w", len(errs), errors.Join(errs...))
}
