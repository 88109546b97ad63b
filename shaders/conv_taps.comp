#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// conv_taps: the transposed convolution whose kernel equals its stride
// (SD×SH×SW, no padding), the network's learned up-sampling, and its data
// gradient. Every output voxel of the transposed convolution takes exactly
// one tap t of one input voxel i:
//   MODE 0 (UP)    y[b, co, s·i + t] = bias[co] + Σ_ci w[ci, co, t] · x[b, ci, i]
//   MODE 1 (DOWN)  dx[b, ci, i] = Σ_co Σ_t w[ci, co, t] · dy[b, co, s·i + t]
// so both passes are memory-bound: the smaller tensor is read once per group
// of four output channels, the larger one once, in whole rows.
//
// An invocation owns VX voxels from i on along w (one, or two: see below)
// and four channels of its result (channels past the end are computed with
// zero weights and not stored). It walks the reduced channels (ci going
// up, co going down), reading each value once and issuing many loads
// before it waits for one, and keeps its sums in registers: 4·T scalars
// per voxel going up (T = taps), a vec4 per voxel going down. The weights
// of CB reduced channels at a time are staged in shared memory, T vec4s
// per channel, which every invocation reads at the same address (a
// broadcast). The group of four channels is the
// fastest-varying part of the workgroup index, so the groups that read the
// same input run together. Sums run over the reduced channels in order:
// results are bit-reproducible.
//
// The texel variant (CPU devices, which load memory and store it a SIMD lane
// at a time and pay for every barrier) has no shared memory: an invocation
// owns VX neighbouring voxels along w and COB channels, reads the weights
// as texels where it uses them, and with VX·SW = 4 stores (going up) or
// loads (going down) the large side's rows as vec4s.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint SD = 2;
layout(constant_id = 2) const uint SH = 2;
layout(constant_id = 3) const uint SW = 2;
layout(constant_id = 4) const uint CB = 32; // reduced channels per weight stage
layout(constant_id = 5) const uint MODE = 0;
layout(constant_id = 6) const bool BIAS = false; // b is read (UP only)
layout(constant_id = 7) const uint VX = 1;       // texel variant: voxels along w per invocation
// DOWN: the results are added to dx's contents (an input gradient's second
// contribution) rather than stored over them.
layout(constant_id = 8) const bool ACC = false;

const uint UP = 0;
const uint DOWN = 1;
const uint T = SD * SH * SW;

#include "inputs.glsl"
INPUT(0, x) // x, or dy going down
INPUT(1, w) // [cin, cout, T]
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; }; // y, or dx going down
layout(std430, binding = 3) readonly buffer YAcc { float yAcc[]; }; // ACC: dx's contents
layout(std430, binding = 3) writeonly buffer Y4 { vec4 y4[]; };
layout(push_constant) uniform Push {
    uvec4 in3;    // the small side's d, h, w and voxels
    uint cin, cout;
    uint groups;  // groups of four result channels
    uint total;   // batch · small-side voxels
} p;

#ifdef TEXEL
// COB result channels per invocation: with VX = 2 and 8 taps, 32 sums.
const uint COB = 2;
const bool ROW4 = VX * SW % 4 == 0; // the large side's rows in vec4s
const bool W4 = T % 4 == 0;     // a channel pair's taps in vec4s

// weight returns w[(c·cout + o)·T + q].
float weight(uint c, uint o, uint q) {
    uint at = (c * p.cout + o) * T + q;
    return W4 ? w4(at / 4)[q % 4] : w(at);
}

void main() {
    uint m = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint groups = ((MODE == UP ? p.cout : p.cin) + COB - 1) / COB;
    uint vox = p.in3.w;
    uint runs = vox / VX; // the VX voxels of a run lie in one row
    if (m >= groups * (p.total / VX)) {
        return;
    }
    uint cg = m % groups;
    uint r = m / groups;
    uint bn = r / runs;
    uint i = (r - bn * runs) * VX;
    uint o0 = cg * COB;
    uint hw = p.in3.y * p.in3.z;
    uint iz = i / hw;
    uint rr = i - iz * hw;
    uint iy = rr / p.in3.z;
    uint ix = rr - iy * p.in3.z;
    uint od = p.in3.x * SD, oh = p.in3.y * SH, ow = p.in3.z * SW;
    uint bigVox = od * oh * ow;
    uint block = ((SD * iz) * oh + SH * iy) * ow + SW * ix;
    if (MODE == UP) {
        // acc[(k·VX + v)·T + q]: channel o0 + k, voxel i + v, tap q.
        float acc[COB * VX * T];
        [[unroll]] for (uint k = 0; k < COB; k++) {
            float bias = BIAS ? b[min(o0 + k, p.cout - 1)] : 0.0;
            [[unroll]] for (uint j = 0; j < VX * T; j++) {
                acc[k * VX * T + j] = bias;
            }
        }
        for (uint c = 0; c < p.cin; c++) {
            uint at = (bn * p.cin + c) * vox + i;
            float xv[VX];
            [[unroll]] for (uint v = 0; v < VX; v++) {
                xv[v] = x(at + v);
            }
            [[unroll]] for (uint k = 0; k < COB; k++) {
                uint o = min(o0 + k, p.cout - 1);
                [[unroll]] for (uint q = 0; q < T; q++) {
                    float wq = weight(c, o, q);
                    [[unroll]] for (uint v = 0; v < VX; v++) {
                        acc[(k * VX + v) * T + q] = fma(wq, xv[v], acc[(k * VX + v) * T + q]);
                    }
                }
            }
        }
        [[unroll]] for (uint k = 0; k < COB; k++) {
            if (o0 + k >= p.cout) {
                break;
            }
            uint plane = (bn * p.cout + o0 + k) * bigVox + block;
            [[unroll]] for (uint tz = 0; tz < SD; tz++) {
                [[unroll]] for (uint ty = 0; ty < SH; ty++) {
                    uint row = plane + (tz * oh + ty) * ow;
                    // The row's VX·SW outputs: voxel v, tap tx at v·SW + tx.
                    float o[VX * SW];
                    [[unroll]] for (uint v = 0; v < VX; v++) {
                        [[unroll]] for (uint tx = 0; tx < SW; tx++) {
                            o[v * SW + tx] = acc[(k * VX + v) * T + (tz * SH + ty) * SW + tx];
                        }
                    }
                    if (ROW4) {
                        [[unroll]] for (uint e = 0; e < VX * SW; e += 4) {
                            y4[(row + e) / 4] = vec4(o[e], o[e + 1], o[e + 2], o[e + 3]);
                        }
                    } else {
                        [[unroll]] for (uint e = 0; e < VX * SW; e++) {
                            y[row + e] = o[e];
                        }
                    }
                }
            }
        }
        return;
    }
    // Going down: acc[k·VX + v] for input channel o0 + k, voxel i + v.
    float acc[COB * VX];
    [[unroll]] for (uint j = 0; j < COB * VX; j++) {
        acc[j] = 0.0;
    }
    for (uint c = 0; c < p.cout; c++) {
        uint plane = (bn * p.cout + c) * bigVox + block;
        [[unroll]] for (uint tz = 0; tz < SD; tz++) {
            [[unroll]] for (uint ty = 0; ty < SH; ty++) {
                uint row = plane + (tz * oh + ty) * ow;
                float d[VX * SW];
                if (ROW4) {
                    [[unroll]] for (uint e = 0; e < VX * SW; e += 4) {
                        vec4 d4 = x4((row + e) / 4);
                        d[e] = d4.x;
                        d[e + 1] = d4.y;
                        d[e + 2] = d4.z;
                        d[e + 3] = d4.w;
                    }
                } else {
                    [[unroll]] for (uint e = 0; e < VX * SW; e++) {
                        d[e] = x(row + e);
                    }
                }
                [[unroll]] for (uint k = 0; k < COB; k++) {
                    uint ci = min(o0 + k, p.cin - 1);
                    [[unroll]] for (uint tx = 0; tx < SW; tx++) {
                        float wq = weight(ci, c, (tz * SH + ty) * SW + tx);
                        [[unroll]] for (uint v = 0; v < VX; v++) {
                            acc[k * VX + v] = fma(wq, d[v * SW + tx], acc[k * VX + v]);
                        }
                    }
                }
            }
        }
    }
    [[unroll]] for (uint k = 0; k < COB; k++) {
        if (o0 + k < p.cin) {
            [[unroll]] for (uint v = 0; v < VX; v++) {
                uint at = (bn * p.cin + o0 + k) * vox + i + v;
                y[at] = ACC ? yAcc[at] + acc[k * VX + v] : acc[k * VX + v];
            }
        }
    }
}
#else
// DU is the channels whose values an invocation loads together going down:
// DU·T·VX loads in flight.
const uint DU = 4;

// An invocation owns VX neighbouring voxels along w (1 or 2: the host takes
// 2 only where rows have even lengths) and four result channels. With
// VX = 2 each weight read from shared memory serves both voxels: eight FMAs
// per read instead of four. With SW = 2 the large side's values of one row
// that an invocation stores (going up) or loads (going down) are RUN
// neighbours from an index that is a multiple of RUN (rows and planes have
// such lengths): they move as one vec2 or vec4, so that a subgroup covers a
// whole stretch of the row in one instruction. The sums are the same, in
// the same order, whatever VX: so are the bits.
const uint RUN = SW * VX;
const bool VECTORS = SW == 2;
layout(std430, binding = 0) readonly buffer X2 { vec2 x2[]; };
layout(std430, binding = 0) readonly buffer XV4 { vec4 xv4[]; };
layout(std430, binding = 3) writeonly buffer Y2 { vec2 y2[]; };

// ws[c·T + q]: going up, the weights of reduced channel ci0 + c for the sums
// 4q .. 4q+3 (sum j is result channel j / T, tap j % T); going down, those
// of tap q for the four result channels.
shared vec4 ws[CB * T];

// loadRun returns the RUN values of the large side from at on. (Indices
// run in loops bounded by RUN: the array's size is a specialization
// constant.)
void loadRun(uint at, out float run[RUN]) {
    if (VECTORS && RUN == 4) {
        vec4 q = xv4[at / 4];
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            run[e] = q[e];
        }
    } else if (VECTORS) {
        vec2 q = x2[at / 2];
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            run[e] = q[e];
        }
    } else {
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            run[e] = x(at + e);
        }
    }
}

// storeRun stores the RUN values of the large side from at on.
void storeRun(uint at, float run[RUN]) {
    if (VECTORS && RUN == 4) {
        vec4 q;
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            q[e] = run[e];
        }
        y4[at / 4] = q;
    } else if (VECTORS) {
        vec2 q;
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            q[e] = run[e];
        }
        y2[at / 2] = q;
    } else {
        [[unroll]] for (uint e = 0; e < RUN; e++) {
            y[at + e] = run[e];
        }
    }
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint cg = g % p.groups;
    uint v = (g / p.groups) * WG + lid; // the invocation's run of VX voxels
    bool live = v < p.total / VX;
    uint vox = p.in3.w;
    uint runs = vox / VX;
    uint bn = v / runs;
    uint i = (v - bn * runs) * VX; // its first voxel
    uint o0 = cg * 4;
    uint nRed = MODE == UP ? p.cin : p.cout;
    uint nOut = MODE == UP ? p.cout : p.cin;

    uint hw = p.in3.y * p.in3.z;
    uint iz = i / hw;
    uint rr = i - iz * hw;
    uint iy = rr / p.in3.z;
    uint ix = rr - iy * p.in3.z;
    uint od = p.in3.x * SD, oh = p.in3.y * SH, ow = p.in3.z * SW;
    uint bigVox = od * oh * ow;
    // Offset of the s³ block of voxel i in a plane of the large side.
    uint block = ((SD * iz) * oh + SH * iy) * ow + SW * ix;

    // acc[u·4T + j]: voxel i + u, sum j.
    float acc[MODE == UP ? 4 * T * VX : 1];
    vec4 acc4[VX];
    if (MODE == UP) {
        [[unroll]] for (uint j = 0; j < 4 * T; j++) {
            uint co = o0 + j / T;
            float bj = BIAS ? b[min(co, p.cout - 1)] : 0.0;
            [[unroll]] for (uint u = 0; u < VX; u++) {
                acc[u * 4 * T + j] = bj;
            }
        }
    }
    [[unroll]] for (uint u = 0; u < VX; u++) {
        acc4[u] = vec4(0.0);
    }
    for (uint r0 = 0; r0 < nRed; r0 += CB) {
        uint n = live ? min(CB, nRed - r0) : 0;
        // Going up, the stage's CB·VX inputs are loaded before its weights
        // are staged, so that they are in flight together (one load at a
        // time, each waited for before the next, left the kernel bound by
        // memory latency, not bandwidth).
        float xs[MODE == UP ? CB * VX : 1];
        if (MODE == UP) {
            [[unroll]] for (uint c = 0; c < CB; c++) {
                uint at = (bn * p.cin + r0 + min(c, max(n, 1) - 1)) * vox + i;
                if (VX == 2) {
                    vec2 q = c < n ? x2[at / 2] : vec2(0.0);
                    [[unroll]] for (uint u = 0; u < VX; u++) {
                        xs[c * VX + u] = q[u];
                    }
                } else {
                    xs[c] = c < n ? x(at) : 0.0;
                }
            }
        }
        barrier(); // the previous stage's reads are done
        for (uint e = lid; e < CB * T * 4; e += WG) {
            uint c = e / (T * 4);
            uint j = e - c * (T * 4);
            uint rc = r0 + c;
            float wv = 0.0;
            if (MODE == UP) {
                uint co = o0 + j / T;
                if (rc < nRed && co < nOut) {
                    wv = w((rc * p.cout + co) * T + j % T);
                }
            } else {
                uint t = j / 4;
                uint ci = o0 + j % 4;
                if (rc < nRed && ci < nOut) {
                    wv = w((ci * p.cout + rc) * T + t);
                }
            }
            ws[c * T + j / 4][j % 4] = wv;
        }
        barrier();
        if (MODE == UP) {
            [[unroll]] for (uint c = 0; c < CB; c++) {
                if (c < n) {
                    [[unroll]] for (uint q = 0; q < T; q++) {
                        vec4 wq = ws[c * T + q];
                        [[unroll]] for (uint u = 0; u < VX; u++) {
                            uint a = u * 4 * T + 4 * q;
                            float xv = xs[c * VX + u];
                            acc[a] = fma(wq.x, xv, acc[a]);
                            acc[a + 1] = fma(wq.y, xv, acc[a + 1]);
                            acc[a + 2] = fma(wq.z, xv, acc[a + 2]);
                            acc[a + 3] = fma(wq.w, xv, acc[a + 3]);
                        }
                    }
                }
            }
        } else {
            // Going down, DU channels' blocks of T values per voxel are
            // loaded together, then summed in the same order as one by one.
            for (uint c0 = 0; c0 < n; c0 += DU) {
                // d[(u·T + q)·VX + v]: channel c0 + u, tap q, voxel i + v.
                float d[DU * T * VX];
                [[unroll]] for (uint u = 0; u < DU; u++) {
                    uint plane = (bn * p.cout + r0 + min(c0 + u, n - 1)) * bigVox + block;
                    [[unroll]] for (uint tz = 0; tz < SD; tz++) {
                        [[unroll]] for (uint ty = 0; ty < SH; ty++) {
                            float run[RUN];
                            loadRun(plane + (tz * oh + ty) * ow, run);
                            [[unroll]] for (uint vv = 0; vv < VX; vv++) {
                                [[unroll]] for (uint tx = 0; tx < SW; tx++) {
                                    d[(u * T + (tz * SH + ty) * SW + tx) * VX + vv] = run[vv * SW + tx];
                                }
                            }
                        }
                    }
                }
                [[unroll]] for (uint u = 0; u < DU; u++) {
                    if (c0 + u < n) {
                        [[unroll]] for (uint q = 0; q < T; q++) {
                            vec4 wq = ws[(c0 + u) * T + q];
                            [[unroll]] for (uint vv = 0; vv < VX; vv++) {
                                acc4[vv] = fma(wq, vec4(d[(u * T + q) * VX + vv]), acc4[vv]);
                            }
                        }
                    }
                }
            }
        }
    }
    if (!live) {
        return;
    }
    if (MODE == DOWN) {
        [[unroll]] for (uint k = 0; k < 4; k++) {
            if (o0 + k < p.cin) {
                [[unroll]] for (uint vv = 0; vv < VX; vv++) {
                    uint at = (bn * p.cin + o0 + k) * vox + i + vv;
                    y[at] = ACC ? yAcc[at] + acc4[vv][k] : acc4[vv][k];
                }
            }
        }
        return;
    }
    [[unroll]] for (uint k = 0; k < 4; k++) {
        uint co = o0 + k;
        if (co < p.cout) {
            uint plane = (bn * p.cout + co) * bigVox + block;
            [[unroll]] for (uint tz = 0; tz < SD; tz++) {
                [[unroll]] for (uint ty = 0; ty < SH; ty++) {
                    // The row's RUN values: voxel u, tap tx at u·SW + tx.
                    float run[RUN];
                    [[unroll]] for (uint u = 0; u < VX; u++) {
                        [[unroll]] for (uint tx = 0; tx < SW; tx++) {
                            run[u * SW + tx] = acc[u * 4 * T + k * T + (tz * SH + ty) * SW + tx];
                        }
                    }
                    storeRun(plane + (tz * oh + ty) * ow, run);
                }
            }
        }
    }
}
#endif
