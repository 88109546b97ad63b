#version 450
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
// depthwise_direct: the depthwise convolution (stride 1, zero padding K/2)
// for CPU devices, without shared memory or barriers (see conv_direct.comp
// for why: a CPU implementation loads memory a SIMD lane at a time, shared
// or not, and pays for every barrier).
//
//   MODE 0  y[n, c] = conv(x[n, c], w[c]) + b[c]; with FLIP the kernel is
//           mirrored on every axis and no bias is added: the input
//           gradient dx = conv(dy, flip(w)).
//   MODE 1  the weight gradient's first pass: the partial sums over one
//           chunk of (n, d, row block) items of
//             dw[c, t] = Σ dy[n, c, o]·x[n, c, o + t − K/2],  Σ dy[n, c, o],
//           at partial[(c·chunks + chunk)·(K³ + 1) ..]; depthwise_dw_sum
//           adds the chunks in order.
//
// An invocation works on blocks of TD planes × TY rows × TX voxels along
// w. MODE 0 computes such a block: for each of the TD + K − 1 source
// planes it loads the weights through which that plane feeds each output
// plane and then each of the TY + K − 1 source row segments once, adding
// every product that segment feeds. MODE 1 walks its chunk's blocks: per
// block it loads TD·TY·TX dy values and the source segments, and adds into
// K³ + 1 sums. Out-of-range positions are read at clamped addresses and
// replaced by 0. The sums run in a fixed order: the results are
// bit-reproducible.
//
// With JOIN one side is the channel concatenation of two tensors, read or
// written in place: the first p.split channels are in one, the others in
// the second. JOIN 1 joins x (x, xb), in both modes; JOIN 2 MODE 0's
// output (dst, dstb): the input gradient of a concatenation.
// In MODE 0, ACC adds the results to the output's contents (an input
// gradient's second contribution) rather than storing over them: bit 1 to
// dst's, bit 2 to dstb's. UD, UH, UW above 1 make it the convolution of an
// input up-sampled by those factors (nearest), whose volume is the output's
// divided by them (never with JOIN or VEC4): x is up-sampled as it is read;
// with FLIP, the input gradient of the up-sampled input is summed over each
// UD×UH×UW block (TD, TY, TX are multiples of the factors) into dst.
// STATS (MODE 0, forward only) also writes the instance-norm statistics of
// the block's outputs for norm_combine: stats[inv] = (sum, M2, count,
// mean), M2 the squared deviations from the mean, so that a norm of the
// output need not read it again.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 16;
layout(constant_id = 1) const int K = 3; // odd kernel size
layout(constant_id = 2) const int TY = 4;
layout(constant_id = 3) const int TX = 16;
layout(constant_id = 4) const bool FLIP = false;
layout(constant_id = 5) const bool BIAS = false;
layout(constant_id = 6) const uint MODE = 0;
// Rows are a multiple of 4 voxels long (so TX is too): row segments are
// loaded as aligned vec4s, which a CPU device loads for about twice the
// cost of one float.
layout(constant_id = 7) const bool VEC4 = false;
// Blocks span TD output planes, which share the loads of their common
// source planes (each meets them through different kd).
layout(constant_id = 8) const int TD = 1;
layout(constant_id = 9) const uint JOIN = 0; // 0 none, 1 x, 2 MODE 0's output
layout(constant_id = 10) const uint ACC = 0;
layout(constant_id = 11) const int UD = 1;
layout(constant_id = 12) const int UH = 1;
layout(constant_id = 13) const int UW = 1;
layout(constant_id = 14) const bool STATS = false;
const bool UP = UD * UH * UW > 1;
// The factors x is read with: FLIP reads dy, at the output's size.
const int RD = FLIP ? 1 : UD;
const int RH = FLIP ? 1 : UH;
const int RW = FLIP ? 1 : UW;

const int P = K / 2;
const int KKK = K * K * K;
const int SEG = TX + K - 1;
// With VEC4 a segment starts PV voxels into its first vec4 (PA = P rounded
// up to a multiple of 4) and spans NV vec4s.
const int PA = (P + 3) / 4 * 4;
const int PV = PA - P;
const int NV = (PV + SEG + 3) / 4;

#include "inputs.glsl"
INPUT(0, x)  // MODE 0: x (or dy); 1: x
INPUT(1, wt) // MODE 0: w; 1: dy
layout(std430, binding = 2) readonly buffer B { float bias[]; };
layout(std430, binding = 3) buffer Dst { float dst[]; }; // MODE 0: y; 1: partials (written only, unless ACC)
INPUT(4, xb) // JOIN 1: x's second part
layout(std430, binding = 5) buffer DstB { float dstb[]; }; // JOIN 2: y's second part
layout(std430, binding = 6) writeonly buffer Stats { vec4 stats[]; }; // STATS

layout(push_constant) uniform Push {
    uvec4 size;   // d, h, w, voxels per plane
    uvec4 blocks; // blocks along w, along h; planes (N·C); channels C
    uvec4 split;  // MODE 1: chunks per channel, items per chunk, items per channel; w: invocations
    uint join;    // JOIN: channels of the first part
} p;

// joined returns where plane (n, ch) of a joined tensor starts in its part,
// and whether that is the second.
uint joined(uint n, uint ch, out bool second) {
    second = ch >= p.join;
    uint c = p.blocks.w;
    return (second ? n * (c - p.join) + ch - p.join : n * p.join + ch) * p.size.w;
}

// segment loads the TX + K − 1 source voxels from w0 − P on of row (d, h)
// of the plane at base (in xb when second), zero outside the volume.
void segment(bool second, uint base, int d, int h, int w0, out float seg[SEG]) {
    int sw = int(p.size.z);
    int row = int(base) + (d / RD * (int(p.size.y) / RH) + h / RH) * (sw / RW);
    if (VEC4) {
        // Clamped vec4s hold only positions outside the row, which the
        // selection below replaces by 0.
        int row4 = row / 4, last4 = sw / 4 - 1, first4 = (w0 - PA) / 4;
        vec4 v[NV];
        [[unroll]] for (int k = 0; k < NV; k++) {
            uint at = uint(row4 + clamp(first4 + k, 0, last4));
            v[k] = second ? xb4(at) : x4(at);
        }
        [[unroll]] for (int s = 0; s < SEG; s++) {
            int iw = w0 - P + s;
            seg[s] = (iw >= 0 && iw < sw) ? v[(PV + s) / 4][(PV + s) % 4] : 0.0;
        }
        return;
    }
    [[unroll]] for (int s = 0; s < SEG; s++) {
        int iw = w0 - P + s;
        uint at = uint(row + clamp(iw, 0, sw - 1) / RW);
        float v = second ? xb(at) : x(at);
        seg[s] = (iw >= 0 && iw < sw) ? v : 0.0;
    }
}

void conv(uint inv) {
    uint bw = inv % p.blocks.x;
    uint r = inv / p.blocks.x;
    int h0 = int(r % p.blocks.y) * TY;
    r /= p.blocks.y;
    uint dblocks = (p.size.x + uint(TD) - 1) / uint(TD);
    int od0 = int(r % dblocks) * TD;
    uint plane = r / dblocks;
    uint ch = plane % p.blocks.w;
    int w0 = int(bw) * TX;
    bool second = false;
    uint part = JOIN != 0 ? joined(plane / p.blocks.w, ch, second) : 0;
    uint xBase = JOIN == 1 ? part : plane * (p.size.x / RD * (p.size.y / RH) * (p.size.z / RW));
    uint yBase = JOIN == 2 ? part : plane * (FLIP && UP ? p.size.x / UD * (p.size.y / UH) * (p.size.z / UW) : p.size.w);
    int sd = int(p.size.x), sh = int(p.size.y);

    float acc[TD][TY][TX];
    float b0 = BIAS ? bias[ch] : 0.0;
    [[unroll]] for (int j = 0; j < TD; j++) {
        [[unroll]] for (int i = 0; i < TY; i++) {
            [[unroll]] for (int t = 0; t < TX; t++) {
                acc[j][i][t] = b0;
            }
        }
    }
    // Source plane od0 + q − P feeds output plane od0 + j through
    // kd = q − j.
    for (int q = 0; q < TD + K - 1; q++) {
        int gd = od0 + q - P;
        if (gd < 0 || gd >= sd) {
            continue;
        }
        float wr[TD][K][K];
        [[unroll]] for (int j = 0; j < TD; j++) {
            int kd = clamp(q - j, 0, K - 1);
            [[unroll]] for (int kh = 0; kh < K; kh++) {
                [[unroll]] for (int kw = 0; kw < K; kw++) {
                    int tap = (kd * K + kh) * K + kw;
                    wr[j][kh][kw] = wt(uint(int(ch) * KKK + (FLIP ? KKK - 1 - tap : tap)));
                }
            }
        }
        // Source row h0 + s − P feeds output row i through kh = s − i.
        [[unroll]] for (int s = 0; s < TY + K - 1; s++) {
            int gh = h0 + s - P;
            if (gh < 0 || gh >= sh) {
                continue;
            }
            float seg[SEG];
            segment(JOIN == 1 && second, xBase, gd, gh, w0, seg);
            [[unroll]] for (int j = 0; j < TD; j++) {
                if (q - j < 0 || q - j >= K) {
                    continue;
                }
                [[unroll]] for (int kh = 0; kh < K; kh++) {
                    int i = s - kh;
                    if (i >= 0 && i < TY) {
                        [[unroll]] for (int kw = 0; kw < K; kw++) {
                            [[unroll]] for (int t = 0; t < TX; t++) {
                                acc[j][i][t] = fma(wr[j][kh][kw], seg[t + kw], acc[j][i][t]);
                            }
                        }
                    }
                }
            }
        }
    }
    if (FLIP && UP) { // the block sums
        int bh = sh / UH, bw = int(p.size.z) / UW; // dst's plane
        [[unroll]] for (int j = 0; j < TD; j += UD) {
            if (od0 + j >= sd) {
                break;
            }
            [[unroll]] for (int i = 0; i < TY; i += UH) {
                if (h0 + i >= sh) {
                    break;
                }
                uint row = yBase + uint(((od0 + j) / UD * bh + (h0 + i) / UH) * bw);
                [[unroll]] for (int t = 0; t < TX; t += UW) {
                    if (w0 + t < int(p.size.z)) {
                        float s = 0.0;
                        [[unroll]] for (int a = 0; a < UD; a++) {
                            [[unroll]] for (int b = 0; b < UH; b++) {
                                [[unroll]] for (int c = 0; c < UW; c++) {
                                    s += acc[j + a][i + b][t + c];
                                }
                            }
                        }
                        uint at = row + uint((w0 + t) / UW);
                        dst[at] = (ACC & 1) != 0 ? dst[at] + s : s;
                    }
                }
            }
        }
        return;
    }
    [[unroll]] for (int j = 0; j < TD; j++) {
        if (od0 + j >= sd) {
            break;
        }
        [[unroll]] for (int i = 0; i < TY; i++) {
            if (h0 + i >= sh) {
                break;
            }
            uint row = yBase + (uint(od0 + j) * p.size.y + uint(h0 + i)) * p.size.z;
            [[unroll]] for (int t = 0; t < TX; t++) {
                if (w0 + t < int(p.size.z)) {
                    uint at = row + uint(w0 + t);
                    float v = acc[j][i][t];
                    if (JOIN == 2 && second) {
                        dstb[at] = (ACC & 2) != 0 ? dstb[at] + v : v;
                    } else {
                        dst[at] = (ACC & 1) != 0 ? dst[at] + v : v;
                    }
                }
            }
        }
    }
    if (STATS) {
        int cd = min(TD, sd - od0), cy = min(TY, sh - h0), cw = min(TX, int(p.size.z) - w0);
        float s = 0.0;
        [[unroll]] for (int j = 0; j < TD; j++) {
            [[unroll]] for (int i = 0; i < TY; i++) {
                [[unroll]] for (int t = 0; t < TX; t++) {
                    s += j < cd && i < cy && t < cw ? acc[j][i][t] : 0.0;
                }
            }
        }
        float count = float(cd * cy * cw);
        float mu = s / count;
        float m2 = 0.0;
        [[unroll]] for (int j = 0; j < TD; j++) {
            [[unroll]] for (int i = 0; i < TY; i++) {
                [[unroll]] for (int t = 0; t < TX; t++) {
                    float dv = acc[j][i][t] - mu;
                    m2 += j < cd && i < cy && t < cw ? dv * dv : 0.0;
                }
            }
        }
        stats[inv] = vec4(s, m2, count, mu);
    }
}

void weightGrad(uint inv) {
    uint chunks = p.split.x;
    uint chunk = inv % chunks;
    uint ch = inv / chunks;
    uint begin = chunk * p.split.y;
    uint end = min(begin + p.split.y, p.split.z);
    int sd = int(p.size.x), sh = int(p.size.y), sw = int(p.size.z);
    uint dblocks = (p.size.x + uint(TD) - 1) / uint(TD);

    float acc[K][K][K];
    [[unroll]] for (int kd = 0; kd < K; kd++) {
        [[unroll]] for (int kh = 0; kh < K; kh++) {
            [[unroll]] for (int kw = 0; kw < K; kw++) {
                acc[kd][kh][kw] = 0.0;
            }
        }
    }
    float dsum = 0.0;
    for (uint item = begin; item < end; item++) {
        uint bw = item % p.blocks.x;
        uint r = item / p.blocks.x;
        int h0 = int(r % p.blocks.y) * TY;
        r /= p.blocks.y;
        int od0 = int(r % dblocks) * TD;
        uint n = r / dblocks;
        int w0 = int(bw) * TX;
        uint base = (n * p.blocks.w + ch) * p.size.w; // dy's plane
        bool second = false;
        uint xBase = JOIN == 1 ? joined(n, ch, second) : (n * p.blocks.w + ch) * (p.size.x / UD * (p.size.y / UH) * (p.size.z / UW));

        float g[TD][TY][TX];
        [[unroll]] for (int j = 0; j < TD; j++) {
            int od = min(od0 + j, sd - 1);
            [[unroll]] for (int i = 0; i < TY; i++) {
                int oh = min(h0 + i, sh - 1);
                uint row = base + (uint(od) * p.size.y + uint(oh)) * p.size.z;
                vec4 v4[VEC4 ? TX / 4 : 1];
                if (VEC4) {
                    [[unroll]] for (int k = 0; k < TX / 4; k++) {
                        v4[k] = wt4(row / 4 + uint(min(w0 / 4 + k, sw / 4 - 1)));
                    }
                }
                // Each row is summed before it joins dsum, which keeps the
                // running sum's rounding small.
                float rs = 0.0;
                [[unroll]] for (int t = 0; t < TX; t++) {
                    float v = VEC4 ? v4[t / 4][t % 4] : wt(row + uint(min(w0 + t, sw - 1)));
                    g[j][i][t] = (od0 + j < sd && h0 + i < sh && w0 + t < sw) ? v : 0.0;
                    rs += g[j][i][t];
                }
                dsum += rs;
            }
        }
        // Source plane od0 + q − P meets output plane od0 + j at
        // kd = q − j.
        [[unroll]] for (int q = 0; q < TD + K - 1; q++) {
            int gd = od0 + q - P;
            if (gd < 0 || gd >= sd) {
                continue;
            }
            [[unroll]] for (int s = 0; s < TY + K - 1; s++) {
                int gh = h0 + s - P;
                if (gh < 0 || gh >= sh) {
                    continue;
                }
                float seg[SEG];
                segment(JOIN == 1 && second, xBase, gd, gh, w0, seg);
                [[unroll]] for (int j = 0; j < TD; j++) {
                    int kd = q - j;
                    if (kd < 0 || kd >= K) {
                        continue;
                    }
                    [[unroll]] for (int kh = 0; kh < K; kh++) {
                        int i = s - kh;
                        if (i >= 0 && i < TY) {
                            [[unroll]] for (int kw = 0; kw < K; kw++) {
                                [[unroll]] for (int t = 0; t < TX; t++) {
                                    acc[kd][kh][kw] = fma(g[j][i][t], seg[t + kw], acc[kd][kh][kw]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    uint at = (ch * chunks + chunk) * uint(KKK + 1);
    [[unroll]] for (int kd = 0; kd < K; kd++) {
        [[unroll]] for (int kh = 0; kh < K; kh++) {
            [[unroll]] for (int kw = 0; kw < K; kw++) {
                dst[at + uint((kd * K + kh) * K + kw)] = acc[kd][kh][kw];
            }
        }
    }
    dst[at + uint(KKK)] = dsum;
}

void main() {
    uint inv = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (inv >= p.split.w) {
        return;
    }
    if (MODE == 1) {
        weightGrad(inv);
    } else {
        conv(inv);
    }
}
