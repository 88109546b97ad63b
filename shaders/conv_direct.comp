#version 450
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
// conv_direct: the GEMM family's three products (see conv_gemm.comp for the
// geometry: x [nb, c0, xs] convolved with w [c1, c0, ks], stride st, padding
// pb before each axis, into y [nb, c1, ys]) as direct convolutions for CPU
// devices. A CPU implementation loads memory one SIMD lane at a time (about
// ten FMAs' worth per scalar), shared or not, and pays for every barrier;
// conv_gemm stages both operands through shared memory, so it spends its
// time loading. Here each invocation keeps a register block of sums and
// reads each input row segment once for every tap along w that meets it;
// there is no shared memory and no barrier.
//
//   0 FWD    y[b, c1, o] = Σ_(c0, t) w[c1, c0, t]·x[b, c0, o·st + t − pb] + bias[c1]
//   1 DGRAD  x[b, c0, i] = Σ_(c1, t) w[c1, c0, t]·y[b, c1, o], o·st + t − pb = i,
//            + bias[c0] (a transposed convolution's forward)
//   2 WGRAD  w[c1, c0, t] = Σ_(b, o) y[b, c1, o]·x[b, c0, o·st + t − pb], one
//            row of partial sums per split of the (b, od, oh) rows, and with
//            BIAS then bias[c1] = Σ_(b, o) y[b, c1, o]; the host adds the
//            splits in order (conv_splitk).
//
// FWD and DGRAD: an invocation computes COB result channels × TY rows × TX
// neighbouring voxels along w. For every CIB source channels and every tap
// row (kd, kh) that meets its rows, it loads the CIB·COB·KW weights once
// and, per row, the CIB source row segments under the TX voxels once, then
// adds CIB·COB·TY·TX·KW products. In DGRAD a stride along an axis leaves only the
// taps with o·st + t − pb = i; along d and h each invocation walks exactly
// those (its voxels' stride phase; TY > 1 only where h has stride 1), along
// w TX is a multiple of SW so that every block starts at phase 0 and the
// taps that meet each of its voxels are known when the kernel is built.
// WGRAD: an invocation computes COB output channels × WKD·KH·KW taps (a
// block of kd, every kh and kw) of one input channel, over the rows of its
// split; per step along w it loads COB·TX dy values and WKD·KH row segments
// of x.
// Out-of-range positions are read at clamped addresses and replaced by 0,
// so loads never branch. The sums run in a fixed order: results are
// bit-reproducible.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 16;
layout(constant_id = 1) const uint COB = 8; // result (WGRAD: y) channels per invocation
layout(constant_id = 2) const int TX = 8;   // voxels along w per invocation (WGRAD: per step)
layout(constant_id = 3) const int KW = 3;
layout(constant_id = 4) const int KH = 3;
layout(constant_id = 5) const int SW = 1;
layout(constant_id = 6) const int PW = 1;
layout(constant_id = 7) const uint MODE = 0;
layout(constant_id = 8) const bool BIAS = false;
layout(constant_id = 9) const int TY = 1;   // FWD, DGRAD: rows per invocation
layout(constant_id = 10) const int WKD = 1; // WGRAD: taps along d per invocation
// Source rows (SRC4) and, in WGRAD, dy rows (DY4) a multiple of 4 voxels
// long, whose segments start at a multiple of 4 plus a constant: they are
// loaded as aligned vec4s, which a CPU device loads for about twice the
// cost of one float.
layout(constant_id = 11) const bool SRC4 = false;
layout(constant_id = 12) const bool DY4 = false;
// FWD, DGRAD: source channels per step.
layout(constant_id = 13) const uint CIB = 1;
// FWD, DGRAD: the results are added to dst's contents (an input gradient's
// second contribution) rather than stored over them.
layout(constant_id = 14) const bool ACC = false;

const uint FWD = 0;
const uint DGRAD = 1;
const uint WGRAD = 2;

// The row segment: FWD and WGRAD read (TX − 1)·SW + KW source voxels from
// block·TX·SW − PW on. DGRAD reads the source voxels from floor((PW − KW +
// 1)/SW) to floor((TX − 1 + PW)/SW) past block·TX/SW, fewer; QS (a multiple
// of SW, at least KW − 1) keeps the floor divisions' operands non-negative.
const int SEG = (TX - 1) * SW + KW;
const int QS = ((KW - 1 + SW - 1) / SW) * SW;
const int DLO = (PW - KW + 1 + QS) / SW - QS / SW;
const int DSEG = (TX - 1 + PW + QS) / SW - QS / SW - DLO + 1;

#include "inputs.glsl"
INPUT(0, src) // FWD, WGRAD: x; DGRAD: y
INPUT(1, wt)  // FWD, DGRAD: w; WGRAD: y
layout(std430, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) buffer Dst { float dst[]; }; // FWD: y; DGRAD: x; WGRAD: partials (written only, unless ACC)

layout(push_constant) uniform Push {
    uvec4 xs;   // x spatial d, h, w and voxels
    uvec4 ys;   // y spatial d, h, w and voxels
    ivec4 geo;  // kernel d, stride d, h, taps
    ivec4 pad;  // padding before d, h; blocks along the result's w; channel blocks
    uvec4 ch;   // nb, c0, c1, invocations
    uvec4 split; // WGRAD: splits, rows per split, rows, floats per split; else x: blocks along h
} p;

// NVMAX bounds the vec4s of a segment: SEG values from up to 3 past a
// multiple of 4.
const int NVMAX = (SEG + 6) / 4;

// loadSegment fills seg[0, n) with source voxels start + s of the row at
// row (sw voxels long), 0 outside it. start = a + c, where c and n are
// constants and, with SRC4, a is a multiple of 4 (and so is row).
void loadSegment(int row, int a, int c, int n, int sw, out float seg[SEG]) {
    if (SRC4) {
        // floor(c/4) and the start's place in its vec4; clamped vec4s hold
        // only positions outside the row, which are replaced by 0.
        int cf = (c + 4096) / 4 - 1024;
        int pv = c - 4 * cf;
        int first4 = a / 4 + cf, last4 = sw / 4 - 1, row4 = row / 4;
        vec4 v[NVMAX];
        [[unroll]] for (int k = 0; k < (pv + n + 3) / 4; k++) {
            v[k] = src4(uint(row4 + clamp(first4 + k, 0, last4)));
        }
        [[unroll]] for (int s = 0; s < n; s++) {
            int iw = a + c + s;
            seg[s] = (iw >= 0 && iw < sw) ? v[(pv + s) / 4][(pv + s) % 4] : 0.0;
        }
        return;
    }
    [[unroll]] for (int s = 0; s < n; s++) {
        int iw = a + c + s;
        float v = src(uint(row + clamp(iw, 0, sw - 1)));
        seg[s] = (iw >= 0 && iw < sw) ? v : 0.0;
    }
}

// An axis's taps that meet result voxel o (DGRAD: source voxels): tap
// k0 + m·kStep reads source voxel i0 + m·iStep, for m < n. Source voxels
// outside [0, size) are skipped by the caller.
struct Walk {
    int k0, kStep, i0, iStep, n;
};

Walk walk(int o, int k, int s, int pb) {
    if (MODE == DGRAD) {
        int k0 = (o + pb) % s;
        return Walk(k0, s, (o + pb - k0) / s, -1, k > k0 ? (k - k0 + s - 1) / s : 0);
    }
    return Walk(0, 1, o * s - pb, 1, k);
}

void fwdOrDgrad(uint inv) {
    bool fwd = MODE == FWD;
    uvec3 rs = fwd ? p.ys.xyz : p.xs.xyz; // result size
    uvec3 ss = fwd ? p.xs.xyz : p.ys.xyz; // source size
    uint cRes = fwd ? p.ch.z : p.ch.y;
    uint cSrc = fwd ? p.ch.y : p.ch.z;
    int taps = p.geo.w;
    // w[c1, c0, t]: the result channel's and the source channel's strides.
    int sRes = fwd ? int(p.ch.y) * taps : taps;
    int sSrc = fwd ? taps : int(p.ch.y) * taps;

    uint blocksW = uint(p.pad.z);
    uint blocksH = p.split.x;
    uint blk = inv % blocksW;
    uint r = inv / blocksW;
    uint hb = r % blocksH;
    int oh0 = int(hb) * TY;
    if (MODE == DGRAD && p.geo.z > 1) {
        // TY = 1, and the host rounds the rows up to a multiple of the
        // stride: the rows of one stride phase come one after another, so
        // the invocations of a SIMD vector walk the same taps along h.
        uint per = blocksH / uint(p.geo.z);
        oh0 = int(hb % per) * p.geo.z + int(hb / per);
    }
    r /= blocksH;
    int od = int(r % rs.x);
    r /= rs.x;
    uint b = r % p.ch.x;
    uint co0 = (r / p.ch.x) * COB;
    int ow0 = int(blk) * TX;

    // First source voxel along w of the segment.
    // The segment starts at segA + (FWD: −PW; DGRAD: DLO).
    int segA = fwd ? ow0 * SW : ow0 / SW;
    int sw = int(ss.z);

    float acc[COB][TY][TX];
    [[unroll]] for (uint c = 0; c < COB; c++) {
        float b0 = BIAS ? bias[min(co0 + c, cRes - 1)] : 0.0;
        [[unroll]] for (int y = 0; y < TY; y++) {
            [[unroll]] for (int j = 0; j < TX; j++) {
                acc[c][y][j] = b0;
            }
        }
    }
    Walk wd = walk(od, p.geo.x, p.geo.y, p.pad.x);
    // Row oh0 + y reads source row i0 + y·rowStep through the same taps.
    Walk wh = walk(oh0, KH, p.geo.z, p.pad.y);
    int rowStep = fwd ? p.geo.z : 1;
    // CIB source channels at a time: each sum then takes CIB times the
    // products per visit (a CPU device keeps the sums in memory, so each
    // visit loads and stores them). A last partial block reads its missing
    // channels as the last one, with weights 0.
    for (uint ci0 = 0; ci0 < cSrc; ci0 += CIB) {
        for (int md = 0; md < wd.n; md++) {
            int id = wd.i0 + md * wd.iStep;
            if (id < 0 || id >= int(ss.x)) {
                continue;
            }
            int kd = wd.k0 + md * wd.kStep;
            for (int mh = 0; mh < wh.n; mh++) {
                int ih0 = wh.i0 + mh * wh.iStep;
                int kh = wh.k0 + mh * wh.kStep;
                float wv[CIB][COB][KW];
                [[unroll]] for (uint u = 0; u < CIB; u++) {
                    uint ci = min(ci0 + u, cSrc - 1);
                    int tapRow = (kd * KH + kh) * KW + int(ci) * sSrc;
                    [[unroll]] for (uint c = 0; c < COB; c++) {
                        int wrow = int(min(co0 + c, cRes - 1)) * sRes + tapRow;
                        [[unroll]] for (int t = 0; t < KW; t++) {
                            float v = wt(uint(wrow + t));
                            wv[u][c][t] = ci0 + u < cSrc ? v : 0.0;
                        }
                    }
                }
                [[unroll]] for (int y = 0; y < TY; y++) {
                    int ih = ih0 + y * rowStep;
                    if (ih < 0 || ih >= int(ss.y)) {
                        continue;
                    }
                    float seg[CIB][SEG];
                    [[unroll]] for (uint u = 0; u < CIB; u++) {
                        uint plane = (b * cSrc + min(ci0 + u, cSrc - 1)) * ss.x;
                        int row = int((plane + uint(id)) * ss.y + uint(ih)) * sw;
                        loadSegment(row, segA, fwd ? -PW : DLO, fwd ? SEG : DSEG, sw, seg[u]);
                    }
                    [[unroll]] for (uint c = 0; c < COB; c++) {
                        [[unroll]] for (int j = 0; j < TX; j++) {
                            [[unroll]] for (uint u = 0; u < CIB; u++) {
                                [[unroll]] for (int t = 0; t < KW; t++) {
                                    if (fwd) {
                                        acc[c][y][j] = fma(wv[u][c][t], seg[u][j * SW + t], acc[c][y][j]);
                                    } else {
                                        // Voxel j meets tap t where j + PW − t
                                        // is a multiple of SW, reading source
                                        // voxel floor((j + PW − t)/SW) past
                                        // ow0/SW.
                                        int q = j + PW - t + QS;
                                        if (q % SW == 0) {
                                            acc[c][y][j] = fma(wv[u][c][t], seg[u][q / SW - QS / SW - DLO], acc[c][y][j]);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    [[unroll]] for (uint c = 0; c < COB; c++) {
        uint co = co0 + c;
        if (co >= cRes) {
            break;
        }
        [[unroll]] for (int y = 0; y < TY; y++) {
            int oh = oh0 + y;
            if (oh >= int(rs.y)) {
                break;
            }
            uint base = (((b * cRes + co) * rs.x + uint(od)) * rs.y + uint(oh)) * rs.z;
            [[unroll]] for (int j = 0; j < TX; j++) {
                if (ow0 + j < int(rs.z)) {
                    uint at = base + uint(ow0 + j);
                    dst[at] = ACC ? dst[at] + acc[c][y][j] : acc[c][y][j];
                }
            }
        }
    }
}

void wgrad(uint inv) {
    int KD = p.geo.x;
    uint c0 = p.ch.y;
    uint c1 = p.ch.z;
    uint dBlocks = uint(KD + WKD - 1) / uint(WKD);
    int kd0 = int(inv % dBlocks) * WKD;
    uint r = inv / dBlocks;
    uint ci = r % c0;
    r /= c0;
    uint cBlocks = uint(p.pad.w);
    uint co0 = (r % cBlocks) * COB;
    uint s = r / cBlocks;
    uint rowBegin = s * p.split.y;
    uint rowEnd = min(rowBegin + p.split.y, p.split.z);

    int xw = int(p.xs.z);
    int yw = int(p.ys.z);
    // With BIAS the invocations of the first input channel and kernel
    // plane also sum dy, the bias gradient.
    bool sumDy = BIAS && ci == 0 && kd0 == 0;
    float dsum[COB];
    [[unroll]] for (uint c = 0; c < COB; c++) {
        dsum[c] = 0.0;
    }
    float acc[COB][WKD][KH][KW];
    [[unroll]] for (uint c = 0; c < COB; c++) {
        [[unroll]] for (int d = 0; d < WKD; d++) {
            [[unroll]] for (int h = 0; h < KH; h++) {
                [[unroll]] for (int t = 0; t < KW; t++) {
                    acc[c][d][h][t] = 0.0;
                }
            }
        }
    }
    for (uint row = rowBegin; row < rowEnd; row++) {
        uint oh = row % p.ys.y;
        uint q = row / p.ys.y;
        uint od = q % p.ys.x;
        uint b = q / p.ys.x;
        uint xPlane = (b * c0 + ci) * p.xs.x;
        for (int ow0 = 0; ow0 < yw; ow0 += TX) {
            float dy[COB][TX];
            [[unroll]] for (uint c = 0; c < COB; c++) {
                uint yrow = (((b * c1 + min(co0 + c, c1 - 1)) * p.ys.x + od) * p.ys.y + oh) * p.ys.z;
                vec4 v4[DY4 ? TX / 4 : 1];
                if (DY4) {
                    [[unroll]] for (int k = 0; k < TX / 4; k++) {
                        v4[k] = wt4(yrow / 4 + uint(min(ow0 / 4 + k, yw / 4 - 1)));
                    }
                }
                float rs = 0.0;
                [[unroll]] for (int j = 0; j < TX; j++) {
                    float v = DY4 ? v4[j / 4][j % 4] : wt(yrow + uint(min(ow0 + j, yw - 1)));
                    dy[c][j] = (ow0 + j < yw) ? v : 0.0;
                    rs += dy[c][j];
                }
                if (sumDy) {
                    dsum[c] += rs;
                }
            }
            [[unroll]] for (int d = 0; d < WKD; d++) {
                int id = int(od) * p.geo.y + kd0 + d - p.pad.x;
                if (kd0 + d >= KD || id < 0 || id >= int(p.xs.x)) {
                    continue;
                }
                [[unroll]] for (int h = 0; h < KH; h++) {
                    int ih = int(oh) * p.geo.z + h - p.pad.y;
                    if (ih < 0 || ih >= int(p.xs.y)) {
                        continue;
                    }
                    int xrow = int((xPlane + uint(id)) * p.xs.y + uint(ih)) * xw;
                    float seg[SEG];
                    loadSegment(xrow, ow0 * SW, -PW, SEG, xw, seg);
                    [[unroll]] for (uint c = 0; c < COB; c++) {
                        [[unroll]] for (int t = 0; t < KW; t++) {
                            [[unroll]] for (int j = 0; j < TX; j++) {
                                acc[c][d][h][t] = fma(dy[c][j], seg[j * SW + t], acc[c][d][h][t]);
                            }
                        }
                    }
                }
            }
        }
    }
    uint taps = uint(p.geo.w);
    [[unroll]] for (uint c = 0; c < COB; c++) {
        uint co = co0 + c;
        if (co >= c1) {
            break;
        }
        if (sumDy) {
            dst[s * p.split.w + c1 * c0 * taps + co] = dsum[c];
        }
        [[unroll]] for (int d = 0; d < WKD; d++) {
            if (kd0 + d >= KD) {
                break;
            }
            uint base = s * p.split.w + ((co * c0 + ci) * uint(KD) + uint(kd0 + d)) * uint(KH * KW);
            [[unroll]] for (int h = 0; h < KH; h++) {
                [[unroll]] for (int t = 0; t < KW; t++) {
                    dst[base + uint(h * KW + t)] = acc[c][d][h][t];
                }
            }
        }
    }
}

void main() {
    uint inv = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (inv >= p.ch.w) {
        return;
    }
    if (MODE == WGRAD) {
        wgrad(inv);
    } else {
        fwdOrDgrad(inv);
    }
}
