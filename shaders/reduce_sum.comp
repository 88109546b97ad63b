#version 450
// reduce_sum: one pass of a deterministic sum. Workgroup g sums the segment
// x[g*seg, min((g+1)*seg, n)) into partial[g]: each invocation adds a strided
// subset in a fixed order, then a fixed binary tree in shared memory combines
// them. No atomics, so the result has the same bits on every run. Running the
// pass again over the partials (one workgroup) gives the total.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256; // must be a power of two

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer P { float partial[]; };
layout(push_constant) uniform Push {
    uint n;
    uint seg; // elements per workgroup
} p;

shared float sums[WG];

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationID.x;
    uint begin = g * p.seg;
    uint end = min(begin + p.seg, p.n);
    float s = 0.0;
    for (uint i = begin + lid; i < end; i += WG) {
        s += x[i];
    }
    sums[lid] = s;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        barrier();
    }
    if (lid == 0 && begin < p.n) {
        partial[g] = sums[0];
    }
}
