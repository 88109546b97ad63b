#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// norm_apply: the instance norm's elementwise pass, VPI vec4s (VEC4, when V
// is a multiple of 4) or elements per invocation, u = x (+ r):
//   MODE 0: y = act(gamma·(u − mean)·invStd + beta), act = LeakyReLU or none;
//   MODE 1: dx = invStd·gamma·(g − mean(g) − x̂·mean(g·x̂)), the gradient of
//           x and of the residual, with g = dy through the LeakyReLU and the
//           means from coef (norm_combine, MODE 1).
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WY = 1;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const bool VEC4 = true;
layout(constant_id = 4) const uint MODE = 0;
// Specialization constants, not push constants: see norm_stats.
layout(constant_id = 5) const bool RESIDUAL = false;
layout(constant_id = 6) const bool LEAKY = false;
// Items (vec4s or elements) per invocation, all in one plane: a CPU device
// loads the plane's statistics and the channel's parameters a lane at a
// time, so each invocation loads them once for VPI items.
layout(constant_id = 7) const uint VPI = 1;

const uint LW = VEC4 ? 4 : 1;

#include "inputs.glsl"
INPUT(0, x)
INPUT(1, r)
INPUT(2, dy)
layout(std430, binding = 3) readonly buffer Gamma { float gamma[]; };
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
layout(std430, binding = 5) readonly buffer Mean { float mean[]; };
layout(std430, binding = 6) readonly buffer InvStd { float invStd[]; };
layout(std430, binding = 7) readonly buffer Coef { vec2 coef[]; };
layout(std430, binding = 8) writeonly buffer Y { float y[]; };
layout(std430, binding = 8) writeonly buffer Y4 { vec4 y4[]; };
layout(push_constant) uniform Push {
    uint nc, c, v;
    uint ch, chunks;
    uint hasA, hasB;
    float slope, eps;
} p;

void main() {
    uint i0 = ((gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x) * VPI;
    if (i0 * LW >= p.nc * p.v) {
        return;
    }
    uint nc = i0 * LW / p.v;
    uint c = nc % p.c;
    vec2 st = vec2(mean[nc], invStd[nc]);
    float ga = gamma[c], be = beta[c];
    vec2 cf = MODE == 1 ? coef[nc] : vec2(0.0);
    [[unroll]] for (uint k = 0; k < VPI; k++) {
        uint i = i0 + k;
        vec4 u;
        if (VEC4) {
            u = RESIDUAL ? x4(i) + r4(i) : x4(i);
        } else {
            u = vec4(RESIDUAL ? x(i) + r(i) : x(i));
        }
        vec4 xh = (u - st.x) * st.y;
        vec4 z = ga * xh + be;
        bvec4 pos = greaterThan(z, vec4(0.0));
        vec4 o;
        if (MODE == 0) {
            o = LEAKY ? mix(z * p.slope, z, pos) : z;
        } else {
            vec4 gv = VEC4 ? dy4(i) : vec4(dy(i));
            if (LEAKY) {
                gv = mix(gv * p.slope, gv, pos);
            }
            o = (st.y * ga) * (gv - cf.x - xh * cf.y);
        }
        if (VEC4) {
            y4[i] = o;
        } else {
            y[i] = o.x;
        }
    }
}
