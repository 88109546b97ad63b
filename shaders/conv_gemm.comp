#version 450
#extension GL_EXT_control_flow_attributes : require
// conv_gemm: the implicit GEMM behind every dense and pointwise convolution
// and transposed convolution, forward and backward. One convolution geometry
// (NCDHW): x [nb, c0, xs] is convolved with w [c1, c0, ks] (stride st, zero
// padding pb before each axis) into y [nb, c1, ys]. MODE picks which product
// this dispatch computes; no im2col matrix is ever stored, the tile loaders
// gather from the tensors directly.
//
//   0 FWD    C[c1, (b,o)]   = Σ_(c0,t)  w[c1,c0,t]·x[b,c0,i(o,t)] + bias[c1]
//            A = w, B = x, C = y.
//   1 DGRAD  C[c0, (b,i)]   = Σ_(c1,t)  w[c1,c0,t]·y[b,c1,o(i,t)] + bias[c0]
//            A = w, B = y, C = x. Each workgroup serves one stride phase
//            (i mod st per axis): within one phase only the taps with
//            t ≡ i + pb (mod st) reach an output voxel, so the K loop visits
//            exactly those and no zero products are formed. The phase is
//            the fastest-varying part of the workgroup index, so the phases
//            of one tile run together and their interleaved stores fill
//            whole memory sectors while those are still in cache.
//   2 WGRAD  C[c1, (c0,t)]  = Σ_(b,o)   y[b,c1,o]·x[b,c0,i(o,t)]
//            A = y, B = x, C = w.
// Split-K (any mode; the host splits when the output tiles are too few to
// fill the device): the workgroups of split s sum K range
// [s·chunk, (s+1)·chunk) and store C at offset s·|C| of a partials buffer,
// the bias in split 0 only; conv_splitk.comp adds the partials in a fixed
// order.
//
// POINTWISE (kernel 1, stride 1, no padding) drops the spatial gathers.
// Tiles: BM×BN outputs per workgroup, K in steps of BK through shared memory,
// TM×TN outputs per invocation. An invocation's rows come in groups of GM
// neighbours (4 when TM is a multiple of 4, else 1), the groups of one
// invocation strided by GM·BM/TM; columns likewise. Groups of 4 are read from
// shared memory as one vec4, which quarters the shared-memory instructions
// per FMA; neighbouring invocations still read and store neighbouring data.
// The K loop is software-pipelined: while one K step's tiles are multiplied
// out of shared memory, the next step's elements are already being loaded
// into registers, so the multiply does not wait for global memory.
// Accumulation is fp32 in a fixed order: results are bit-reproducible.
// With ACC the results are added to C's contents (an input gradient's second
// contribution) rather than stored over them.
//
// Index math is kept out of the inner loops: a gathered address splits into
// a voxel part (batch, output position) and a tap part (channel, kernel
// offset). Each invocation loads the same voxel (FWD, DGRAD) or tap (WGRAD)
// columns on every K step, so it decodes them once; the other part is
// decoded once per K step, into a BK-entry table (FWD, DGRAD; two tables,
// the next step's filled while the current one is read) or by the one k
// column the invocation loads (WGRAD). The host guarantees that WG is a
// multiple of BM, BN and BK and divides BM·BK and BN·BK, and that BM and BN
// are multiples of 4.
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 256; // = (BM/TM)·(BN/TN)
layout(constant_id = 3) const uint BM = 64;
layout(constant_id = 4) const uint BN = 64;
layout(constant_id = 5) const uint BK = 16;
layout(constant_id = 6) const uint TM = 4;
layout(constant_id = 7) const uint TN = 4;
layout(constant_id = 8) const uint MODE = 0;
layout(constant_id = 9) const bool POINTWISE = false;
layout(constant_id = 10) const bool ACC = false;

const uint FWD = 0;
const uint DGRAD = 1;
const uint WGRAD = 2;

layout(std430, binding = 0) readonly buffer ABuf { float abuf[]; };
layout(std430, binding = 1) readonly buffer BBuf { float bbuf[]; };
layout(std430, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) writeonly buffer CBuf { float cbuf[]; };
layout(std430, binding = 3) readonly buffer CAcc { float cAcc[]; }; // ACC: C's contents

void store(uint i, float v) {
    cbuf[i] = ACC ? cAcc[i] + v : v;
}

layout(push_constant) uniform Push {
    uvec4 xs;    // x spatial size d, h, w and voxels
    uvec4 ys;    // y spatial size d, h, w and voxels
    uvec4 ks;    // kernel d, h, w and taps
    uvec4 st;    // stride d, h, w; w: 1 when bias is bound
    uvec4 pb;    // padding before d, h, w; w: batch size nb
    uvec4 ch;    // c0, c1, splits, chunk (K per split, a multiple of BK)
    uvec4 gemm;  // M, N, K (N and K are per phase in DGRAD), elements of C
    uvec4 tiles; // tiles along M, tiles along N, stride phases, unused
} p;

const uint TPM = BM / TM;
const uint TPN = BN / TN;
const uint GM = (TM % 4 == 0) ? 4 : 1;
const uint GN = (TN % 4 == 0) ? 4 : 1;
// The shared tiles are k-major rows of vec4s, each row padded by one vec4
// so that the column-wise stores of the k-fastest loaders spread over the
// banks.
const uint SA4 = BM / 4 + 1;
const uint SB4 = BN / 4 + 1;
shared vec4 As[BK * SA4];
shared vec4 Bs[BK * SB4];
// Tap part of a K step's columns (FWD, DGRAD), one table per step parity:
// offset into the B tensor and kernel position, and for DGRAD the offset
// into w.
shared ivec4 kTab[2 * BK];
shared int kOffA[2 * BK];

const uint LA = BM * BK / WG; // A elements per invocation per K step
const uint LB = BN * BK / WG; // B elements per invocation per K step

// The next K step's elements, held between their load and their store into
// shared memory.
float aNext[LA];
float bNext[LB];

uvec3 split3(uint v, uvec3 size) {
    uint hw = size.y * size.z;
    uint d = v / hw;
    uint r = v - d * hw;
    uint h = r / size.z;
    return uvec3(d, h, r - h * size.z);
}

int flat3(ivec3 v, uvec3 size) {
    return (v.x * int(size.y) + v.y) * int(size.z) + v.z;
}

bool inside(ivec3 v, uvec3 size) {
    return all(greaterThanEqual(v, ivec3(0))) && all(lessThan(v, ivec3(size)));
}

// Tile coordinates (k row, m or n column) of the j-th A and B element an
// invocation loads: DGRAD's A loader runs along m, the FWD/DGRAD B loader
// along n, the others along k.
uvec2 aSlot(uint tid, uint j) {
    if (MODE == DGRAD) {
        return uvec2(tid / BM + j * (WG / BM), tid % BM);
    }
    return uvec2(tid % BK, tid / BK + j * (WG / BK));
}

uvec2 bSlot(uint tid, uint j) {
    if (MODE == WGRAD) {
        return uvec2(tid % BK, tid / BK + j * (WG / BK));
    }
    return uvec2(tid / BN + j * (WG / BN), tid % BN);
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint tilesMN = p.tiles.x * p.tiles.y;
    uint phases = p.tiles.z;
    // Workgroup index, fastest first: stride phase, M tile (the tiles that
    // share one B tile run together), N tile, split. Surplus workgroups of
    // the flattened grid compute nothing but still reach every barrier.
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    bool live = g < tilesMN * p.ch.z * phases;
    uint phaseIdx = g % phases;
    uint r = g / phases;
    uint s = r / tilesMN;
    r -= s * tilesMN;
    uint m0 = (r % p.tiles.x) * BM;
    uint n0 = (r / p.tiles.x) * BN;

    uint c0 = p.ch.x;
    uint c1 = p.ch.y;
    uint M = p.gemm.x;
    uint N = p.gemm.y;
    uint K = p.gemm.z;
    uvec3 stv = p.st.xyz;

    // DGRAD: the stride phase of this layer of workgroups. Its input voxels
    // are i = phase + st·j (pn per axis); the taps reaching an output are
    // t = t0 + st·jt (nt per axis), at o = q + j − jt.
    uvec3 phase = uvec3(0);
    uvec3 pn = uvec3(1);
    ivec3 t0 = ivec3(0);
    uvec3 nt = uvec3(1);
    ivec3 q = ivec3(0);
    uint ntaps = 1;
    if (MODE == DGRAD) {
        phase = split3(phaseIdx, stv);
        uvec3 xsz = p.xs.xyz;
        pn = uvec3(greaterThan(xsz, phase)) * ((xsz - phase + stv - 1u) / stv);
        uvec3 sh = phase + p.pb.xyz;
        t0 = ivec3(sh % stv);
        uvec3 ksz = p.ks.xyz;
        nt = uvec3(greaterThan(ksz, uvec3(t0))) * ((ksz - uvec3(t0) + stv - 1u) / stv);
        q = ivec3(sh / stv);
        ntaps = nt.x * nt.y * nt.z;
        N = p.pb.w * pn.x * pn.y * pn.z;
        K = c1 * ntaps;
    }
    uint kBegin = s * p.ch.w;
    uint kEnd = min(kBegin + p.ch.w, K);

    // Voxel part of the one B column this invocation loads (FWD, DGRAD):
    // base offset and origin of the window in the gathered tensor.
    uint bn = tid % BN;
    bool nLive = live && n0 + bn < N;
    int vBase = 0;
    ivec3 vOrg = ivec3(0);
    if (MODE == FWD && nLive) {
        uint n = n0 + bn;
        uint b = n / p.ys.w;
        uint o = n - b * p.ys.w;
        if (POINTWISE) {
            vBase = int(b * c0 * p.xs.w + o);
        } else {
            vOrg = ivec3(split3(o, p.ys.xyz) * stv) - ivec3(p.pb.xyz);
            vBase = int(b * c0 * p.xs.w) + flat3(vOrg, p.xs.xyz);
        }
    } else if (MODE == DGRAD && nLive) {
        uint pv = pn.x * pn.y * pn.z;
        uint n = n0 + bn;
        uint b = n / pv;
        if (POINTWISE) {
            vBase = int(b * c1 * p.ys.w + n - b * pv);
        } else {
            vOrg = q + ivec3(split3(n - b * pv, pn));
            vBase = int(b * c1 * p.ys.w) + flat3(vOrg, p.ys.xyz);
        }
    }
    // Tap part of the LB B columns this invocation loads (WGRAD).
    ivec4 nTap[LB];
    if (MODE == WGRAD) {
        [[unroll]] for (uint j = 0; j < LB; j++) {
            uint n = n0 + bSlot(tid, j).y;
            uint c = n / p.ks.w;
            uint t = n - c * p.ks.w;
            ivec3 t3 = ivec3(split3(t, p.ks.xyz));
            int off = POINTWISE ? int(n * p.xs.w) : int(c * p.xs.w) + flat3(t3, p.xs.xyz);
            nTap[j] = ivec4(n < N ? off : -1, t3);
        }
    }

    uint tm = tid / TPN;
    uint tn = tid - tm * TPN;
    float acc[TM * TN];
    [[unroll]] for (uint i = 0; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    float av[TM];
    float bv[TN];

    // Step 0's table; each later step's is filled one step ahead.
    uint tb = 0;
    if (MODE != WGRAD) {
        if (tid < BK) {
            uint k = kBegin + tid;
            if (MODE == FWD) {
                uint c = k / p.ks.w;
                ivec3 t3 = ivec3(split3(k - c * p.ks.w, p.ks.xyz));
                int off = POINTWISE ? int(k * p.xs.w) : int(c * p.xs.w) + flat3(t3, p.xs.xyz);
                kTab[tid] = ivec4(off, t3);
            } else {
                uint co = k / ntaps;
                ivec3 jt = ivec3(split3(k - co * ntaps, nt));
                int off = POINTWISE ? int(k * p.ys.w) : int(co * p.ys.w) - flat3(jt, p.ys.xyz);
                kTab[tid] = ivec4(off, jt);
                ivec3 t = t0 + jt * ivec3(stv);
                kOffA[tid] = int(co * c0 * p.ks.w) + flat3(t, p.ks.xyz);
            }
        }
        barrier();
    }

    for (uint k0 = kBegin; k0 < kEnd + BK; k0 += BK) {
        // From the second pass on: store the elements loaded in the last
        // pass (step k0 − BK) and fill the table of step k0.
        if (k0 > kBegin) {
            [[unroll]] for (uint j = 0; j < LA; j++) {
                uvec2 e = aSlot(tid, j);
                As[e.x * SA4 + e.y / 4][e.y % 4] = aNext[j];
            }
            [[unroll]] for (uint j = 0; j < LB; j++) {
                uvec2 e = bSlot(tid, j);
                Bs[e.x * SB4 + e.y / 4][e.y % 4] = bNext[j];
            }
            tb = BK - tb;
            if (MODE != WGRAD && tid < BK && k0 < kEnd) {
                uint k = k0 + tid;
                if (MODE == FWD) {
                    uint c = k / p.ks.w;
                    ivec3 t3 = ivec3(split3(k - c * p.ks.w, p.ks.xyz));
                    int off = POINTWISE ? int(k * p.xs.w) : int(c * p.xs.w) + flat3(t3, p.xs.xyz);
                    kTab[tb + tid] = ivec4(off, t3);
                } else {
                    uint co = k / ntaps;
                    ivec3 jt = ivec3(split3(k - co * ntaps, nt));
                    int off = POINTWISE ? int(k * p.ys.w) : int(co * p.ys.w) - flat3(jt, p.ys.xyz);
                    kTab[tb + tid] = ivec4(off, jt);
                    ivec3 t = t0 + jt * ivec3(stv);
                    kOffA[tb + tid] = int(co * c0 * p.ks.w) + flat3(t, p.ks.xyz);
                }
            }
            barrier();
        }

        // Load step k0's elements into registers.
        if (k0 < kEnd) {
            if (MODE == FWD) { // A: w rows, contiguous along k
                [[unroll]] for (uint j = 0; j < LA; j++) {
                    uvec2 e = aSlot(tid, j);
                    uint m = m0 + e.y;
                    uint k = k0 + e.x;
                    aNext[j] = (live && m < M && k < kEnd) ? abuf[m * K + k] : 0.0;
                }
            } else if (MODE == DGRAD) { // A: w[co, m, t], along m
                [[unroll]] for (uint j = 0; j < LA; j++) {
                    uvec2 e = aSlot(tid, j);
                    uint m = m0 + e.y;
                    bool ok = live && m < M && k0 + e.x < kEnd;
                    aNext[j] = ok ? abuf[kOffA[tb + e.x] + int(m * p.ks.w)] : 0.0;
                }
            }
            if (MODE == WGRAD) {
                // The invocation's k column: batch b, output voxel o.
                uint k = k0 + tid % BK;
                bool kLive = live && k < kEnd;
                uint b = k / p.ys.w;
                uint o = k - b * p.ys.w;
                ivec3 org = ivec3(0);
                int base;
                if (POINTWISE) {
                    base = int(b * c0 * p.xs.w + o);
                } else {
                    org = ivec3(split3(o, p.ys.xyz) * stv) - ivec3(p.pb.xyz);
                    base = int(b * c0 * p.xs.w) + flat3(org, p.xs.xyz);
                }
                [[unroll]] for (uint j = 0; j < LB; j++) {
                    ivec4 e = nTap[j];
                    bool ok = kLive && e.x >= 0 && (POINTWISE || inside(org + e.yzw, p.xs.xyz));
                    bNext[j] = ok ? bbuf[base + e.x] : 0.0;
                }
                // A: the y rows of this k column.
                int aBase = int((b * c1 + m0) * p.ys.w + o);
                [[unroll]] for (uint j = 0; j < LA; j++) {
                    uint mm = aSlot(tid, j).y;
                    aNext[j] = (kLive && m0 + mm < M) ? abuf[aBase + int(mm * p.ys.w)] : 0.0;
                }
            } else {
                [[unroll]] for (uint j = 0; j < LB; j++) {
                    uint kk = bSlot(tid, j).x;
                    ivec4 e = kTab[tb + kk];
                    bool ok = nLive && k0 + kk < kEnd;
                    if (!POINTWISE) {
                        if (MODE == FWD) {
                            ok = ok && inside(vOrg + e.yzw, p.xs.xyz);
                        } else {
                            ok = ok && inside(vOrg - e.yzw, p.ys.xyz);
                        }
                    }
                    bNext[j] = ok ? bbuf[vBase + e.x] : 0.0;
                }
            }
        }

        // Multiply out step k0 − BK, stored above.
        if (k0 > kBegin) {
            [[unroll]] for (uint kk = 0; kk < BK; kk++) {
                [[unroll]] for (uint i = 0; i < TM / GM; i++) {
                    uint at = kk * SA4 + ((tm + i * TPM) * GM) / 4;
                    if (GM == 4) {
                        vec4 v = As[at];
                        [[unroll]] for (uint c = 0; c < 4; c++) {
                            av[i * 4 + c] = v[c];
                        }
                    } else {
                        av[i] = As[at][(tm + i * TPM) % 4];
                    }
                }
                [[unroll]] for (uint j = 0; j < TN / GN; j++) {
                    uint at = kk * SB4 + ((tn + j * TPN) * GN) / 4;
                    if (GN == 4) {
                        vec4 v = Bs[at];
                        [[unroll]] for (uint c = 0; c < 4; c++) {
                            bv[j * 4 + c] = v[c];
                        }
                    } else {
                        bv[j] = Bs[at][(tn + j * TPN) % 4];
                    }
                }
                [[unroll]] for (uint i = 0; i < TM; i++) {
                    [[unroll]] for (uint j = 0; j < TN; j++) {
                        acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]);
                    }
                }
            }
            barrier();
        }
    }

    if (!live) {
        return;
    }
    bool hasBias = p.st.w != 0 && s == 0;
    uint cOff = s * p.gemm.w;
    [[unroll]] for (uint i = 0; i < TM; i++) {
        uint m = m0 + (i / GM) * (GM * TPM) + tm * GM + i % GM;
        if (m >= M) {
            continue;
        }
        float bm = (MODE != WGRAD && hasBias) ? bias[m] : 0.0;
        [[unroll]] for (uint j = 0; j < TN; j++) {
            uint n = n0 + (j / GN) * (GN * TPN) + tn * GN + j % GN;
            if (n >= N) {
                continue;
            }
            float v = acc[i * TN + j] + bm;
            if (MODE == FWD) {
                uint b = n / p.ys.w;
                store(cOff + (b * c1 + m) * p.ys.w + (n - b * p.ys.w), v);
            } else if (MODE == DGRAD) {
                uint pv = pn.x * pn.y * pn.z;
                uint b = n / pv;
                uvec3 i3 = phase + split3(n - b * pv, pn) * stv;
                store(cOff + (b * c0 + m) * p.xs.w + uint(flat3(ivec3(i3), p.xs.xyz)), v);
            } else {
                store(cOff + m * N + n, v);
            }
        }
    }
}
