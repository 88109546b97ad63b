// Package shaders holds the project's GLSL compute kernels and their SPIR-V,
// compiled by "make shaders" with glslc (target Vulkan 1.1) and embedded into
// the binary. "make check-shaders" proves that the committed .spv files match
// their sources.
//
// Conventions of every kernel: one GLSL file per kernel family; workgroup and
// tile sizes are specialization constants (ids 0, 1, 2 are the workgroup
// size), shapes are push constants, all bindings are std430 storage buffers in
// descriptor set 0, and large 1-D grids are flattened onto x and y.
//
// A family that declares its read-only tensors with inputs.glsl's INPUT is
// also compiled with -DTEXEL into NAME.texel.spv, whose inputs are uniform
// texel buffers: CPU implementations fetch texels for all SIMD lanes with
// vector gathers, where they load storage buffers a lane at a time.
package shaders

import (
	"embed"
	"fmt"
)

//go:embed *.spv
var files embed.FS

// SPIRV returns the compiled module of the kernel family name (the file name
// without ".comp").
func SPIRV(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".spv")
	if err != nil {
		return nil, fmt.Errorf("shaders: no compiled kernel %q (run make shaders)", name)
	}
	return b, nil
}
