#version 450
// elementwise: one element per invocation, the operation chosen by the
// specialization constant MODE:
//   0 axpy           y = s·a + y
//   1 add            y = a + b          (y may alias a or b)
//   2 leaky_relu     y = a > 0 ? a : s·a
//   3 leaky_backward y = a > 0 ? b : s·b (a = forward input, b = dy)
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(push_constant) uniform Push {
    uint n;
    float s;
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    if (MODE == 0) {
        y[i] = fma(p.s, a[i], y[i]);
    } else if (MODE == 1) {
        y[i] = a[i] + b[i];
    } else if (MODE == 2) {
        float x = a[i];
        y[i] = x > 0.0 ? x : p.s * x;
    } else {
        float g = b[i];
        y[i] = a[i] > 0.0 ? g : p.s * g;
    }
}
