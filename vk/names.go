package vk

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import "unsafe"

// setName gives a Vulkan object a name that validation messages quote; it
// costs nothing unless the validation layer is on.
func (d *Device) setName(objType C.VkObjectType, handle unsafe.Pointer, name string) {
	if !instance.validate {
		return
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	C.u2_set_name(instance.handle, (C.VkDevice)(unsafe.Pointer(d.handle)), objType, C.uint64_t(uintptr(handle)), cs)
}
