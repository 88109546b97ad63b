package vk

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DeviceType is the kind of a physical device, as Vulkan reports it.
type DeviceType int

// Device types, in Vulkan's numbering.
const (
	TypeOther DeviceType = iota
	TypeIntegrated
	TypeDiscrete
	TypeVirtual
	TypeCPU
)

func (t DeviceType) String() string {
	switch t {
	case TypeIntegrated:
		return "integrated"
	case TypeDiscrete:
		return "discrete"
	case TypeVirtual:
		return "virtual"
	case TypeCPU:
		return "cpu"
	}
	return "other"
}

// preference orders device types for the default choice: discrete first,
// then integrated, virtual, and CPU implementations last.
func (t DeviceType) preference() int {
	switch t {
	case TypeDiscrete:
		return 0
	case TypeIntegrated:
		return 1
	case TypeVirtual:
		return 2
	case TypeCPU:
		return 3
	}
	return 4
}

// Version is a Vulkan API version.
type Version uint32

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", uint32(v)>>22&0x7f, uint32(v)>>12&0x3ff, uint32(v)&0xfff)
}

// Minor returns the minor part of the version (1 for Vulkan 1.1).
func (v Version) Minor() int { return int(uint32(v) >> 12 & 0x3ff) }

// MemoryHeap is one memory heap of a device.
type MemoryHeap struct {
	Size        uint64 `json:"size"`
	DeviceLocal bool   `json:"device_local"`
}

// DeviceInfo is what the rest of the program needs to know about a device.
type DeviceInfo struct {
	Index         int          `json:"index"`
	Name          string       `json:"name"`
	Type          DeviceType   `json:"-"`
	TypeName      string       `json:"type"`
	VendorID      uint32       `json:"vendor_id"`
	DeviceID      uint32       `json:"device_id"`
	Driver        string       `json:"driver"`
	DriverInfo    string       `json:"driver_info"`
	DriverVersion uint32       `json:"driver_version"`
	APIVersion    Version      `json:"-"`
	API           string       `json:"api_version"`
	MemoryHeaps   []MemoryHeap `json:"memory_heaps"`
	SubgroupSize  uint32       `json:"subgroup_size"`
	// MaxSharedMemory is maxComputeSharedMemorySize in bytes.
	MaxSharedMemory uint32 `json:"max_shared_memory"`
	// MaxStorageBufferRange bounds one buffer binding, and so one tensor.
	MaxStorageBufferRange uint32    `json:"max_storage_buffer_range"`
	MaxWorkgroupCount     [3]uint32 `json:"max_workgroup_count"`
	MaxWorkgroupSize      [3]uint32 `json:"max_workgroup_size"`
	MaxWorkgroupInvocs    uint32    `json:"max_workgroup_invocations"`
	MaxPushConstants      uint32    `json:"max_push_constants"`
	// StorageAlignment is minStorageBufferOffsetAlignment.
	StorageAlignment uint64 `json:"storage_buffer_alignment"`
	// MaxTexelBufferElements bounds a texel-buffer binding (ReadTexel), in
	// texels; TexelAlignment is minTexelBufferOffsetAlignment.
	MaxTexelBufferElements uint32 `json:"max_texel_buffer_elements"`
	TexelAlignment         uint64 `json:"texel_buffer_alignment"`
	// TimestampPeriod is nanoseconds per timestamp tick; Timestamps says
	// whether the compute queue can write timestamps at all.
	TimestampPeriod   float32 `json:"timestamp_period_ns"`
	Timestamps        bool    `json:"timestamps"`
	CooperativeMatrix bool    `json:"cooperative_matrix"`
	Float16           bool    `json:"float16"`
	BFloat16          bool    `json:"bfloat16"`
	PushDescriptor    bool    `json:"push_descriptor"`

	queueFamily    uint32
	cacheUUID      [16]byte
	nonCoherentAtm uint64
}

// DeviceLocalBytes is the size of the largest device-local heap.
func (d DeviceInfo) DeviceLocalBytes() uint64 {
	var best uint64
	for _, h := range d.MemoryHeaps {
		if h.DeviceLocal && h.Size > best {
			best = h.Size
		}
	}
	return best
}

func infoFromProps(index int, p *C.u2_props) DeviceInfo {
	info := DeviceInfo{
		Index:                  index,
		Name:                   C.GoString(&p.name[0]),
		Type:                   DeviceType(p.device_type),
		VendorID:               uint32(p.vendor_id),
		DeviceID:               uint32(p.device_id),
		Driver:                 C.GoString(&p.driver_name[0]),
		DriverInfo:             C.GoString(&p.driver_info[0]),
		DriverVersion:          uint32(p.driver_version),
		APIVersion:             Version(p.api_version),
		SubgroupSize:           uint32(p.subgroup_size),
		MaxSharedMemory:        uint32(p.max_shared_memory),
		MaxStorageBufferRange:  uint32(p.max_storage_buffer_range),
		MaxWorkgroupInvocs:     uint32(p.max_workgroup_invocations),
		MaxPushConstants:       uint32(p.max_push_constants),
		StorageAlignment:       uint64(p.min_storage_buffer_offset_alignment),
		MaxTexelBufferElements: uint32(p.max_texel_buffer_elements),
		TexelAlignment:         uint64(p.min_texel_buffer_offset_alignment),
		TimestampPeriod:        float32(p.timestamp_period),
		Timestamps:             p.timestamp_valid_bits > 0,
		CooperativeMatrix:      p.cooperative_matrix != 0,
		Float16:                p.float16 != 0,
		BFloat16:               p.bfloat16 != 0,
		PushDescriptor:         p.push_descriptor != 0,
		nonCoherentAtm:         uint64(p.non_coherent_atom_size),
	}
	if p.compute_queue_family >= 0 {
		info.queueFamily = uint32(p.compute_queue_family)
	}
	info.TypeName = info.Type.String()
	info.API = info.APIVersion.String()
	for i := range info.cacheUUID {
		info.cacheUUID[i] = byte(p.pipeline_cache_uuid[i])
	}
	for i := 0; i < 3; i++ {
		info.MaxWorkgroupCount[i] = uint32(p.max_workgroup_count[i])
		info.MaxWorkgroupSize[i] = uint32(p.max_workgroup_size[i])
	}
	for i := 0; i < int(p.heap_count); i++ {
		info.MemoryHeaps = append(info.MemoryHeaps, MemoryHeap{
			Size:        uint64(p.heap_size[i]),
			DeviceLocal: p.heap_flags[i]&C.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT != 0,
		})
	}
	return info
}

// Devices lists the Vulkan devices that have a compute queue. It returns an
// error wrapping ErrNoLoader when no loader is installed; an empty list is
// not an error.
func Devices() ([]DeviceInfo, error) {
	if err := initInstance(); err != nil {
		return nil, err
	}
	return append([]DeviceInfo(nil), instance.infos...), nil
}

// CPUEngine is the device selector word that picks the plain-Go reference
// engine instead of a Vulkan device.
const CPUEngine = "cpu"

// Choice is the outcome of device selection: either the CPU reference engine
// or one Vulkan device.
type Choice struct {
	CPU    bool
	Device DeviceInfo // valid when CPU is false
	// Reason says why the default fell back to the CPU engine, if it did.
	Reason string
}

func (c Choice) String() string {
	if c.CPU {
		return "cpu (plain-Go reference engine)"
	}
	return fmt.Sprintf("%d: %s (%s)", c.Device.Index, c.Device.Name, c.Device.Type)
}

// SelectorFromEnv returns flagValue when it is set, else U2NET_DEVICE.
func SelectorFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("U2NET_DEVICE")
}

// Choose picks a device by selector: "" for the default (discrete >
// integrated > virtual > CPU implementation, and the CPU reference engine
// when Vulkan has no device), "cpu" for the reference engine, a number for
// the device of that index, anything else for the first device whose name
// contains it (case-insensitive). The word "cpu" never loads Vulkan.
func Choose(selector string) (Choice, error) {
	sel := strings.TrimSpace(selector)
	if strings.EqualFold(sel, CPUEngine) {
		return Choice{CPU: true}, nil
	}
	devs, err := Devices()
	if err != nil {
		if sel == "" && !RequireGPU() {
			return Choice{CPU: true, Reason: err.Error()}, nil
		}
		return Choice{}, err
	}
	c, err := chooseFrom(devs, sel)
	if errors.Is(err, ErrNoDevice) && sel == "" && !RequireGPU() {
		return Choice{CPU: true, Reason: err.Error()}, nil
	}
	return c, err
}

// RequireGPU reports whether U2NET_REQUIRE_GPU asks that a missing Vulkan
// device be an error rather than a fall-back (tests set it in CI).
func RequireGPU() bool {
	v := os.Getenv("U2NET_REQUIRE_GPU")
	return v != "" && v != "0" && v != "false"
}

func chooseFrom(devs []DeviceInfo, sel string) (Choice, error) {
	if len(devs) == 0 {
		return Choice{}, ErrNoDevice
	}
	if sel == "" {
		best := devs[0]
		for _, d := range devs[1:] {
			if d.Type.preference() < best.Type.preference() {
				best = d
			}
		}
		return Choice{Device: best}, nil
	}
	if i, err := strconv.Atoi(sel); err == nil {
		for _, d := range devs {
			if d.Index == i {
				return Choice{Device: d}, nil
			}
		}
		return Choice{}, fmt.Errorf("vk: device %d does not exist; %s", i, listNames(devs))
	}
	for _, d := range devs {
		if strings.Contains(strings.ToLower(d.Name), strings.ToLower(sel)) {
			return Choice{Device: d}, nil
		}
	}
	return Choice{}, fmt.Errorf("vk: no device name contains %q; %s", sel, listNames(devs))
}

func listNames(devs []DeviceInfo) string {
	var b strings.Builder
	b.WriteString("devices are: ")
	for i, d := range devs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %q", d.Index, d.Name)
	}
	b.WriteString(`, and "cpu" for the reference engine`)
	return b.String()
}
