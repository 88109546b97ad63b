#version 450
#extension GL_EXT_control_flow_attributes : require
// depthwise: depthwise 3D convolution with stride 1 and zero padding K/2,
//   y[n, c] = conv(x[n, c], w[c]) + b[c]   (w is [C, 1, K, K, K]).
// With FLIP the kernel is mirrored on every axis and no bias is added: that
// is the input gradient, dx = conv(dy, flip(w)).
//
// A workgroup computes one tile of TW×TH×TD output voxels of one (n, c)
// plane. It first loads the tile's input halo, (TW+K-1)×(TH+K-1)×(TD+K-1)
// voxels with zeros outside the volume, into shared memory along W so that
// the loads coalesce, and the K³ weights beside it. Each invocation then
// computes TX neighbouring columns of TD outputs along D: every halo value
// it reads feeds up to K·min(K, TX) of those outputs, so shared-memory reads
// stay few per FMA.
// The grid is flattened: workgroup g covers plane g / tiles, tile g % tiles.
//
// With JOIN one side is the channel concatenation of two tensors, read or
// written in place (the joined tensor is never built): the first p.split
// channels are in one, the others in the second. JOIN 1 joins the input
// (x, x2): a convolution of a concatenation; JOIN 2 the output (y, y2): the
// input gradient of one.
// ACC adds the results to the output's contents (an input gradient's second
// contribution) rather than storing over them: bit 1 to y's, bit 2 to y2's.
// UD, UH, UW above 1 make it the convolution of an input up-sampled by
// those factors (nearest), whose volume is the output's divided by them
// (never with JOIN): x is up-sampled as it is read; with FLIP, the input
// gradient of the up-sampled input is summed over each UD×UH×UW block (the
// tile's sizes are multiples of the factors) into y, through shared memory.
// STATS (forward only) also writes the instance-norm statistics of the
// tile's outputs for norm_combine: stats[g] = (sum, M2, count, mean), the
// sum and then the squared deviations from the mean, each added over the
// workgroup in a fixed tree, so that a norm of y need not read it again.
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WX = 32; // workgroup x
layout(constant_id = 1) const uint TH = 8;  // tile height, = workgroup y
layout(constant_id = 2) const uint WZ = 1;  // workgroup z, always 1
layout(constant_id = 3) const uint TD = 4;  // outputs per invocation along D
layout(constant_id = 4) const uint K = 3;   // odd kernel size
layout(constant_id = 5) const bool FLIP = false;
layout(constant_id = 6) const bool BIAS = false; // b is read (never with FLIP)
layout(constant_id = 7) const uint TX = 1;  // outputs per invocation along W
layout(constant_id = 8) const uint JOIN = 0; // 0 none, 1 input, 2 output
layout(constant_id = 9) const uint ACC = 0;
layout(constant_id = 10) const uint UD = 1;
layout(constant_id = 11) const uint UH = 1;
layout(constant_id = 12) const uint UW = 1;
layout(constant_id = 13) const bool STATS = false;
const bool UP = UD * UH * UW > 1;
// The factors x is read with: FLIP reads dy, at the output's size.
const uint RD = FLIP ? 1 : UD;
const uint RH = FLIP ? 1 : UH;
const uint RW = FLIP ? 1 : UW;

const uint TW = WX * TX; // tile width

const uint HX = TW + K - 1;
const uint HY = TH + K - 1;
const uint HZ = TD + K - 1;
const uint HALO = HX * HY * HZ;
const uint WG = WX * TH;
const uint VX = TX + K - 1; // halo values a row of an invocation's outputs reads
const uint NL = (HALO + WG - 1) / WG; // halo values per invocation
const uint KKK = K * K * K;
const int PAD = int(K / 2);
// Small kernels keep their weights in registers: read from shared memory
// they would cost as many loads as the halo.
const bool WREG = KKK <= 27;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
// Results are stored through write-only views; ACC reads the contents
// through read-only views of the same bindings.
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer YAcc { float yAcc[]; };
layout(std430, binding = 4) readonly buffer X2 { float x2[]; }; // JOIN 1
layout(std430, binding = 5) writeonly buffer Y2 { float y2[]; }; // JOIN 2
layout(std430, binding = 5) readonly buffer Y2Acc { float y2Acc[]; };
layout(std430, binding = 6) writeonly buffer Stats { vec4 stats[]; }; // STATS
layout(push_constant) uniform Push {
    uint planes; // N·C
    uint c;      // channels (of y)
    uint d, h, w;
    uint tilesX, tilesY, tilesZ;
    uint split;  // JOIN: channels of the first part
} p;

shared float tile[HALO];
shared float wt[KKK];

// workgroupSum returns the sum of v over the workgroup, added in a fixed
// tree in tile's first WG floats (the tile has been read: the caller's
// invocations are past their products).
float workgroupSum(float v) {
    uint lid = gl_LocalInvocationIndex;
    barrier();
    tile[lid] = v;
    barrier();
    for (uint s = 1u << findMSB(WG - 1); s > 0; s >>= 1) {
        if (lid < s && lid + s < WG) {
            tile[lid] += tile[lid + s];
        }
        barrier();
    }
    float t = tile[0];
    return t;
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint tilesXY = p.tilesX * p.tilesY;
    uint tiles = tilesXY * p.tilesZ;
    bool live = g < p.planes * tiles;
    uint plane = g / tiles;
    uint t = g - plane * tiles;
    uint tz = t / tilesXY;
    t -= tz * tilesXY;
    uint ty = t / p.tilesX;
    uint tx = t - ty * p.tilesX;
    int x0 = int(tx * TW), y0 = int(ty * TH), z0 = int(tz * TD);
    uint ch = plane % p.c;
    uint lid = gl_LocalInvocationIndex;
    uint vol = p.d * p.h * p.w;
    // A joined side's plane is at partBase in part 2 when second.
    bool second = JOIN != 0 && ch >= p.split;
    uint n = plane / p.c;
    uint partBase = second ? (n * (p.c - p.split) + ch - p.split) * vol : (n * p.split + ch) * vol;
    uint xh = p.h / RH, xw = p.w / RW; // x's plane
    uint xBase = JOIN == 1 ? partBase : plane * (p.d / RD) * xh * xw;
    uint yBase = JOIN == 2 ? partBase : plane * (FLIP && UP ? (p.d / UD) * (p.h / UH) * (p.w / UW) : vol);

    if (live) {
        // Every load of the halo is issued before the first store, from a
        // clamped address, and the padding is selected away afterwards: a
        // loop of load-then-store would wait for memory once per value.
        float hv[NL];
        [[unroll]] for (uint k = 0; k < NL; k++) {
            uint i = lid + k * WG;
            uint hz = i / (HX * HY);
            uint r = i - hz * (HX * HY);
            uint hy = r / HX;
            uint hx = r - hy * HX;
            int gz = z0 + int(hz) - PAD;
            int gy = y0 + int(hy) - PAD;
            int gx = x0 + int(hx) - PAD;
            bool inside = gz >= 0 && gz < int(p.d) && gy >= 0 && gy < int(p.h) && gx >= 0 && gx < int(p.w);
            uint at = inside ? xBase + (uint(gz) / RD * xh + uint(gy) / RH) * xw + uint(gx) / RW : xBase;
            hv[k] = JOIN == 1 && second ? x2[at] : x[at];
            hv[k] = inside ? hv[k] : 0.0;
        }
        [[unroll]] for (uint k = 0; k < NL; k++) {
            uint i = lid + k * WG;
            if (i < HALO) {
                tile[i] = hv[k];
            }
        }
        for (uint i = lid; i < KKK; i += WG) {
            wt[i] = w[ch * KKK + (FLIP ? KKK - 1 - i : i)];
        }
    }
    barrier();
    if (!live) {
        return; // the whole workgroup: live is the same for all of it
    }

    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    float bias = BIAS ? b[ch] : 0.0;
    // acc[t·TD + j]: output (x0 + lx·TX + t, y0 + ly, z0 + j).
    float acc[TX * TD];
    uint oy = uint(y0) + ly;
    [[unroll]] for (uint i = 0; i < TX * TD; i++) {
        acc[i] = bias;
    }
    float wr[WREG ? KKK : 1];
    if (WREG) {
        [[unroll]] for (uint i = 0; i < KKK; i++) {
            wr[i] = wt[i];
        }
    }
    // Halo slice dz feeds output j through kernel plane kd = dz - j, and
    // each halo row segment the invocation reads feeds its TX outputs along
    // W through up to K taps: a CPU device, which reads shared memory a lane
    // at a time, then reads fewer values per output. Small kernels unroll
    // the whole nest, so that every weight and accumulator index is a
    // constant and both stay in registers; larger ones unroll only the
    // outputs (their full unrolling costs far more compile time than it
    // saves) and read the weights from shared memory.
    uint row0 = ly * HX + lx * TX;
    if (WREG) {
        // The loops run over the (dz, kd) pairs that meet an output, not
        // over every (dz, j): the same code once unrolled, but far less for
        // the compiler to unroll and then remove (lavapipe builds the
        // pipeline several times faster).
        [[unroll]] for (uint dz = 0; dz < HZ; dz++) {
            float v[K * VX];
            [[unroll]] for (uint kh = 0; kh < K; kh++) {
                [[unroll]] for (uint i = 0; i < VX; i++) {
                    v[kh * VX + i] = tile[(dz * HY + kh) * HX + row0 + i];
                }
            }
            [[unroll]] for (uint kd = 0; kd < K; kd++) {
                int j = int(dz) - int(kd);
                if (j >= 0 && j < int(TD)) {
                    [[unroll]] for (uint kh = 0; kh < K; kh++) {
                        [[unroll]] for (uint kw = 0; kw < K; kw++) {
                            [[unroll]] for (uint t = 0; t < TX; t++) {
                                uint a = t * TD + uint(j);
                                acc[a] = fma(wr[(kd * K + kh) * K + kw], v[kh * VX + t + kw], acc[a]);
                            }
                        }
                    }
                }
            }
        }
    } else {
        for (uint dz = 0; dz < HZ; dz++) {
            for (uint kh = 0; kh < K; kh++) {
                for (uint kw = 0; kw < K; kw++) {
                    [[unroll]] for (uint t = 0; t < TX; t++) {
                        float v = tile[(dz * HY + kh) * HX + row0 + t + kw];
                        [[unroll]] for (uint j = 0; j < TD; j++) {
                            int kd = int(dz) - int(j);
                            if (kd >= 0 && kd < int(K)) {
                                acc[t * TD + j] = fma(wt[(uint(kd) * K + kh) * K + kw], v, acc[t * TD + j]);
                            }
                        }
                    }
                }
            }
        }
    }
    if (FLIP && UP) { // the block sums
        // The tile's outputs go to shared memory, where the halo was (live
        // is the same for the whole workgroup: the barriers are reached by
        // all of it); each invocation then sums blocks of them.
        barrier();
        [[unroll]] for (uint t = 0; t < TX; t++) {
            [[unroll]] for (uint j = 0; j < TD; j++) {
                tile[(j * TH + ly) * TW + lx * TX + t] = acc[t * TD + j];
            }
        }
        barrier();
        const uint BW = TW / UW, BH = TH / UH, BD = TD / UD; // blocks of the tile
        uint dw = p.w / UW, dh = p.h / UH, dd = p.d / UD;   // y's plane
        for (uint o = lid; o < BW * BH * BD; o += WG) {
            uint qd = o / (BW * BH);
            uint r = o - qd * (BW * BH);
            uint qh = r / BW;
            uint qw = r - qh * BW;
            uint ox = uint(x0) / UW + qw, oyb = uint(y0) / UH + qh, oz = uint(z0) / UD + qd;
            if (ox < dw && oyb < dh && oz < dd) {
                float s = 0.0;
                for (uint a = 0; a < UD; a++) {
                    for (uint c = 0; c < UH; c++) {
                        for (uint e = 0; e < UW; e++) {
                            s += tile[((qd * UD + a) * TH + qh * UH + c) * TW + qw * UW + e];
                        }
                    }
                }
                uint at = yBase + (oz * dh + oyb) * dw + ox;
                y[at] = (ACC & 1) != 0 ? yAcc[at] + s : s;
            }
        }
        return;
    }
    [[unroll]] for (uint t = 0; t < TX; t++) {
        uint ox = uint(x0) + lx * TX + t;
        if (ox < p.w && oy < p.h) {
            [[unroll]] for (uint j = 0; j < TD; j++) {
                uint oz = uint(z0) + j;
                if (oz < p.d) {
                    uint at = yBase + (oz * p.h + oy) * p.w + ox;
                    float v = acc[t * TD + j];
                    if (JOIN == 2 && second) {
                        y2[at] = (ACC & 2) != 0 ? y2Acc[at] + v : v;
                    } else {
                        y[at] = (ACC & 1) != 0 ? yAcc[at] + v : v;
                    }
                }
            }
        }
    }    if (STATS) {
        float s = 0.0;
        [[unroll]] for (uint t = 0; t < TX; t++) {
            [[unroll]] for (uint j = 0; j < TD; j++) {
                bool inside = uint(x0) + lx * TX + t < p.w && oy < p.h && uint(z0) + j < p.d;
                s += inside ? acc[t * TD + j] : 0.0;
            }
        }
        uint count = min(TW, p.w - uint(x0)) * min(TH, p.h - uint(y0)) * min(TD, p.d - uint(z0));
        s = workgroupSum(s);
        float mu = s / float(count);
        float m2 = 0.0;
        [[unroll]] for (uint t = 0; t < TX; t++) {
            [[unroll]] for (uint j = 0; j < TD; j++) {
                bool inside = uint(x0) + lx * TX + t < p.w && oy < p.h && uint(z0) + j < p.d;
                float dv = acc[t * TD + j] - mu;
                m2 += inside ? dv * dv : 0.0;
            }
        }
        m2 = workgroupSum(m2);
        if (lid == 0) {
            stats[g] = vec4(s, m2, float(count), mu);
        }
    }
}
