#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// norm_fused: the whole instance norm in one dispatch. CPU devices run a few
// workgroups at once, one per core, and pay tens of microseconds per
// dispatch, so one workgroup per plane (or channel) does norm_stats',
// norm_combine's and norm_apply's work in turn, re-reading a plane that is
// still in the core's cache, where a GPU needs thousands of workgroups for
// large planes; GPUs take it for small planes (one norm_stats chunk).
//   MODE 0: workgroup nc takes plane nc of x: its mean and
//           M2 = Σ (x − mean)² in one pass (planeStats), writes mean and
//           invStd = 1/sqrt(M2/V + eps), then, with OUT_X,
//           y = act(gamma·x̂ + beta (+ r)).
//   MODE 1: workgroup c takes channel c's planes one sample at a time:
//           Σ g and Σ g·x̂ (g = dy through the LeakyReLU, x̂ from the saved
//           statistics), then, with OUT_X, dx as norm_apply's MODE 1 and,
//           with OUT_R, dr = g; the sums over the samples are dgamma (when
//           hasA) and dbeta (hasB).
// MODE 1's invocations sum their values in blocks of 16 loads and groups of
// 16 blocks before their running totals, which keeps a plane of 10⁶ voxels
// at about fp32 precision; the invocations meet in a fixed tree in shared
// memory. The bits are the same on every run.
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 8; // a power of two
layout(constant_id = 1) const uint WY = 1;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const bool VEC4 = true;
layout(constant_id = 4) const uint MODE = 0;
layout(constant_id = 5) const bool RESIDUAL = false;
layout(constant_id = 6) const bool LEAKY = false;
// The elementwise outputs: y or dx (binding 9), and in MODE 1 dr
// (binding 10). Without them a pass computes only statistics.
layout(constant_id = 7) const bool OUT_X = true;
layout(constant_id = 8) const bool OUT_R = false;
const bool APPLY = OUT_X || OUT_R;

const uint LW = VEC4 ? 4 : 1;
const uint BLOCK = 16; // loads per block
const uint GROUP = 16; // blocks per group

#include "inputs.glsl"
INPUT(0, x)
INPUT(1, r)
INPUT(2, dy)
layout(std430, binding = 3) readonly buffer Gamma { float gamma[]; };
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
// Written in MODE 0, read in MODE 1.
layout(std430, binding = 5) buffer Mean { float mean[]; };
layout(std430, binding = 6) buffer InvStd { float invStd[]; };
layout(std430, binding = 7) writeonly buffer A { float a[]; };
layout(std430, binding = 8) writeonly buffer B { float b[]; };
layout(std430, binding = 9) writeonly buffer Y { float y[]; };
layout(std430, binding = 9) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 10) writeonly buffer DR { float dr[]; };
layout(std430, binding = 10) writeonly buffer DR4 { vec4 dr4[]; };
layout(push_constant) uniform Push {
    uint nc, c, v;
    uint ch, chunks;
    uint hasA, hasB;
    float slope, eps;
} p;

shared vec2 red[WG];

// reduce returns the sum of s over the workgroup, added in a fixed tree.
vec2 reduce(vec2 s) {
    uint lid = gl_LocalInvocationIndex;
    red[lid] = s;
    barrier();
    for (uint h = WG / 2; h > 0; h >>= 1) {
        if (lid < h) {
            red[lid] += red[lid + h];
        }
        barrier();
    }
    vec2 t = red[0];
    barrier();
    return t;
}

// xItem, rItem and grad return item i (a vec4, or one value in lane 0) of
// x, r and dy.
vec4 xItem(uint i) { return VEC4 ? x4(i) : vec4(x(i), 0.0, 0.0, 0.0); }
vec4 rItem(uint i) { return VEC4 ? r4(i) : vec4(r(i), 0.0, 0.0, 0.0); }
vec4 grad(uint i) { return VEC4 ? dy4(i) : vec4(dy(i), 0.0, 0.0, 0.0); }

// z returns the affine transform's output (with the residual) at item i.
vec4 z(uint i, vec4 xh, float ga, float be) {
    vec4 v = ga * xh + be;
    return RESIDUAL ? v + rItem(i) : v;
}

const vec4 lanes = VEC4 ? vec4(1.0) : vec4(1.0, 0.0, 0.0, 0.0);

// term returns what item i of a plane adds to MODE 1's sums: (g, g·x̂).
vec2 term(uint i, vec2 st, float ga, float be) {
    vec4 xh = (xItem(i) - st.x) * st.y;
    vec4 gv = grad(i);
    if (LEAKY) {
        // Slope where z ≤ 0 (or NaN), as ref and PyTorch do.
        gv = mix(gv * p.slope, gv, greaterThan(z(i, xh, ga, be), vec4(0.0)));
    }
    return vec2(dot(gv, lanes), dot(gv * xh, lanes));
}

// planeSum returns the workgroup's sum of term over the items [i0, i0 + n).
vec2 planeSum(uint i0, uint n, vec2 st, float ga, float be) {
    uint lid = gl_LocalInvocationIndex;
    vec2 s = vec2(0.0);
    for (uint g0 = 0; g0 < n; g0 += WG * BLOCK * GROUP) {
        vec2 sg = vec2(0.0);
        for (uint b0 = g0; b0 < min(n, g0 + WG * BLOCK * GROUP); b0 += WG * BLOCK) {
            vec2 sb = vec2(0.0);
            [[unroll]] for (uint k = 0; k < BLOCK; k++) {
                uint j = b0 + k * WG + lid;
                if (j < n) {
                    sb += term(i0 + j, st, ga, be);
                }
            }
            sg += sb;
        }
        s += sg;
    }
    return reduce(s);
}

// chan merges the statistics (count, mean, M2) of two runs of values
// (Chan et al.), exact for an empty run on either side.
vec3 chan(vec3 a, vec3 b) {
    float n = a.x + b.x;
    if (n == 0.0) {
        return a;
    }
    float d = b.y - a.y;
    float f = b.x / n;
    return vec3(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

shared vec3 red3[WG];

// planeStats returns the (count, mean, M2) of the items [i0, i0 + n) of x
// in one pass over memory: each invocation takes blocks of BLOCK loads,
// held in registers for a two-pass mean and M2 of the block, and merges
// them with chan, as the workgroup then merges its invocations, in a fixed
// tree (lavapipe, 1×8×32³ forward: 0.32-0.39 → 0.29-0.32 ms against a
// pass for the mean and one for M2).
vec3 planeStats(uint i0, uint n) {
    uint lid = gl_LocalInvocationIndex;
    vec3 s = vec3(0.0);
    for (uint b0 = 0; b0 < n; b0 += WG * BLOCK) {
        vec4 v[BLOCK];
        float sum = 0.0, cnt = 0.0;
        [[unroll]] for (uint k = 0; k < BLOCK; k++) {
            uint j = b0 + k * WG + lid;
            v[k] = j < n ? xItem(i0 + j) : vec4(0.0);
            sum += dot(v[k], lanes);
            cnt += j < n ? float(LW) : 0.0;
        }
        float m = sum / max(cnt, 1.0);
        float m2 = 0.0;
        [[unroll]] for (uint k = 0; k < BLOCK; k++) {
            uint j = b0 + k * WG + lid;
            vec4 d = (v[k] - m) * lanes;
            m2 += j < n ? dot(d, d) : 0.0;
        }
        s = chan(s, vec3(cnt, m, m2));
    }
    red3[lid] = s;
    barrier();
    for (uint h = WG / 2; h > 0; h >>= 1) {
        if (lid < h) {
            red3[lid] = chan(red3[lid], red3[lid + h]);
        }
        barrier();
    }
    vec3 t = red3[0];
    barrier();
    return t;
}

// apply writes the plane's output items [i0, i0 + n): y in MODE 0, dx and
// dr in MODE 1 with cf = (mean of g, mean of g·x̂).
void apply(uint i0, uint n, vec2 st, float ga, float be, vec2 cf) {
    for (uint j = gl_LocalInvocationIndex; j < n; j += WG) {
        uint i = i0 + j;
        vec4 xh = (xItem(i) - st.x) * st.y;
        // The backward pass needs z only for the LeakyReLU's derivative.
        vec4 zi = MODE == 0 || LEAKY ? z(i, xh, ga, be) : vec4(0.0);
        bvec4 pos = greaterThan(zi, vec4(0.0));
        vec4 o;
        if (MODE == 0) {
            o = LEAKY ? mix(zi * p.slope, zi, pos) : zi;
        } else {
            vec4 gv = grad(i);
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
        if (OUT_X) {
            if (VEC4) {
                y4[i] = o;
            } else {
                y[i] = o.x;
            }
        }
    }
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationIndex;
    uint n = p.v / LW; // items per plane
    if (MODE == 0) {
        // Surplus workgroups of the flattened grid leave together.
        if (g >= p.nc) {
            return;
        }
        uint c = g % p.c;
        float ga = gamma[c], be = beta[c];
        vec3 s3 = planeStats(g * n, n);
        vec2 st = vec2(s3.y, 1.0 / sqrt(s3.z / float(p.v) + p.eps));
        if (lid == 0) {
            mean[g] = st.x;
            invStd[g] = st.y;
        }
        if (APPLY) {
            apply(g * n, n, st, ga, be, vec2(0.0));
        }
        return;
    }
    if (g >= p.c) {
        return;
    }
    float ga = gamma[g], be = beta[g];
    vec2 total = vec2(0.0);
    for (uint nc = g; nc < p.nc; nc += p.c) {
        vec2 st = vec2(mean[nc], invStd[nc]);
        vec2 s = planeSum(nc * n, n, st, ga, be);
        total += s;
        if (APPLY) {
            apply(nc * n, n, st, ga, be, s / float(p.v));
        }
    }
    if (lid == 0) {
        if (p.hasA != 0) {
            a[g] = total.y;
        }
        if (p.hasB != 0) {
            b[g] = total.x;
        }
    }
}
