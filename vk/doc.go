// Package vk is the project's small Vulkan compute runtime: it loads the
// Vulkan loader at run time, lists and chooses devices, sub-allocates
// device-local memory, builds compute pipelines from embedded SPIR-V and
// records many dispatches and copies into one submission with exactly the
// barriers their reads and writes need.
//
// The vocabulary is four nouns:
//
//   - Device: one opened physical device with its queue, memory and caches.
//   - Buffer: a range of device-local memory, sub-allocated from large blocks.
//   - Kernel: a compute pipeline for one SPIR-V module and one set of
//     specialization constants, with the access mode of each binding: a
//     storage buffer, or a read-only uniform texel buffer of one or four
//     floats per texel (its views are made on first use and kept until the
//     buffer is released).
//   - Batch: a recording of dispatches, copies, uploads and downloads that is
//     submitted at once and waited for with a fence.
//
// Nothing here knows about convolutions or tensors' meaning: buffers are
// bytes, kernels are opaque.
//
// Environment: U2NET_DEVICE chooses the device when no explicit choice is
// given; U2NET_VK_VALIDATE=1 enables the Khronos validation layer with
// synchronization validation, and every message it prints becomes an error
// returned by the next Run or Close.
package vk
