#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// norm_stats: first pass of the instance norm's per-(n, c) reductions, split
// into chunks of CH = WG·VPT·LW voxels so that a few large planes still fill
// the GPU. Workgroup g = nc·chunks + j reads chunk j of plane nc and writes
// two values to partial[2g ..]:
//   MODE 0: the chunk's mean and M2 = Σ (x − mean)², computed in two passes
//           over the values it holds in registers (read from memory once);
//           norm_combine merges the chunks with Chan's formula.
//   MODE 1: Σ g and Σ g·x̂ for the backward pass, where x̂ = (x − mean)·invStd
//           (per plane, from norm_combine's MODE 0 or saved by the forward
//           pass) and g is dy passed back through the LeakyReLU at
//           z = gamma·x̂ + beta (+ r).
// Each sum goes over the invocation's values in order and then a fixed binary
// tree in shared memory: no atomics, the same bits on every run. With VEC4
// (V a multiple of 4) every load is a vec4; otherwise lanes 1..3 are unused.
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 256; // a power of two
layout(constant_id = 1) const uint WY = 1;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const uint VPT = 4; // loads per invocation
layout(constant_id = 4) const bool VEC4 = true;
layout(constant_id = 5) const uint MODE = 0;
// The residual and the LeakyReLU are specialization constants: conditions
// on push constants around loads cost lavapipe dearly.
layout(constant_id = 6) const bool RESIDUAL = false;
layout(constant_id = 7) const bool LEAKY = false;

const uint LW = VEC4 ? 4 : 1;

#include "inputs.glsl"
INPUT(0, x)
INPUT(1, r)
INPUT(2, dy)
layout(std430, binding = 3) readonly buffer Gamma { float gamma[]; };
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
layout(std430, binding = 5) readonly buffer Mean { float mean[]; };
layout(std430, binding = 6) readonly buffer InvStd { float invStd[]; };
layout(std430, binding = 7) writeonly buffer P { vec2 partial[]; };
layout(push_constant) uniform Push {
    uint nc, c, v;      // planes, channels, voxels per plane
    uint ch, chunks;    // voxels per chunk, chunks per plane
    uint hasA, hasB;
    float slope, eps;
} p;

shared vec2 red[WG];

// reduce returns the sum of v over the workgroup, added in a fixed tree.
vec2 reduce(vec2 v) {
    uint lid = gl_LocalInvocationIndex;
    red[lid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        barrier();
    }
    vec2 t = red[0];
    barrier();
    return t;
}

// X, R and DY name the tensors that load reads.
const uint X = 0, R = 1, DY = 2;

vec4 load(uint t, uint e) {
    if (VEC4) {
        return t == X ? x4(e / 4) : t == R ? r4(e / 4) : dy4(e / 4);
    }
    return vec4(t == X ? x(e) : t == R ? r(e) : dy(e), 0.0, 0.0, 0.0);
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationIndex;
    bool live = g < p.nc * p.chunks;
    uint nc = g / p.chunks;
    uint j = g - nc * p.chunks;
    uint first = j * p.ch;
    uint count = live ? min(p.ch, p.v - first) : 0;
    uint e0 = nc * p.v + first;
    const vec4 lanes = VEC4 ? vec4(1.0) : vec4(1.0, 0.0, 0.0, 0.0);

    if (MODE == 0) {
        vec4 u[VPT];
        float s = 0.0;
        [[unroll]] for (uint i = 0; i < VPT; i++) {
            uint off = (i * WG + lid) * LW;
            u[i] = off < count ? load(X, e0 + off) : vec4(0.0);
            s += dot(u[i], lanes);
        }
        float mu = reduce(vec2(s, 0.0)).x / float(max(count, 1));
        float m2 = 0.0;
        [[unroll]] for (uint i = 0; i < VPT; i++) {
            uint off = (i * WG + lid) * LW;
            vec4 d = (u[i] - mu) * lanes;
            m2 += off < count ? dot(d, d) : 0.0;
        }
        m2 = reduce(vec2(m2, 0.0)).x;
        if (live && lid == 0) {
            partial[g] = vec2(mu, m2);
        }
    } else {
        uint c = nc % p.c;
        vec2 st = live ? vec2(mean[nc], invStd[nc]) : vec2(0.0);
        float ga = live ? gamma[c] : 0.0, be = live ? beta[c] : 0.0;
        vec2 s = vec2(0.0);
        [[unroll]] for (uint i = 0; i < VPT; i++) {
            uint off = (i * WG + lid) * LW;
            if (off < count) {
                vec4 xh = (load(X, e0 + off) - st.x) * st.y;
                vec4 gv = load(DY, e0 + off);
                if (LEAKY) {
                    vec4 z = ga * xh + be;
                    if (RESIDUAL) {
                        z += load(R, e0 + off);
                    }
                    // Slope where z ≤ 0 (or NaN), as ref and PyTorch do.
                    gv = mix(gv * p.slope, gv, greaterThan(z, vec4(0.0)));
                }
                s += vec2(dot(gv, lanes), dot(gv * xh, lanes));
            }
        }
        s = reduce(s);
        if (live && lid == 0) {
            partial[g] = s;
        }
    }
}
