#include "shim.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PFN_vkGetInstanceProcAddr gipa;

int u2_load(char *err, int errlen) {
	if (gipa) {
		return 0;
	}
	const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
	void *lib = NULL;
	const char *why = "";
	for (int i = 0; i < 2 && !lib; i++) {
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (!lib) {
			why = dlerror();
		}
	}
	if (!lib) {
		snprintf(err, errlen, "%s", why ? why : "dlopen failed");
		return 1;
	}
	gipa = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
	if (!gipa) {
		snprintf(err, errlen, "libvulkan.so.1 has no vkGetInstanceProcAddr");
		return 1;
	}
	return 0;
}

void *u2_get_instance_proc_addr(void) { return (void *)gipa; }

uint32_t u2_instance_version(void) {
	PFN_vkEnumerateInstanceVersion f =
		(PFN_vkEnumerateInstanceVersion)gipa(NULL, "vkEnumerateInstanceVersion");
	uint32_t v = VK_API_VERSION_1_0;
	if (f && f(&v) != VK_SUCCESS) {
		v = VK_API_VERSION_1_0;
	}
	return v;
}

// Validation messages wait in a bounded queue until Go takes them.
#define U2_MAX_MESSAGES 256
static pthread_mutex_t msg_mu = PTHREAD_MUTEX_INITIALIZER;
static char *messages[U2_MAX_MESSAGES];
static int msg_head, msg_count, msg_dropped;

static void push_message(const char *text) {
	pthread_mutex_lock(&msg_mu);
	if (msg_count == U2_MAX_MESSAGES) {
		msg_dropped++;
	} else {
		messages[(msg_head + msg_count) % U2_MAX_MESSAGES] = strdup(text);
		msg_count++;
	}
	pthread_mutex_unlock(&msg_mu);
}

int u2_take_message(char *buf, int buflen) {
	int got = 0;
	pthread_mutex_lock(&msg_mu);
	if (msg_count > 0) {
		char *m = messages[msg_head];
		messages[msg_head] = NULL;
		msg_head = (msg_head + 1) % U2_MAX_MESSAGES;
		msg_count--;
		snprintf(buf, buflen, "%s", m ? m : "");
		free(m);
		got = 1;
	} else if (msg_dropped > 0) {
		snprintf(buf, buflen, "%d further validation messages were dropped", msg_dropped);
		msg_dropped = 0;
		got = 1;
	}
	pthread_mutex_unlock(&msg_mu);
	return got;
}

int u2_message_count(void) {
	pthread_mutex_lock(&msg_mu);
	int n = msg_count + (msg_dropped > 0);
	pthread_mutex_unlock(&msg_mu);
	return n;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
	VkDebugUtilsMessageTypeFlagsEXT types, const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
	(void)types;
	(void)user;
	const char *level = severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error" : "warning";
	char text[4096];
	snprintf(text, sizeof text, "validation %s: %s", level, data && data->pMessage ? data->pMessage : "(no text)");
	push_message(text);
	return VK_FALSE;
}

static VkDebugUtilsMessengerEXT messenger;

static int has_layer(const char *name) {
	PFN_vkEnumerateInstanceLayerProperties f =
		(PFN_vkEnumerateInstanceLayerProperties)gipa(NULL, "vkEnumerateInstanceLayerProperties");
	uint32_t n = 0;
	if (!f || f(&n, NULL) != VK_SUCCESS || n == 0) {
		return 0;
	}
	VkLayerProperties *ps = calloc(n, sizeof *ps);
	int found = 0;
	if (ps && f(&n, ps) == VK_SUCCESS) {
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(ps[i].layerName, name) == 0) {
				found = 1;
			}
		}
	}
	free(ps);
	return found;
}

VkResult u2_create_instance(uint32_t api_version, int validate, VkInstance *out, char *err, int errlen) {
	PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(NULL, "vkCreateInstance");
	if (!create) {
		snprintf(err, errlen, "the Vulkan loader has no vkCreateInstance");
		return VK_ERROR_INITIALIZATION_FAILED;
	}
	VkApplicationInfo app = {
		.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
		.pApplicationName = "u2net",
		.applicationVersion = 1,
		.pEngineName = "u2net",
		.engineVersion = 1,
		.apiVersion = api_version,
	};
	const char *layers[] = {"VK_LAYER_KHRONOS_validation"};
	const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
	VkValidationFeatureEnableEXT enables[] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
	VkValidationFeaturesEXT features = {
		.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
		.enabledValidationFeatureCount = 1,
		.pEnabledValidationFeatures = enables,
	};
	VkDebugUtilsMessengerCreateInfoEXT mci = {
		.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
		.pNext = &features,
		.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
		.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
			VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
		.pfnUserCallback = on_message,
	};
	VkInstanceCreateInfo ci = {
		.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
		.pApplicationInfo = &app,
	};
	if (validate) {
		if (!has_layer(layers[0])) {
			snprintf(err, errlen,
				"validation was asked for but VK_LAYER_KHRONOS_validation is not installed "
				"(Debian/Ubuntu: apt-get install vulkan-validationlayers)");
			return VK_ERROR_LAYER_NOT_PRESENT;
		}
		ci.pNext = &mci;
		ci.enabledLayerCount = 1;
		ci.ppEnabledLayerNames = layers;
		ci.enabledExtensionCount = 1;
		ci.ppEnabledExtensionNames = exts;
	}
	VkResult r = create(&ci, NULL, out);
	if (r != VK_SUCCESS) {
		snprintf(err, errlen, "vkCreateInstance failed");
		return r;
	}
	if (validate) {
		PFN_vkCreateDebugUtilsMessengerEXT cm =
			(PFN_vkCreateDebugUtilsMessengerEXT)gipa(*out, "vkCreateDebugUtilsMessengerEXT");
		mci.pNext = NULL;
		if (!cm || cm(*out, &mci, NULL, &messenger) != VK_SUCCESS) {
			snprintf(err, errlen, "vkCreateDebugUtilsMessengerEXT failed");
			return VK_ERROR_INITIALIZATION_FAILED;
		}
	}
	return VK_SUCCESS;
}

void u2_destroy_instance(VkInstance inst) {
	if (messenger) {
		PFN_vkDestroyDebugUtilsMessengerEXT dm =
			(PFN_vkDestroyDebugUtilsMessengerEXT)gipa(inst, "vkDestroyDebugUtilsMessengerEXT");
		if (dm) {
			dm(inst, messenger, NULL);
		}
		messenger = VK_NULL_HANDLE;
	}
	PFN_vkDestroyInstance d = (PFN_vkDestroyInstance)gipa(inst, "vkDestroyInstance");
	if (d) {
		d(inst, NULL);
	}
}

// Structures newer than the system headers, declared from the registry.
#define U2_STYPE_COOPMAT_FEATURES_KHR 1000506000
#define U2_STYPE_BFLOAT16_FEATURES_KHR 1000141000
typedef struct {
	VkStructureType sType;
	void *pNext;
	VkBool32 cooperativeMatrix;
	VkBool32 cooperativeMatrixRobustBufferAccess;
} u2_coopmat_features;
typedef struct {
	VkStructureType sType;
	void *pNext;
	VkBool32 shaderBFloat16Type;
	VkBool32 shaderBFloat16DotProduct;
	VkBool32 shaderBFloat16CooperativeMatrix;
} u2_bfloat16_features;

static int has_extension(VkInstance inst, VkPhysicalDevice phys, const char *name) {
	PFN_vkEnumerateDeviceExtensionProperties f =
		(PFN_vkEnumerateDeviceExtensionProperties)gipa(inst, "vkEnumerateDeviceExtensionProperties");
	uint32_t n = 0;
	if (!f || f(phys, NULL, &n, NULL) != VK_SUCCESS || n == 0) {
		return 0;
	}
	VkExtensionProperties *ps = calloc(n, sizeof *ps);
	int found = 0;
	if (ps && f(phys, NULL, &n, ps) == VK_SUCCESS) {
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(ps[i].extensionName, name) == 0) {
				found = 1;
			}
		}
	}
	free(ps);
	return found;
}

void u2_query(VkInstance inst, VkPhysicalDevice phys, u2_props *p) {
	memset(p, 0, sizeof *p);
	PFN_vkGetPhysicalDeviceProperties props10 =
		(PFN_vkGetPhysicalDeviceProperties)gipa(inst, "vkGetPhysicalDeviceProperties");
	VkPhysicalDeviceProperties base;
	props10(phys, &base);
	p->api_version = base.apiVersion;
	p->driver_version = base.driverVersion;
	p->vendor_id = base.vendorID;
	p->device_id = base.deviceID;
	p->device_type = base.deviceType;
	snprintf(p->name, sizeof p->name, "%s", base.deviceName);
	p->max_shared_memory = base.limits.maxComputeSharedMemorySize;
	p->max_storage_buffer_range = base.limits.maxStorageBufferRange;
	for (int i = 0; i < 3; i++) {
		p->max_workgroup_count[i] = base.limits.maxComputeWorkGroupCount[i];
		p->max_workgroup_size[i] = base.limits.maxComputeWorkGroupSize[i];
	}
	p->max_workgroup_invocations = base.limits.maxComputeWorkGroupInvocations;
	p->max_push_constants = base.limits.maxPushConstantsSize;
	p->min_storage_buffer_offset_alignment = base.limits.minStorageBufferOffsetAlignment;
	p->max_texel_buffer_elements = base.limits.maxTexelBufferElements;
	p->min_texel_buffer_offset_alignment = base.limits.minTexelBufferOffsetAlignment;
	p->non_coherent_atom_size = base.limits.nonCoherentAtomSize;
	p->timestamp_period = base.limits.timestampPeriod;
	memcpy(p->pipeline_cache_uuid, base.pipelineCacheUUID, VK_UUID_SIZE);

	PFN_vkGetPhysicalDeviceQueueFamilyProperties qf =
		(PFN_vkGetPhysicalDeviceQueueFamilyProperties)gipa(inst, "vkGetPhysicalDeviceQueueFamilyProperties");
	uint32_t nq = 0;
	qf(phys, &nq, NULL);
	VkQueueFamilyProperties *qs = calloc(nq ? nq : 1, sizeof *qs);
	p->compute_queue_family = -1;
	if (qs) {
		qf(phys, &nq, qs);
		// Prefer a compute queue without graphics: on discrete GPUs it is the
		// asynchronous compute engine; otherwise take the first compute family.
		for (uint32_t i = 0; i < nq; i++) {
			if ((qs[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qs[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) {
				p->compute_queue_family = (int32_t)i;
				break;
			}
		}
		if (p->compute_queue_family < 0) {
			for (uint32_t i = 0; i < nq; i++) {
				if (qs[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
					p->compute_queue_family = (int32_t)i;
					break;
				}
			}
		}
		if (p->compute_queue_family >= 0) {
			p->timestamp_valid_bits = qs[p->compute_queue_family].timestampValidBits;
		}
		free(qs);
	}

	PFN_vkGetPhysicalDeviceMemoryProperties mp =
		(PFN_vkGetPhysicalDeviceMemoryProperties)gipa(inst, "vkGetPhysicalDeviceMemoryProperties");
	VkPhysicalDeviceMemoryProperties mem;
	mp(phys, &mem);
	p->heap_count = mem.memoryHeapCount;
	for (uint32_t i = 0; i < mem.memoryHeapCount && i < VK_MAX_MEMORY_HEAPS; i++) {
		p->heap_size[i] = mem.memoryHeaps[i].size;
		p->heap_flags[i] = mem.memoryHeaps[i].flags;
	}

	int has11 = VK_API_VERSION_MINOR(base.apiVersion) >= 1 || VK_API_VERSION_MAJOR(base.apiVersion) > 1;
	int has12 = VK_API_VERSION_MINOR(base.apiVersion) >= 2 || VK_API_VERSION_MAJOR(base.apiVersion) > 1;
	p->push_descriptor = has_extension(inst, phys, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
	int coop_ext = has_extension(inst, phys, "VK_KHR_cooperative_matrix");
	int bf16_ext = has_extension(inst, phys, "VK_KHR_shader_bfloat16");
	int f16_ext = has12 || has_extension(inst, phys, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
	int drv_ext = has12 || has_extension(inst, phys, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
	if (!has11) {
		return;
	}

	PFN_vkGetPhysicalDeviceProperties2 props2 =
		(PFN_vkGetPhysicalDeviceProperties2)gipa(inst, "vkGetPhysicalDeviceProperties2");
	PFN_vkGetPhysicalDeviceFeatures2 feats2 =
		(PFN_vkGetPhysicalDeviceFeatures2)gipa(inst, "vkGetPhysicalDeviceFeatures2");
	if (props2) {
		VkPhysicalDeviceSubgroupProperties sub = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
		VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
		if (drv_ext) {
			sub.pNext = &drv;
		}
		VkPhysicalDeviceProperties2 pp = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sub};
		props2(phys, &pp);
		p->subgroup_size = sub.subgroupSize;
		if (drv_ext) {
			snprintf(p->driver_name, sizeof p->driver_name, "%s", drv.driverName);
			snprintf(p->driver_info, sizeof p->driver_info, "%s", drv.driverInfo);
		}
	}
	if (feats2) {
		VkPhysicalDeviceShaderFloat16Int8Features f16 = {
			.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
		u2_coopmat_features coop = {.sType = (VkStructureType)U2_STYPE_COOPMAT_FEATURES_KHR};
		u2_bfloat16_features bf16 = {.sType = (VkStructureType)U2_STYPE_BFLOAT16_FEATURES_KHR};
		void *chain = NULL;
		if (f16_ext) {
			f16.pNext = chain;
			chain = &f16;
		}
		if (coop_ext) {
			coop.pNext = chain;
			chain = &coop;
		}
		if (bf16_ext) {
			bf16.pNext = chain;
			chain = &bf16;
		}
		VkPhysicalDeviceFeatures2 ff = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = chain};
		feats2(phys, &ff);
		p->float16 = f16_ext && f16.shaderFloat16;
		p->cooperative_matrix = coop_ext && coop.cooperativeMatrix;
		p->bfloat16 = bf16_ext && bf16.shaderBFloat16Type;
	}
}

VkResult u2_create_device(VkInstance inst, VkPhysicalDevice phys, uint32_t family, VkDevice *out) {
	PFN_vkCreateDevice create = (PFN_vkCreateDevice)gipa(inst, "vkCreateDevice");
	float priority = 1.0f;
	VkDeviceQueueCreateInfo q = {
		.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
		.queueFamilyIndex = family,
		.queueCount = 1,
		.pQueuePriorities = &priority,
	};
	VkDeviceCreateInfo ci = {
		.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
		.queueCreateInfoCount = 1,
		.pQueueCreateInfos = &q,
	};
	return create(phys, &ci, NULL, out);
}

struct u2_dev {
	VkDevice dev;
	PFN_vkQueueSubmit queue_submit;
	PFN_vkCreateDescriptorPool create_pool;
	PFN_vkAllocateDescriptorSets alloc_sets;
	PFN_vkCreateShaderModule create_module;
	PFN_vkDestroyShaderModule destroy_module;
	PFN_vkCreateDescriptorSetLayout create_set_layout;
	PFN_vkDestroyDescriptorSetLayout destroy_set_layout;
	PFN_vkCreatePipelineLayout create_layout;
	PFN_vkDestroyPipelineLayout destroy_layout;
	PFN_vkCreateComputePipelines create_pipelines;
	PFN_vkDestroyPipeline destroy_pipeline;
	PFN_vkUpdateDescriptorSets update_sets;
	PFN_vkCmdBindPipeline bind_pipeline;
	PFN_vkCmdBindDescriptorSets bind_sets;
	PFN_vkCmdPushConstants push_constants;
	PFN_vkCmdDispatch dispatch;
	PFN_vkCmdPipelineBarrier barrier;
	PFN_vkCreateBufferView create_view;
	PFN_vkDestroyBufferView destroy_view;
};

u2_dev *u2_dev_load(VkInstance inst, VkDevice dev) {
	PFN_vkGetDeviceProcAddr gdpa = (PFN_vkGetDeviceProcAddr)gipa(inst, "vkGetDeviceProcAddr");
	if (!gdpa) {
		return NULL;
	}
	u2_dev *d = calloc(1, sizeof *d);
	if (!d) {
		return NULL;
	}
	d->dev = dev;
	d->update_sets = (PFN_vkUpdateDescriptorSets)gdpa(dev, "vkUpdateDescriptorSets");
	d->bind_pipeline = (PFN_vkCmdBindPipeline)gdpa(dev, "vkCmdBindPipeline");
	d->bind_sets = (PFN_vkCmdBindDescriptorSets)gdpa(dev, "vkCmdBindDescriptorSets");
	d->push_constants = (PFN_vkCmdPushConstants)gdpa(dev, "vkCmdPushConstants");
	d->dispatch = (PFN_vkCmdDispatch)gdpa(dev, "vkCmdDispatch");
	d->barrier = (PFN_vkCmdPipelineBarrier)gdpa(dev, "vkCmdPipelineBarrier");
	d->queue_submit = (PFN_vkQueueSubmit)gdpa(dev, "vkQueueSubmit");
	d->create_pool = (PFN_vkCreateDescriptorPool)gdpa(dev, "vkCreateDescriptorPool");
	d->alloc_sets = (PFN_vkAllocateDescriptorSets)gdpa(dev, "vkAllocateDescriptorSets");
	d->create_module = (PFN_vkCreateShaderModule)gdpa(dev, "vkCreateShaderModule");
	d->destroy_module = (PFN_vkDestroyShaderModule)gdpa(dev, "vkDestroyShaderModule");
	d->create_set_layout = (PFN_vkCreateDescriptorSetLayout)gdpa(dev, "vkCreateDescriptorSetLayout");
	d->destroy_set_layout = (PFN_vkDestroyDescriptorSetLayout)gdpa(dev, "vkDestroyDescriptorSetLayout");
	d->create_layout = (PFN_vkCreatePipelineLayout)gdpa(dev, "vkCreatePipelineLayout");
	d->destroy_layout = (PFN_vkDestroyPipelineLayout)gdpa(dev, "vkDestroyPipelineLayout");
	d->create_pipelines = (PFN_vkCreateComputePipelines)gdpa(dev, "vkCreateComputePipelines");
	d->destroy_pipeline = (PFN_vkDestroyPipeline)gdpa(dev, "vkDestroyPipeline");
	d->create_view = (PFN_vkCreateBufferView)gdpa(dev, "vkCreateBufferView");
	d->destroy_view = (PFN_vkDestroyBufferView)gdpa(dev, "vkDestroyBufferView");
	if (!d->update_sets || !d->bind_pipeline || !d->bind_sets || !d->push_constants || !d->dispatch || !d->barrier ||
		!d->queue_submit || !d->create_pool || !d->alloc_sets || !d->create_module || !d->destroy_module ||
		!d->create_set_layout || !d->destroy_set_layout || !d->create_layout || !d->destroy_layout ||
		!d->create_pipelines || !d->destroy_pipeline || !d->create_view || !d->destroy_view) {
		free(d);
		return NULL;
	}
	return d;
}

void u2_dev_free(u2_dev *d) { free(d); }

#define U2_MAX_BINDINGS 16

void u2_write_set(u2_dev *d, VkDescriptorSet set, uint32_t n, const uint32_t *types, const uint64_t *buffers,
	const uint64_t *offsets, const uint64_t *ranges, const uint64_t *views) {
	VkDescriptorBufferInfo infos[U2_MAX_BINDINGS];
	VkBufferView texels[U2_MAX_BINDINGS];
	VkWriteDescriptorSet writes[U2_MAX_BINDINGS];
	if (n > U2_MAX_BINDINGS) {
		n = U2_MAX_BINDINGS;
	}
	for (uint32_t i = 0; i < n; i++) {
		writes[i] = (VkWriteDescriptorSet){
			.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
			.dstSet = set,
			.dstBinding = i,
			.descriptorCount = 1,
		};
		if (types[i] == U2_TEXEL) {
			texels[i] = (VkBufferView)views[i];
			writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
			writes[i].pTexelBufferView = &texels[i];
		} else {
			infos[i] = (VkDescriptorBufferInfo){.buffer = (VkBuffer)buffers[i], .offset = offsets[i], .range = ranges[i]};
			writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
			writes[i].pBufferInfo = &infos[i];
		}
	}
	d->update_sets(d->dev, n, writes, 0, NULL);
}

VkResult u2_create_view(u2_dev *d, VkBuffer buffer, uint64_t offset, uint64_t range, VkFormat format,
	VkBufferView *out) {
	VkBufferViewCreateInfo ci = {
		.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
		.buffer = buffer,
		.format = format,
		.offset = offset,
		.range = range,
	};
	return d->create_view(d->dev, &ci, NULL, out);
}

void u2_destroy_view(u2_dev *d, VkBufferView view) { d->destroy_view(d->dev, view, NULL); }

void u2_dispatch(u2_dev *d, VkCommandBuffer cb, VkPipeline pipe, VkPipelineLayout layout, VkDescriptorSet set,
	const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz) {
	d->bind_pipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
	d->bind_sets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
	if (push_size > 0) {
		d->push_constants(cb, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
	}
	d->dispatch(cb, gx, gy, gz);
}

void u2_barrier(u2_dev *d, VkCommandBuffer cb, uint32_t src_stage, uint32_t dst_stage, uint32_t src_access,
	uint32_t dst_access) {
	VkMemoryBarrier mb = {
		.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
		.srcAccessMask = src_access,
		.dstAccessMask = dst_access,
	};
	int with_memory = src_access != 0 || dst_access != 0;
	d->barrier(cb, src_stage, dst_stage, 0, with_memory ? 1 : 0, with_memory ? &mb : NULL, 0, NULL, 0, NULL);
}

void u2_set_name(VkInstance inst, VkDevice dev, VkObjectType type, uint64_t handle, const char *name) {
	if (!messenger) {
		return;
	}
	PFN_vkSetDebugUtilsObjectNameEXT f =
		(PFN_vkSetDebugUtilsObjectNameEXT)gipa(inst, "vkSetDebugUtilsObjectNameEXT");
	if (!f) {
		return;
	}
	VkDebugUtilsObjectNameInfoEXT info = {
		.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_OBJECT_NAME_INFO_EXT,
		.objectType = type,
		.objectHandle = handle,
		.pObjectName = name,
	};
	f(dev, &info);
}

VkResult u2_submit(u2_dev *d, VkQueue queue, VkCommandBuffer cb, VkFence fence) {
	VkSubmitInfo si = {
		.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
		.commandBufferCount = 1,
		.pCommandBuffers = &cb,
	};
	return d->queue_submit(queue, 1, &si, fence);
}

VkResult u2_create_pool(u2_dev *d, uint32_t max_sets, uint32_t descriptors, VkDescriptorPool *out) {
	VkDescriptorPoolSize sizes[2] = {
		{.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = descriptors},
		{.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, .descriptorCount = descriptors},
	};
	VkDescriptorPoolCreateInfo ci = {
		.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
		.maxSets = max_sets,
		.poolSizeCount = 2,
		.pPoolSizes = sizes,
	};
	return d->create_pool(d->dev, &ci, NULL, out);
}

VkResult u2_alloc_set(u2_dev *d, VkDescriptorPool pool, VkDescriptorSetLayout layout, VkDescriptorSet *out) {
	VkDescriptorSetAllocateInfo ai = {
		.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
		.descriptorPool = pool,
		.descriptorSetCount = 1,
		.pSetLayouts = &layout,
	};
	return d->alloc_sets(d->dev, &ai, out);
}

void u2_destroy_kernel(u2_dev *d, u2_kernel *k) {
	if (k->pipeline) {
		d->destroy_pipeline(d->dev, k->pipeline, NULL);
	}
	if (k->layout) {
		d->destroy_layout(d->dev, k->layout, NULL);
	}
	if (k->set_layout) {
		d->destroy_set_layout(d->dev, k->set_layout, NULL);
	}
	if (k->module) {
		d->destroy_module(d->dev, k->module, NULL);
	}
	memset(k, 0, sizeof *k);
}

VkResult u2_create_kernel(u2_dev *d, const uint32_t *code, size_t code_size, const uint32_t *types, uint32_t nbind,
	uint32_t push_size,
	const uint32_t *spec, uint32_t nspec, VkPipelineCache cache, u2_kernel *out) {
	memset(out, 0, sizeof *out);
	VkShaderModuleCreateInfo mci = {
		.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
		.codeSize = code_size,
		.pCode = code,
	};
	VkResult r = d->create_module(d->dev, &mci, NULL, &out->module);
	if (r != VK_SUCCESS) {
		u2_destroy_kernel(d, out);
		return r;
	}
	VkDescriptorSetLayoutBinding binds[U2_MAX_BINDINGS];
	if (nbind > U2_MAX_BINDINGS) {
		nbind = U2_MAX_BINDINGS;
	}
	for (uint32_t i = 0; i < nbind; i++) {
		binds[i] = (VkDescriptorSetLayoutBinding){
			.binding = i,
			.descriptorType =
				types[i] == U2_TEXEL ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
			.descriptorCount = 1,
			.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
		};
	}
	VkDescriptorSetLayoutCreateInfo sci = {
		.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
		.bindingCount = nbind,
		.pBindings = binds,
	};
	if ((r = d->create_set_layout(d->dev, &sci, NULL, &out->set_layout)) != VK_SUCCESS) {
		u2_destroy_kernel(d, out);
		return r;
	}
	VkPushConstantRange range = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = push_size};
	VkPipelineLayoutCreateInfo lci = {
		.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
		.setLayoutCount = 1,
		.pSetLayouts = &out->set_layout,
		.pushConstantRangeCount = push_size > 0 ? 1 : 0,
		.pPushConstantRanges = push_size > 0 ? &range : NULL,
	};
	if ((r = d->create_layout(d->dev, &lci, NULL, &out->layout)) != VK_SUCCESS) {
		u2_destroy_kernel(d, out);
		return r;
	}
	VkSpecializationMapEntry entries[64];
	if (nspec > 64) {
		nspec = 64;
	}
	for (uint32_t i = 0; i < nspec; i++) {
		entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
	}
	VkSpecializationInfo si = {
		.mapEntryCount = nspec,
		.pMapEntries = entries,
		.dataSize = 4 * nspec,
		.pData = spec,
	};
	VkComputePipelineCreateInfo pci = {
		.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
		.stage =
			{
				.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
				.stage = VK_SHADER_STAGE_COMPUTE_BIT,
				.module = out->module,
				.pName = "main",
				.pSpecializationInfo = nspec > 0 ? &si : NULL,
			},
		.layout = out->layout,
	};
	if ((r = d->create_pipelines(d->dev, cache, 1, &pci, NULL, &out->pipeline)) != VK_SUCCESS) {
		u2_destroy_kernel(d, out);
		return r;
	}
	return VK_SUCCESS;
}
