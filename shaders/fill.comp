#version 450
// fill: y[i] = value for i < n. A test kernel of the runtime and the simplest
// example of the conventions: workgroup size as specialization constant 0,
// shapes in push constants, a 2-D grid flattened to a 1-D index.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push {
    uint n;
    float value;
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) {
        y[i] = p.value;
    }
}
