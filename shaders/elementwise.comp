#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// elementwise: VPI elements (or vec4s when VEC4 is set and the length is
// a multiple of 4) per invocation, the operation chosen by the
// specialization constant MODE:
//   0 axpy           y = s·a + y
//   1 add            y = a + b          (y may alias a or b)
//   2 leaky_relu     y = a > 0 ? a : s·a
//   3 leaky_backward y = a > 0 ? b : s·b (a = forward input, b = dy)
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const bool VEC4 = false;
layout(constant_id = 3) const uint VPI = 1; // items per invocation

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
    // VPI items per invocation, each block of WG items one after the
    // other: all loads are issued before any result is stored, so an
    // invocation keeps VPI loads in flight (y may alias a or b: each item is
    // read before it is written, and by its own invocation only).
    uint i0 = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x * VPI + gl_LocalInvocationID.x;
    vec4 av[VPI], bv[VPI], yv[VPI];
    [[unroll]] for (uint k = 0; k < VPI; k++) {
        uint i = i0 + k * gl_WorkGroupSize.x;
        av[k] = bv[k] = yv[k] = vec4(0.0);
        if (i < p.n) {
            av[k] = VEC4 ? a4(i) : vec4(a(i));
            if (MODE == 1 || MODE == 3) {
                bv[k] = VEC4 ? b4(i) : vec4(b(i));
            }
            if (MODE == 0) {
                yv[k] = VEC4 ? yIn4[i] : vec4(yIn[i]);
            }
        }
    }
    [[unroll]] for (uint k = 0; k < VPI; k++) {
        uint i = i0 + k * gl_WorkGroupSize.x;
        if (i < p.n) {
            vec4 v = apply(av[k], bv[k], yv[k]);
            if (VEC4) {
                y4[i] = v;
            } else {
                y[i] = v.x;
            }
        }
    }
}
