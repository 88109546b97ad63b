#version 450
// conv_splitk: the second pass of a split-K product. Element i of
// the result is the sum of the partials part[s·n + i] for s = 0 .. splits−1,
// added in that order by one invocation: deterministic, no atomics.
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) readonly buffer Part { float part[]; };
layout(std430, binding = 1) writeonly buffer Out { float outv[]; };
layout(push_constant) uniform Push {
    uint n;      // elements of the result
    uint splits; // partials per element
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    float s = 0.0;
    for (uint j = 0; j < p.splits; j++) {
        s += part[j * p.n + i];
    }
    outv[i] = s;
}
