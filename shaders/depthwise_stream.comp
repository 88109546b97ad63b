#version 450
#extension GL_EXT_control_flow_attributes : require
// depthwise_stream: the depthwise convolution's forward pass for GPUs
// (kernel K ≤ 3, stride 1, zero padding K/2), streamed along D,
//   y[n, c] = conv(x[n, c], w[c]) + b[c].
//
// A workgroup takes a TW×TH column of one (n, c) plane through TD output
// planes. It walks the TD + K − 1 input planes that feed them one at a
// time: each plane's (TW+K−1)×(TH+K−1) halo is loaded once into shared
// memory, double-buffered (the next plane's loads are issued before the
// current plane is used, one barrier per plane), and every invocation adds
// its K×K neighbourhood into the K outputs of its column that the plane
// feeds, held in registers. The output whose last input plane that was is
// stored, and the sums move down one. An input plane is read once per
// column, plus K − 1 planes at the column's ends, where depthwise.comp's
// tiles read a K − 1 halo along all three axes.
//
// JOIN 1 reads x as the channel concatenation of x (its first p.split
// channels) and x2; UD, UH, UW above 1 read it up-sampled by those factors
// (nearest, x's volume the output's divided by them). STATS also writes the
// instance-norm statistics of the column's outputs for norm_combine:
// stats[g] = (sum, M2, count, mean). Each invocation keeps a running mean
// and M2 (Welford) of the outputs it stores, and the workgroup merges them
// in a fixed tree with Chan's formula: the bits are the same on every run.
layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 0) const uint TW = 32; // tile width, = workgroup x
layout(constant_id = 1) const uint TH = 8;  // tile height, = workgroup y
layout(constant_id = 2) const uint TD = 16; // output planes per column
layout(constant_id = 3) const uint K = 3;   // odd kernel size, at most 3
layout(constant_id = 4) const bool BIAS = false;
layout(constant_id = 5) const uint JOIN = 0; // 0 none, 1 input
layout(constant_id = 6) const uint UD = 1;
layout(constant_id = 7) const uint UH = 1;
layout(constant_id = 8) const uint UW = 1;
layout(constant_id = 9) const bool STATS = false;

const uint HX = TW + K - 1;
const uint HY = TH + K - 1;
const uint HP = HX * HY; // halo values of one plane
const uint WG = TW * TH;
const uint NL = (HP + WG - 1) / WG; // halo values per invocation
const uint KKK = K * K * K;
const int PAD = int(K / 2);

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
layout(std430, binding = 4) readonly buffer X2 { float x2[]; }; // JOIN 1
layout(std430, binding = 5) writeonly buffer Stats { vec4 stats[]; }; // STATS
layout(push_constant) uniform Push {
    uint planes; // N·C
    uint c;      // channels
    uint d, h, w;
    uint tilesX, tilesY, tilesZ;
    uint split;  // JOIN: channels of the first part
} p;

shared float halo[2 * HP];
// The statistics' tree: count, mean and M2 per invocation.
shared float tn[WG];
shared float tm[WG];
shared float tq[WG];

// merge folds (nb, mb, qb) into (na, ma, qa) with Chan's formula; either
// side may be empty.
void merge(inout float na, inout float ma, inout float qa, float nb, float mb, float qb) {
    if (nb == 0.0) {
        return;
    }
    float n = na + nb;
    float dm = mb - ma;
    ma += dm * (nb / n);
    qa += qb + dm * dm * (na / n) * nb;
    na = n;
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint tilesXY = p.tilesX * p.tilesY;
    uint tiles = tilesXY * p.tilesZ;
    // live is the same for the whole workgroup: its barriers are reached
    // by all of it or by none.
    if (g >= p.planes * tiles) {
        return;
    }
    uint plane = g / tiles;
    uint t = g - plane * tiles;
    uint tz = t / tilesXY;
    t -= tz * tilesXY;
    uint ty = t / p.tilesX;
    uint tx = t - ty * p.tilesX;
    int x0 = int(tx * TW), y0 = int(ty * TH), z0 = int(tz * TD);
    uint ch = plane % p.c;
    uint lid = gl_LocalInvocationIndex;
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    uint xh = p.h / UH, xw = p.w / UW; // x's plane
    bool second = JOIN == 1 && ch >= p.split;
    uint n = plane / p.c;
    uint xBase = JOIN == 1
        ? (second ? (n * (p.c - p.split) + ch - p.split) : (n * p.split + ch)) * p.d * p.h * p.w
        : plane * (p.d / UD) * xh * xw;
    uint yBase = plane * p.d * p.h * p.w;

    float wr[KKK];
    [[unroll]] for (uint i = 0; i < KKK; i++) {
        wr[i] = w[ch * KKK + i];
    }
    float bias = BIAS ? b[ch] : 0.0;

    // load issues the loads of input plane gz's halo (zeros outside the
    // volume, selected after the loads from a clamped address).
    float hv[NL];
    const uint steps = TD + K - 1;
    int gz0 = z0 - PAD;
    bool zin = gz0 >= 0 && gz0 < int(p.d);
    [[unroll]] for (uint k = 0; k < NL; k++) {
        uint i = lid + k * WG;
        uint hy = i / HX;
        uint hx = i - hy * HX;
        int gy = y0 + int(hy) - PAD;
        int gx = x0 + int(hx) - PAD;
        bool inside = zin && i < HP && gy >= 0 && gy < int(p.h) && gx >= 0 && gx < int(p.w);
        uint at = inside ? xBase + (uint(gz0) / UD * xh + uint(gy) / UH) * xw + uint(gx) / UW : xBase;
        float v = second ? x2[at] : x[at];
        hv[k] = inside ? v : 0.0;
    }
    [[unroll]] for (uint k = 0; k < NL; k++) {
        uint i = lid + k * WG;
        if (i < HP) {
            halo[i] = hv[k];
        }
    }
    barrier();

    // acc[j] is output plane gz − PAD + j while input plane gz is added.
    float acc[K];
    [[unroll]] for (uint j = 0; j < K; j++) {
        acc[j] = bias;
    }
    uint ox = uint(x0) + lx, oy = uint(y0) + ly;
    bool colIn = ox < p.w && oy < p.h;
    float sn = 0.0, sm = 0.0, sq = 0.0; // Welford: count, mean, M2
    for (uint s = 0; s < steps; s++) {
        int gz = z0 - PAD + int(s);
        uint cur = (s & 1) * HP, nxt = HP - cur;
        // The next plane's loads, issued before this plane is used.
        int nz = gz + 1;
        bool more = s + 1 < steps;
        bool nin = more && nz >= 0 && nz < int(p.d);
        [[unroll]] for (uint k = 0; k < NL; k++) {
            uint i = lid + k * WG;
            uint hy = i / HX;
            uint hx = i - hy * HX;
            int gy = y0 + int(hy) - PAD;
            int gx = x0 + int(hx) - PAD;
            bool inside = nin && i < HP && gy >= 0 && gy < int(p.h) && gx >= 0 && gx < int(p.w);
            uint at = inside ? xBase + (uint(nz) / UD * xh + uint(gy) / UH) * xw + uint(gx) / UW : xBase;
            float v = second ? x2[at] : x[at];
            hv[k] = inside ? v : 0.0;
        }
        // Plane gz feeds output gz − PAD + j through kernel plane K−1−j.
        float nb[K * K];
        [[unroll]] for (uint kh = 0; kh < K; kh++) {
            [[unroll]] for (uint kw = 0; kw < K; kw++) {
                nb[kh * K + kw] = halo[cur + (ly + kh) * HX + lx + kw];
            }
        }
        [[unroll]] for (uint j = 0; j < K; j++) {
            uint kd = K - 1 - j;
            [[unroll]] for (uint kh = 0; kh < K; kh++) {
                [[unroll]] for (uint kw = 0; kw < K; kw++) {
                    acc[j] = fma(wr[(kd * K + kh) * K + kw], nb[kh * K + kw], acc[j]);
                }
            }
        }
        // Output gz − PAD has had its last plane.
        int oz = gz - PAD;
        if (colIn && oz >= z0 && oz < int(p.d)) {
            float v = acc[0];
            y[yBase + (uint(oz) * p.h + oy) * p.w + ox] = v;
            if (STATS) {
                sn += 1.0;
                float dv = v - sm;
                sm += dv / sn;
                sq += dv * (v - sm);
            }
        }
        [[unroll]] for (uint j = 0; j + 1 < K; j++) {
            acc[j] = acc[j + 1];
        }
        acc[K - 1] = bias;
        if (more) {
            [[unroll]] for (uint k = 0; k < NL; k++) {
                uint i = lid + k * WG;
                if (i < HP) {
                    halo[nxt + i] = hv[k];
                }
            }
        }
        barrier();
    }
    if (STATS) {
        tn[lid] = sn;
        tm[lid] = sm;
        tq[lid] = sq;
        barrier();
        for (uint h = 1u << findMSB(WG - 1); h > 0; h >>= 1) {
            if (lid < h && lid + h < WG) {
                float na = tn[lid], ma = tm[lid], qa = tq[lid];
                merge(na, ma, qa, tn[lid + h], tm[lid + h], tq[lid + h]);
                tn[lid] = na;
                tm[lid] = ma;
                tq[lid] = qa;
            }
            barrier();
        }
        if (lid == 0) {
            stats[g] = vec4(tm[0] * tn[0], tq[0], tn[0], tm[0]);
        }
    }
}
