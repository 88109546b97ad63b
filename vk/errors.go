package vk

import (
	"errors"
	"fmt"

	vkapi "github.com/vulkan-go/vulkan"
)

// Errors for the conditions a caller may want to handle; the returned errors
// wrap them with what was being done.
var (
	ErrDeviceLost     = errors.New("vk: the device was lost (driver crash, reset or a shader fault); results are gone and the device must be reopened")
	ErrOutOfMemory    = errors.New("vk: out of device memory")
	ErrHostMemory     = errors.New("vk: out of host memory")
	ErrTooLarge       = errors.New("vk: buffer larger than the device's storage-buffer range")
	ErrClosed         = errors.New("vk: device is closed")
	ErrBufferReleased = errors.New("vk: buffer was released")
)

// resultError turns a failing VkResult into an error; it returns nil for
// success.
func resultError(r vkapi.Result) error {
	switch r {
	case vkapi.Success:
		return nil
	case vkapi.ErrorDeviceLost:
		return ErrDeviceLost
	case vkapi.ErrorOutOfDeviceMemory:
		return ErrOutOfMemory
	case vkapi.ErrorOutOfHostMemory:
		return ErrHostMemory
	}
	return fmt.Errorf("VkResult %d (%s)", int32(r), resultName(r))
}

func resultName(r vkapi.Result) string {
	switch r {
	case vkapi.NotReady:
		return "VK_NOT_READY"
	case vkapi.Timeout:
		return "VK_TIMEOUT"
	case vkapi.Incomplete:
		return "VK_INCOMPLETE"
	case vkapi.ErrorInitializationFailed:
		return "VK_ERROR_INITIALIZATION_FAILED"
	case vkapi.ErrorMemoryMapFailed:
		return "VK_ERROR_MEMORY_MAP_FAILED"
	case vkapi.ErrorLayerNotPresent:
		return "VK_ERROR_LAYER_NOT_PRESENT"
	case vkapi.ErrorExtensionNotPresent:
		return "VK_ERROR_EXTENSION_NOT_PRESENT"
	case vkapi.ErrorFeatureNotPresent:
		return "VK_ERROR_FEATURE_NOT_PRESENT"
	case vkapi.ErrorIncompatibleDriver:
		return "VK_ERROR_INCOMPATIBLE_DRIVER"
	case vkapi.ErrorTooManyObjects:
		return "VK_ERROR_TOO_MANY_OBJECTS"
	case vkapi.ErrorFragmentedPool:
		return "VK_ERROR_FRAGMENTED_POOL"
	case vkapi.ErrorOutOfPoolMemory:
		return "VK_ERROR_OUT_OF_POOL_MEMORY"
	}
	return "unknown"
}

// check wraps a failing VkResult with what was being done.
func check(r vkapi.Result, what string) error {
	if err := resultError(r); err != nil {
		return fmt.Errorf("vk: %s: %w", what, err)
	}
	return nil
}
