#version 450
#extension GL_GOOGLE_include_directive : require
// elementwise: one element (or one vec4 when VEC4 is set and the length is
// a multiple of 4) per invocation, the operation chosen by the
// specialization constant MODE:
//   0 axpy           y = s·a + y
//   1 add            y = a + b          (y may alias a or b)
//   2 leaky_relu     y = a > 0 ? a : s·a
//   3 leaky_backward y = a > 0 ? b : s·b (a = forward input, b = dy)
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const bool VEC4 = false;

#include "inputs.glsl"
INPUT(0, a)
INPUT(1, b)
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer Y4 { vec4 y4[]; };
// axpy reads y too, through read-only views of the same binding.
layout(std430, binding = 2) readonly buffer YIn { float yIn[]; };
layout(std430, binding = 2) readonly buffer YIn4 { vec4 yIn4[]; };
layout(push_constant) uniform Push {
    uint n; // items: elements, or vec4s with VEC4
    float s;
} p;

vec4 apply(vec4 av, vec4 bv, vec4 yv) {
    if (MODE == 0) {
        return fma(vec4(p.s), av, yv);
    } else if (MODE == 1) {
        return av + bv;
    } else if (MODE == 2) {
        return mix(p.s * av, av, greaterThan(av, vec4(0.0)));
    }
    return mix(p.s * bv, bv, greaterThan(av, vec4(0.0)));
}

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    if (VEC4) {
        vec4 av = a4(i);
        vec4 bv = (MODE == 1 || MODE == 3) ? b4(i) : vec4(0.0);
        vec4 yv = MODE == 0 ? yIn4[i] : vec4(0.0);
        y4[i] = apply(av, bv, yv);
    } else {
        float av = a(i);
        float bv = (MODE == 1 || MODE == 3) ? b(i) : 0.0;
        float yv = MODE == 0 ? yIn[i] : 0.0;
        y[i] = apply(vec4(av), vec4(bv), vec4(yv)).x;
    }
}
