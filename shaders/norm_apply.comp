#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// norm_apply: the instance norm's elementwise pass, VPI vec4s (VEC4, when V
// is a multiple of 4) or elements per invocation, x̂ = (x − mean)·invStd and
// z = gamma·x̂ + beta (+ r):
//   MODE 0: y = act(z), act = LeakyReLU or none;
//   MODE 1: with OUT_X, dx = invStd·gamma·(g − mean(g) − x̂·mean(g·x̂)), with
//           g = dy through the LeakyReLU and the means from coef
//           (norm_combine, MODE 1); with OUT_R, the residual's gradient
//           dr = g.
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
// Which outputs MODE 1 writes: dx (binding 8) and dr (binding 9).
layout(constant_id = 8) const bool OUT_X = true;
layout(constant_id = 9) const bool OUT_R = false;

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
layout(std430, binding = 9) writeonly buffer DR { float dr[]; };
layout(std430, binding = 9) writeonly buffer DR4 { vec4 dr4[]; };
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
        vec4 xh = ((VEC4 ? x4(i) : vec4(x(i))) - st.x) * st.y;
        vec4 z = ga * xh + be;
        // The backward pass needs z only for the LeakyReLU's derivative.
        if (RESIDUAL && (MODE == 0 || LEAKY)) {
            z += VEC4 ? r4(i) : vec4(r(i));
        }
        bvec4 pos = greaterThan(z, vec4(0.0));
        vec4 o;
        if (MODE == 0) {
            o = LEAKY ? mix(z * p.slope, z, pos) : z;
        } else {
            vec4 gv = VEC4 ? dy4(i) : vec4(dy(i));
            if (LEAKY) {
                gv = mix(gv * p.slope, gv, pos);
            }
            if (OUT_R) {
                if (VEC4) {
                    dr4[i] = gv;
                } else {
                    dr[i] = gv.x;
                }
            }
            o = (st.y * ga) * (gv - cf.x - xh * cf.y);
        }
        if (MODE == 0 || OUT_X) {
            if (VEC4) {
                y4[i] = o;
            } else {
                y[i] = o.x;
            }
        }
    }
}
