// Small C layer under package vk: loading libvulkan.so.1 with dlopen, the
// instance with its validation chain, and the Vulkan 1.1+ property and feature
// queries whose pNext chains vulkan-go cannot build.
#ifndef U2NET_VK_SHIM_H
#define U2NET_VK_SHIM_H

#define VK_NO_PROTOTYPES
#include <stdint.h>
#include <vulkan/vulkan.h>

// u2_load opens the Vulkan loader and finds vkGetInstanceProcAddr. It returns
// 0 on success and writes a reason into err otherwise.
int u2_load(char *err, int errlen);
void *u2_get_instance_proc_addr(void);
uint32_t u2_instance_version(void);

// u2_create_instance creates the process's instance. With validate set it
// enables VK_LAYER_KHRONOS_validation with synchronization validation and a
// messenger that stores every warning and error for u2_take_message.
VkResult u2_create_instance(uint32_t api_version, int validate, VkInstance *out, char *err, int errlen);
void u2_destroy_instance(VkInstance inst);

// u2_take_message copies the oldest stored validation message into buf and
// returns 1, or returns 0 when there is none.
int u2_take_message(char *buf, int buflen);
int u2_message_count(void);

typedef struct {
	uint32_t api_version;
	uint32_t driver_version;
	uint32_t vendor_id;
	uint32_t device_id;
	uint32_t device_type;
	char name[256];
	char driver_name[256];
	char driver_info[256];
	uint32_t subgroup_size;
	uint32_t max_shared_memory;
	uint32_t max_storage_buffer_range;
	uint32_t max_workgroup_count[3];
	uint32_t max_workgroup_size[3];
	uint32_t max_workgroup_invocations;
	uint32_t max_push_constants;
	uint64_t min_storage_buffer_offset_alignment;
	uint32_t max_texel_buffer_elements;
	uint64_t min_texel_buffer_offset_alignment;
	uint64_t non_coherent_atom_size;
	uint8_t pipeline_cache_uuid[VK_UUID_SIZE];
	float timestamp_period;
	uint32_t timestamp_valid_bits; // of the chosen compute queue family
	int32_t compute_queue_family;  // -1 when none
	int cooperative_matrix;
	int float16;
	int bfloat16;
	int push_descriptor;
	uint32_t heap_count;
	uint64_t heap_size[VK_MAX_MEMORY_HEAPS];
	uint32_t heap_flags[VK_MAX_MEMORY_HEAPS];
} u2_props;

// u2_query fills p for the physical device.
void u2_query(VkInstance inst, VkPhysicalDevice phys, u2_props *p);

// u2_create_device creates a device with one compute queue of the family.
VkResult u2_create_device(VkInstance inst, VkPhysicalDevice phys, uint32_t family, VkDevice *out);

#endif

// Device-level entry points used while recording, looked up once per device
// so that a dispatch is one cgo call.
typedef struct u2_dev u2_dev;
u2_dev *u2_dev_load(VkInstance inst, VkDevice dev);
void u2_dev_free(u2_dev *d);

// Descriptor types of kernel bindings (u2_create_kernel, u2_write_set).
enum { U2_STORAGE = 0, U2_TEXEL = 1 };

// u2_write_set points bindings 0..n-1 of set at the given buffer ranges,
// or for U2_TEXEL bindings at the given buffer views.
void u2_write_set(u2_dev *d, VkDescriptorSet set, uint32_t n, const uint32_t *types, const uint64_t *buffers,
	const uint64_t *offsets, const uint64_t *ranges, const uint64_t *views);

// u2_create_view creates a view of range bytes of buffer from offset as
// texels of format; u2_destroy_view destroys one.
VkResult u2_create_view(u2_dev *d, VkBuffer buffer, uint64_t offset, uint64_t range, VkFormat format,
	VkBufferView *out);
void u2_destroy_view(u2_dev *d, VkBufferView view);

// u2_dispatch binds pipeline and set, pushes constants and dispatches.
void u2_dispatch(u2_dev *d, VkCommandBuffer cb, VkPipeline pipe, VkPipelineLayout layout, VkDescriptorSet set,
	const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz);

// u2_barrier records one global memory barrier (an execution dependency only
// when both access masks are zero).
void u2_barrier(u2_dev *d, VkCommandBuffer cb, uint32_t src_stage, uint32_t dst_stage, uint32_t src_access,
	uint32_t dst_access);

// u2_set_name names an object in validation messages (VK_EXT_debug_utils);
// without the extension it does nothing.
void u2_set_name(VkInstance inst, VkDevice dev, VkObjectType type, uint64_t handle, const char *name);

// u2_submit submits one command buffer, signalling fence (may be null).
VkResult u2_submit(u2_dev *d, VkQueue queue, VkCommandBuffer cb, VkFence fence);

// u2_create_pool creates a descriptor pool of storage and uniform texel
// buffers, descriptors of each.
VkResult u2_create_pool(u2_dev *d, uint32_t max_sets, uint32_t descriptors, VkDescriptorPool *out);

// u2_alloc_set allocates one descriptor set of layout from pool.
VkResult u2_alloc_set(u2_dev *d, VkDescriptorPool pool, VkDescriptorSetLayout layout, VkDescriptorSet *out);

// u2_kernel holds the objects of one compute pipeline.
typedef struct {
	VkShaderModule module;
	VkDescriptorSetLayout set_layout;
	VkPipelineLayout layout;
	VkPipeline pipeline;
} u2_kernel;

// u2_create_kernel builds a compute pipeline whose bindings 0..nbind-1 are
// storage or uniform texel buffers (types), with push_size bytes of push
// constants and nspec 32-bit
// specialization constants (ids 0..nspec-1). On failure the objects made so
// far are destroyed and their handles left null.
VkResult u2_create_kernel(u2_dev *d, const uint32_t *code, size_t code_size, const uint32_t *types, uint32_t nbind,
	uint32_t push_size,
	const uint32_t *spec, uint32_t nspec, VkPipelineCache cache, u2_kernel *out);
void u2_destroy_kernel(u2_dev *d, u2_kernel *k);
