#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// pointwise_small: a 1×1×1 convolution with few channels, which is bound by
// memory rather than arithmetic: each invocation reads all CIN input
// channels of VPI items of four neighbouring voxels (or one) once and
// writes all COUT outputs, with the weights in shared memory (the texel
// variant reads them where it uses them). With TRANS the weights are read
// as [CIN][COUT], which makes the same kernel the data gradient
// (dx = wᵀ·dy). With NORM the input is the instance norm of x, computed as
// it is read from the norm's statistics (mean, invStd per plane) and
// parameters, with its LeakyReLU when LEAKY: the same expressions as
// norm_apply's, so the normalised tensor need not be built.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint CIN = 16;
layout(constant_id = 2) const uint COUT = 16;
layout(constant_id = 3) const bool TRANS = false;
layout(constant_id = 4) const bool VEC4 = true;
layout(constant_id = 5) const bool BIAS = true;
// Items (vec4s or voxels of one plane) per invocation: an invocation that
// applies each weight it reads to VPI items reads it VPI times less often
// per voxel, which pays on a CPU device.
layout(constant_id = 6) const uint VPI = 1;
layout(constant_id = 7) const bool NORM = false;
layout(constant_id = 8) const bool LEAKY = false;

#include "inputs.glsl"
INPUT(0, x)
INPUT(1, w)
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 4) readonly buffer Gamma { float gamma[]; }; // NORM
layout(std430, binding = 5) readonly buffer Beta { float beta[]; };
layout(std430, binding = 6) readonly buffer Mean { float mean[]; };
layout(std430, binding = 7) readonly buffer InvStd { float invStd[]; };
layout(push_constant) uniform Push {
    uint items;  // per (sample, channel) plane: voxels, or vec4s with VEC4
    uint total;  // batch × items
    float slope; // NORM and LEAKY: the LeakyReLU's
} p;

#ifdef TEXEL
// A CPU device gathers a texel of one address for all lanes at once: the
// weights are read where they are used, without shared memory or barrier.
float weight(uint co, uint ci) { return w(TRANS ? ci * COUT + co : co * CIN + ci); }
#else
shared float ws[COUT * CIN];
float weight(uint co, uint ci) { return ws[co * CIN + ci]; }
#endif

void main() {
    uint lid = gl_LocalInvocationID.x;
#ifndef TEXEL
    for (uint i = lid; i < COUT * CIN; i += WG) {
        uint co = i / CIN, ci = i - co * CIN;
        ws[i] = TRANS ? w(ci * COUT + co) : w(i);
    }
    barrier();
#endif
    uint i0 = ((gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + lid) * VPI;
    if (i0 >= p.total) {
        return;
    }
    uint n = i0 / p.items;
    uint v = i0 - n * p.items;
    vec4 xs[VPI][CIN];
    [[unroll]] for (uint ci = 0; ci < CIN; ci++) {
        uint at = (n * CIN + ci) * p.items + v;
        [[unroll]] for (uint k = 0; k < VPI; k++) {
            xs[k][ci] = VEC4 ? x4(at + k) : vec4(x(at + k));
        }
        if (NORM) {
            float mu = mean[n * CIN + ci], is = invStd[n * CIN + ci], ga = gamma[ci], be = beta[ci];
            [[unroll]] for (uint k = 0; k < VPI; k++) {
                vec4 z = ga * ((xs[k][ci] - mu) * is) + be;
                xs[k][ci] = LEAKY ? mix(z * p.slope, z, greaterThan(z, vec4(0.0))) : z;
            }
        }
    }
    for (uint co = 0; co < COUT; co++) {
        vec4 acc[VPI];
        [[unroll]] for (uint k = 0; k < VPI; k++) {
            acc[k] = vec4(BIAS ? b[co] : 0.0);
        }
        [[unroll]] for (uint ci = 0; ci < CIN; ci++) {
            vec4 wv = vec4(weight(co, ci));
            [[unroll]] for (uint k = 0; k < VPI; k++) {
                acc[k] = fma(wv, xs[k][ci], acc[k]);
            }
        }
        uint at = (n * COUT + co) * p.items + v;
        [[unroll]] for (uint k = 0; k < VPI; k++) {
            if (VEC4) {
                y4[at + k] = acc[k];
            } else {
                y[at + k] = acc[k].x;
            }
        }
    }
}
