#version 450
#extension GL_EXT_control_flow_attributes : require
// depthwise_dw: first pass of the depthwise convolution's weight gradient,
//   dw[c, kd, kh, kw] = Σ_n Σ_voxels dy[n, c, v] · x[n, c, v + (kd, kh, kw) - K/2]
// as a deterministic split reduction (no atomics). Workgroup g handles
// channel c, a block of KDB kernel planes (taps kd in [blk·KDB, blk·KDB+KDB),
// TB = KDB·K² taps) and a chunk of consecutive tiles of the flattened
// (n, tile) range of that channel; it writes its TB partial sums into
// partial[g·TBX ..], followed by the partial sum of dy over the same voxels
// (for the bias gradient, which takes block 0's: dy is read once for both
// gradients). depthwise_dw_sum adds the chunks in a fixed order.
//
// Per tile the x halo, (TW+K-1)×(TH+K-1)×(TD+KDB-1) voxels, is loaded into
// shared memory (coalesced along W); each invocation owns TX neighbouring
// columns of TD output voxels and keeps TB + 1 running sums in registers. At the end a
// fixed two-level tree sums the invocations, RG sums at a time, in the same
// shared memory, which is SH floats (the larger of the halo and RG·WG).
//
// With JOIN, x is the channel concatenation of two tensors, read in place:
// the first p.split channels are in x, the others in x2. With UD, UH, UW
// above 1, x is up-sampled by those factors (nearest) as it is read: it is
// the volume divided by them (never with JOIN).
//
// DX (only with KDB = K: one block holds every tap) makes the same pass the
// input gradient too, dx = conv(dy, flip(w)), so that the backward pass
// reads dy once instead of twice. Each tile then loads dy's halo as well,
// into shared memory after x's (SH covers both), takes its dy column from
// there and sums each dx voxel in depthwise.comp's order (the same bits).
// dx is joined as x is (JOIN: the first p.split channels in dx, the others
// in dx2); with up-sampling its voxels are summed over each UD×UH×UW block
// (the tile's sizes are multiples of the factors) as in depthwise.comp;
// ACC adds to dx's contents (bit 1) and dx2's (bit 2).
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WX = 32; // workgroup x
layout(constant_id = 1) const uint TH = 8;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const uint TD = 4;
layout(constant_id = 4) const uint K = 3;
layout(constant_id = 5) const uint KDB = 3; // kernel planes per block
layout(constant_id = 6) const uint RG = 27; // taps per reduction round
layout(constant_id = 7) const uint SH = 6912;
layout(constant_id = 8) const uint TX = 1; // output columns per invocation along W
layout(constant_id = 9) const bool JOIN = false;
layout(constant_id = 10) const uint UD = 1;
layout(constant_id = 11) const uint UH = 1;
layout(constant_id = 12) const uint UW = 1;
layout(constant_id = 13) const bool DX = false;
layout(constant_id = 14) const uint ACC = 0;
const bool UP = UD * UH * UW > 1;

const uint TW = WX * TX; // tile width

const uint HX = TW + K - 1;
const uint HY = TH + K - 1;
const uint HZ = TD + KDB - 1;
const uint HALO = HX * HY * HZ;
const uint WG = WX * TH;
const uint VX = TX + K - 1; // halo values a row of an invocation's outputs reads
const uint NL = (HALO + WG - 1) / WG; // halo values per invocation
const uint TB = KDB * K * K;
const uint TBX = TB + 1; // the taps' sums and dy's
const int PAD = int(K / 2);
const uint S = 8;         // invocations per tap in the first reduction level
const uint SEG = WG / S;  // values each of them adds

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer P { float partial[]; };
layout(std430, binding = 3) readonly buffer X2 { float x2[]; }; // JOIN
// DX: the weights, and dx's parts through write-only views (ACC reads them
// through read-only views of the same bindings).
layout(std430, binding = 4) readonly buffer Wt { float w[]; };
layout(std430, binding = 5) writeonly buffer DXo { float dx[]; };
layout(std430, binding = 5) readonly buffer DXAcc { float dxAcc[]; };
layout(std430, binding = 6) writeonly buffer DX2o { float dx2[]; };
layout(std430, binding = 6) readonly buffer DX2Acc { float dx2Acc[]; };
layout(push_constant) uniform Push {
    uint n, c;
    uint d, h, w;
    uint tilesX, tilesY, tilesZ;
    uint blocks;        // kernel-plane blocks per channel
    uint chunks;        // tile chunks per (channel, block)
    uint tilesPerChunk;
    uint split;         // JOIN: channels of x
} p;

shared float sh[SH];

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    bool live = g < p.c * p.blocks * p.chunks;
    uint chunk = g % p.chunks;
    uint rest = g / p.chunks;
    uint blk = rest % p.blocks;
    uint ch = rest / p.blocks;
    int kd0 = int(blk * KDB);
    uint lid = gl_LocalInvocationIndex;
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;

    uint tilesXY = p.tilesX * p.tilesY;
    uint tilesPlane = tilesXY * p.tilesZ;
    uint t0 = chunk * p.tilesPerChunk;
    uint t1 = live ? min(t0 + p.tilesPerChunk, p.n * tilesPlane) : t0;
    uint vol = p.d * p.h * p.w;

    float acc[TBX];
    [[unroll]] for (uint j = 0; j < TBX; j++) {
        acc[j] = 0.0;
    }
    // The trip count is the same for the whole workgroup, so the barriers
    // inside are in uniform control flow.
    for (uint ti = t0; ti < t1; ti++) {
        uint nb = ti / tilesPlane;
        uint t = ti - nb * tilesPlane;
        uint tz = t / tilesXY;
        t -= tz * tilesXY;
        uint ty = t / p.tilesX;
        uint tx = t - ty * p.tilesX;
        int x0 = int(tx * TW), y0 = int(ty * TH), z0 = int(tz * TD);
        uint base = (nb * p.c + ch) * vol; // dy's plane
        bool second = JOIN && ch >= p.split;
        uint xh = p.h / UH, xw = p.w / UW; // x's plane
        uint xBase = !JOIN ? (nb * p.c + ch) * (p.d / UD) * xh * xw
                           : second ? (nb * (p.c - p.split) + ch - p.split) * vol : (nb * p.split + ch) * vol;

        // The tile's x halo and dy column (with DX, dy's halo) are loaded
        // into registers, every load issued from a clamped address before
        // the barrier that waits for the previous tile's reads: the memory
        // latency overlaps it.
        float hv[NL];
        float gv[DX ? NL : 1];
        [[unroll]] for (uint k = 0; k < NL; k++) {
            uint i = lid + k * WG;
            uint hz = i / (HX * HY);
            uint r = i - hz * (HX * HY);
            uint hy = r / HX;
            uint hx = r - hy * HX;
            int gz = z0 + kd0 + int(hz) - PAD;
            int gy = y0 + int(hy) - PAD;
            int gx = x0 + int(hx) - PAD;
            bool inside = gz >= 0 && gz < int(p.d) && gy >= 0 && gy < int(p.h) && gx >= 0 && gx < int(p.w);
            uint at = inside ? xBase + (uint(gz) / UD * xh + uint(gy) / UH) * xw + uint(gx) / UW : xBase;
            hv[k] = second ? x2[at] : x[at];
            hv[k] = inside ? hv[k] : 0.0;
            if (DX) {
                gv[k] = dy[inside ? base + (uint(gz) * p.h + uint(gy)) * p.w + uint(gx) : base];
                gv[k] = inside ? gv[k] : 0.0;
            }
        }
        uint oy = uint(y0) + ly;
        float g[TX * TD]; // g[t·TD + j]: dy at (x0 + lx·TX + t, oy, z0 + j)
        if (!DX) {
            [[unroll]] for (uint t = 0; t < TX; t++) {
                uint ox = uint(x0) + lx * TX + t;
                [[unroll]] for (uint j = 0; j < TD; j++) {
                    uint oz = uint(z0) + j;
                    bool inside = ox < p.w && oy < p.h && oz < p.d;
                    g[t * TD + j] = dy[inside ? base + (oz * p.h + oy) * p.w + ox : base];
                    g[t * TD + j] = inside ? g[t * TD + j] : 0.0;
                }
            }
        }
        barrier(); // the previous tile's reads are done
        [[unroll]] for (uint k = 0; k < NL; k++) {
            uint i = lid + k * WG;
            if (i < HALO) {
                sh[i] = hv[k];
                if (DX) {
                    sh[HALO + i] = gv[k];
                }
            }
        }
        barrier();
        if (DX) {
            [[unroll]] for (uint t = 0; t < TX; t++) {
                [[unroll]] for (uint j = 0; j < TD; j++) {
                    g[t * TD + j] = sh[HALO + ((j + PAD) * HY + ly + PAD) * HX + lx * TX + t + PAD];
                }
            }
        }
        [[unroll]] for (uint j = 0; j < TX * TD; j++) {
            acc[TB] += g[j];
        }
        // Halo slice dz pairs with output j through kernel plane kd0 + dz - j;
        // each halo row segment is read once for the TX columns.
        // The loops run over the (dz, kl) pairs that meet an output (see
        // depthwise.comp: the same code, built much faster).
        uint row0 = ly * HX + lx * TX;
        [[unroll]] for (uint dz = 0; dz < HZ; dz++) {
            float v[K * VX];
            [[unroll]] for (uint kh = 0; kh < K; kh++) {
                [[unroll]] for (uint i = 0; i < VX; i++) {
                    v[kh * VX + i] = sh[(dz * HY + kh) * HX + row0 + i];
                }
            }
            [[unroll]] for (uint kl = 0; kl < KDB; kl++) {
                int j = int(dz) - int(kl);
                if (j >= 0 && j < int(TD)) {
                    [[unroll]] for (uint kh = 0; kh < K; kh++) {
                        [[unroll]] for (uint kw = 0; kw < K; kw++) {
                            uint tap = (kl * K + kh) * K + kw;
                            [[unroll]] for (uint t = 0; t < TX; t++) {
                                acc[tap] = fma(g[t * TD + uint(j)], v[kh * VX + t + kw], acc[tap]);
                            }
                        }
                    }
                }
            }
        }
        if (DX) {
            // dx's tile from dy's halo (depthwise.comp's loop and order;
            // xBase is dx's plane too).
            float d[TX * TD];
            [[unroll]] for (uint i = 0; i < TX * TD; i++) {
                d[i] = 0.0;
            }
            // The flipped kernel, read again for each tile: held across the
            // tile's barriers it would cost registers all through the
            // weight gradient's sums.
            float wf[TB];
            [[unroll]] for (uint i = 0; i < TB; i++) {
                wf[i] = w[ch * TB + TB - 1 - i];
            }
            [[unroll]] for (uint dz = 0; dz < HZ; dz++) {
                float v[K * VX];
                [[unroll]] for (uint kh = 0; kh < K; kh++) {
                    [[unroll]] for (uint i = 0; i < VX; i++) {
                        v[kh * VX + i] = sh[HALO + (dz * HY + kh) * HX + row0 + i];
                    }
                }
                [[unroll]] for (uint kd = 0; kd < K; kd++) {
                    int j = int(dz) - int(kd);
                    if (j >= 0 && j < int(TD)) {
                        [[unroll]] for (uint kh = 0; kh < K; kh++) {
                            [[unroll]] for (uint kw = 0; kw < K; kw++) {
                                [[unroll]] for (uint t = 0; t < TX; t++) {
                                    uint a = t * TD + uint(j);
                                    d[a] = fma(wf[(kd * K + kh) * K + kw], v[kh * VX + t + kw], d[a]);
                                }
                            }
                        }
                    }
                }
            }
            if (UP) {
                // The block sums, through shared memory once every
                // invocation is done with the halos.
                barrier();
                [[unroll]] for (uint t = 0; t < TX; t++) {
                    [[unroll]] for (uint j = 0; j < TD; j++) {
                        sh[(j * TH + ly) * TW + lx * TX + t] = d[t * TD + j];
                    }
                }
                barrier();
                const uint BW = TW / UW, BH = TH / UH, BD = TD / UD; // blocks of the tile
                uint dd = p.d / UD;
                for (uint o = lid; o < BW * BH * BD; o += WG) {
                    uint qd = o / (BW * BH);
                    uint r = o - qd * (BW * BH);
                    uint qh = r / BW;
                    uint qw = r - qh * BW;
                    uint ox = uint(x0) / UW + qw, oyb = uint(y0) / UH + qh, oz = uint(z0) / UD + qd;
                    if (ox < xw && oyb < xh && oz < dd) {
                        float s = 0.0;
                        for (uint a = 0; a < UD; a++) {
                            for (uint c = 0; c < UH; c++) {
                                for (uint e = 0; e < UW; e++) {
                                    s += sh[((qd * UD + a) * TH + qh * UH + c) * TW + qw * UW + e];
                                }
                            }
                        }
                        uint at = xBase + (oz * xh + oyb) * xw + ox;
                        dx[at] = (ACC & 1) != 0 ? dxAcc[at] + s : s;
                    }
                }
            } else {
                [[unroll]] for (uint t = 0; t < TX; t++) {
                    uint ox = uint(x0) + lx * TX + t;
                    if (ox < p.w && oy < p.h) {
                        [[unroll]] for (uint j = 0; j < TD; j++) {
                            uint oz = uint(z0) + j;
                            if (oz < p.d) {
                                uint at = xBase + (oz * p.h + oy) * p.w + ox;
                                float v = d[t * TD + j];
                                if (second) {
                                    dx2[at] = (ACC & 2) != 0 ? dx2Acc[at] + v : v;
                                } else {
                                    dx[at] = (ACC & 1) != 0 ? dxAcc[at] + v : v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Sum the invocations: S invocations per sum each add SEG values in
    // order, then one invocation per sum adds those S.
    [[unroll]] for (uint j0 = 0; j0 < TBX; j0 += RG) {
        barrier();
        [[unroll]] for (uint j = 0; j < RG; j++) {
            if (j0 + j < TBX) {
                sh[j * WG + lid] = acc[j0 + j];
            }
        }
        barrier();
        float s = 0.0;
        uint jj = lid / S, ss = lid - (lid / S) * S;
        if (lid < RG * S && j0 + jj < TBX) {
            for (uint i = 0; i < SEG; i++) {
                s += sh[jj * WG + ss * SEG + i];
            }
        }
        barrier();
        if (lid < RG * S) {
            sh[lid] = s;
        }
        barrier();
        if (live && lid < RG && j0 + lid < TBX) {
            float total = 0.0;
            for (uint i = 0; i < S; i++) {
                total += sh[lid * S + i];
            }
            partial[g * TBX + j0 + lid] = total;
        }
    }
}
