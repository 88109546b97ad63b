#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// elementwise: PER elements (or vec4s when VEC4 is set and the length is
// a multiple of 4) per invocation, the operation chosen by the
// specialization constant MODE:
//   0 axpy           y = s·a + y
//   1 add            y = a + b          (y may alias a or b)
//   2 leaky_relu     y = a > 0 ? a : s·a
//   3 leaky_backward y = a > 0 ? b : s·b (a = forward input, b = dy)
// A workgroup covers WG·PER consecutive items, an invocation every WG-th of
// them from its own, so that each load and store of a subgroup is one
// contiguous run. With PER > 1 an invocation issues all its loads before it
// waits for one: more bytes in flight per invocation, for a device whose
// memory a load per invocation cannot keep busy.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const bool VEC4 = false;
layout(constant_id = 3) const uint PER = 1;

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
    uint wg = gl_WorkGroupSize.x;
    uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * wg * PER + gl_LocalInvocationID.x;
    vec4 av[PER], bv[PER], yv[PER];
    [[unroll]] for (uint k = 0; k < PER; k++) {
        uint i = first + k * wg;
        av[k] = bv[k] = yv[k] = vec4(0.0);
        if (i < p.n) {
            if (VEC4) {
                av[k] = a4(i);
                bv[k] = (MODE == 1 || MODE == 3) ? b4(i) : vec4(0.0);
                yv[k] = MODE == 0 ? yIn4[i] : vec4(0.0);
            } else {
                av[k].x = a(i);
                bv[k].x = (MODE == 1 || MODE == 3) ? b(i) : 0.0;
                yv[k].x = MODE == 0 ? yIn[i] : 0.0;
            }
        }
    }
    [[unroll]] for (uint k = 0; k < PER; k++) {
        uint i = first + k * wg;
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
