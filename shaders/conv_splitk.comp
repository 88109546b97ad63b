#version 450
#extension GL_GOOGLE_include_directive : require
// conv_splitk: the second pass of a split reduction (a split-K product, a
// pointwise weight gradient). Element i of the result is the sum of the
// partials part[offset + s·stride + i] for s = 0 .. splits−1; elements from
// n1 on go to a second result (a bias gradient after the weights').
// R lanes share each element (R a power of two, 1 when the elements alone
// fill the device): lane r adds the partials s ≡ r (mod R) in order, then
// the lanes meet in a fixed tree in shared memory. Deterministic, no
// atomics; a product of few elements split many ways (a weight gradient)
// still spreads over many invocations. With ACC the first result's sums
// are added to its contents (an input gradient's second contribution).
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 3) const uint R = 1;
layout(constant_id = 4) const bool ACC = false;

const uint OUT = WG / R; // elements per workgroup

#include "inputs.glsl"
INPUT(0, part)
layout(std430, binding = 1) writeonly buffer Out { float outv[]; };
layout(std430, binding = 1) readonly buffer OutAcc { float outAcc[]; }; // ACC: the contents
layout(std430, binding = 2) writeonly buffer Out2 { float out2[]; };
layout(push_constant) uniform Push {
    uint n;      // elements of both results
    uint splits; // partials per element
    uint stride; // floats between one split's partials and the next's
    uint offset; // of the first split's partial of element 0
    uint n1;     // elements of the first result
} p;

shared float red[R > 1 ? WG : 1];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint io = lid % OUT;
    uint r = lid / OUT;
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * OUT + io;
    bool live = i < p.n;
    float s = 0.0;
    if (live) {
        for (uint j = r; j < p.splits; j += R) {
            s += part(p.offset + j * p.stride + i);
        }
    }
    if (R > 1) {
        red[lid] = s;
        barrier();
        for (uint h = R / 2; h > 0; h >>= 1) {
            if (r < h) {
                red[lid] += red[lid + h * OUT];
            }
            barrier();
        }
        s = red[io];
    }
    if (live && r == 0) {
        if (i < p.n1) {
            outv[i] = ACC ? outAcc[i] + s : s;
        } else {
            out2[i - p.n1] = s;
        }
    }
}
