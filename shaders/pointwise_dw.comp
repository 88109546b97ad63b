#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// pointwise_dw: first pass of a pointwise convolution's weight and bias
// gradients when the channels are few,
//   dw[co, ci] = Σ_n Σ_v dy[n, co, v] · x[n, ci, v],   db[co] = Σ_n Σ_v dy[n, co, v],
// as a deterministic split reduction (no atomics). Workgroup g handles one
// block of COB output × CIB input channels and one chunk of the flattened
// (n, v) range; each invocation walks the chunk's items, VPI neighbouring
// ones at a time WG·VPI apart, reads their x and dy columns once (vec4
// when VEC4) and keeps COB·CIB + COB running sums in registers. No barrier
// inside the loop: a split-K GEMM with channel tiles this small spends its
// time in them. At the end a fixed two-level tree sums the invocations, RG
// sums per round, in shared memory, and the workgroup writes its sums into
// the chunk's row of the partials: dw[co, ci] at co·CIN + ci, db[co] at
// dbAt + co (written by the blocks of the first input-channel block only).
// With OWN each invocation instead takes a block and chunk of its own,
// walks its items VPI at a time and writes its sums there, without a tree.
// conv_splitk adds the chunks' rows in order.
// With NORM, x is the instance norm of the tensor bound, computed as it is
// read from the norm's statistics and parameters (with its LeakyReLU when
// LEAKY), as pointwise_small's NORM does: the normalised tensor of a
// training step need not be kept.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint CIN = 8;
layout(constant_id = 2) const uint COUT = 8;
layout(constant_id = 3) const uint CIB = 8; // input channels per block
layout(constant_id = 4) const uint COB = 8; // output channels per block
layout(constant_id = 5) const bool VEC4 = true;
layout(constant_id = 6) const uint RG = 8; // sums per reduction round
layout(constant_id = 7) const uint VPI = 1; // neighbouring items per invocation and step
// OWN (CPU devices): each invocation sums its own block and chunk and
// writes them, with no shared memory or barrier.
layout(constant_id = 8) const bool OWN = false;
layout(constant_id = 9) const bool NORM = false;
layout(constant_id = 10) const bool LEAKY = false;

const uint TB = COB * CIB;
const uint TBX = TB + COB; // the weights' sums and dy's
const uint S = 8;          // invocations per sum in the first reduction level
const uint SEG = WG / S;   // values each of them adds
const uint CIBLOCKS = (CIN + CIB - 1) / CIB;

#include "inputs.glsl"
INPUT(0, x)
INPUT(1, dy)
layout(std430, binding = 2) writeonly buffer P { float partial[]; };
layout(std430, binding = 3) readonly buffer Gamma { float gamma[]; }; // NORM
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
layout(std430, binding = 5) readonly buffer Mean { float mean[]; };
layout(std430, binding = 6) readonly buffer InvStd { float invStd[]; };
layout(push_constant) uniform Push {
    uint items;    // per (sample, channel) plane: voxels, or vec4s with VEC4
    uint total;    // batch × items
    uint chunks;   // chunks of the (n, v) range
    uint perChunk; // items per chunk
    uint stride;   // floats per chunk row of the partials
    uint dbAt;     // where db's sums start in a row
    float slope;   // NORM and LEAKY: the LeakyReLU's
} p;

shared float sh[RG * WG];

// addItems adds the products of items ib, ib + step, … below i1, VPI
// neighbouring ones at a time, into acc.
void addItems(uint ib, uint i1, uint step, uint ci0, uint co0, inout float acc[TBX]) {
    for (; ib < i1; ib += step) {
        vec4 xs[VPI][CIB];
        vec4 ds[VPI][COB];
        [[unroll]] for (uint k = 0; k < VPI; k++) {
            // Items past the range read its last one and count as 0.
            uint i = min(ib + k, i1 - 1);
            bool in1 = ib + k < i1;
            uint n = i / p.items;
            uint v = i - n * p.items;
            [[unroll]] for (uint ci = 0; ci < CIB; ci++) {
                uint c = min(ci0 + ci, CIN - 1);
                uint at = (n * CIN + c) * p.items + v;
                vec4 xv = VEC4 ? x4(at) : vec4(x(at), 0.0, 0.0, 0.0);
                if (NORM) {
                    vec4 z = gamma[c] * ((xv - mean[n * CIN + c]) * invStd[n * CIN + c]) + beta[c];
                    xv = LEAKY ? mix(z * p.slope, z, greaterThan(z, vec4(0.0))) : z;
                }
                xs[k][ci] = in1 ? xv : vec4(0.0);
            }
            [[unroll]] for (uint co = 0; co < COB; co++) {
                uint at = (n * COUT + min(co0 + co, COUT - 1)) * p.items + v;
                vec4 dv = VEC4 ? dy4(at) : vec4(dy(at), 0.0, 0.0, 0.0);
                ds[k][co] = in1 ? dv : vec4(0.0);
            }
        }
        [[unroll]] for (uint co = 0; co < COB; co++) {
            [[unroll]] for (uint k = 0; k < VPI; k++) {
                vec4 d = ds[k][co];
                if (VEC4) {
                    acc[TB + co] += ((d.x + d.y) + d.z) + d.w;
                } else {
                    acc[TB + co] += d.x;
                }
            }
            [[unroll]] for (uint ci = 0; ci < CIB; ci++) {
                float a = acc[co * CIB + ci];
                [[unroll]] for (uint k = 0; k < VPI; k++) {
                    vec4 d = ds[k][co];
                    a = fma(d.x, xs[k][ci].x, a);
                    if (VEC4) {
                        a = fma(d.w, xs[k][ci].w, fma(d.z, xs[k][ci].z, fma(d.y, xs[k][ci].y, a)));
                    }
                }
                acc[co * CIB + ci] = a;
            }
        }
    }
}

// store writes sum j of the block at (ci0, co0) into the partials' row.
void store(uint row, uint j, uint ci0, uint co0, float total) {
    if (j < TB) {
        uint co = co0 + j / CIB, ci = ci0 + j % CIB;
        if (co < COUT && ci < CIN) {
            partial[row + co * CIN + ci] = total;
        }
    } else if (ci0 == 0 && co0 + (j - TB) < COUT) {
        partial[row + p.dbAt + co0 + (j - TB)] = total;
    }
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint blocks = ((COUT + COB - 1) / COB) * CIBLOCKS;
    uint lid = gl_LocalInvocationID.x;
    float acc[TBX];
    [[unroll]] for (uint j = 0; j < TBX; j++) {
        acc[j] = 0.0;
    }
    if (OWN) {
        uint inv = g * WG + lid;
        if (inv >= blocks * p.chunks) {
            return;
        }
        uint chunk = inv % p.chunks, blk = inv / p.chunks;
        uint co0 = (blk / CIBLOCKS) * COB, ci0 = (blk % CIBLOCKS) * CIB;
        uint i0 = chunk * p.perChunk;
        addItems(i0, min(i0 + p.perChunk, p.total), VPI, ci0, co0, acc);
        [[unroll]] for (uint j = 0; j < TBX; j++) {
            store(chunk * p.stride, j, ci0, co0, acc[j]);
        }
        return;
    }
    bool live = g < blocks * p.chunks;
    uint chunk = g % p.chunks;
    uint blk = g / p.chunks;
    uint co0 = (blk / CIBLOCKS) * COB;
    uint ci0 = (blk % CIBLOCKS) * CIB;
    uint i0 = chunk * p.perChunk;
    uint i1 = live ? min(i0 + p.perChunk, p.total) : i0;
    addItems(i0 + lid * VPI, i1, WG * VPI, ci0, co0, acc);

    // Sum the invocations: S invocations per sum each add SEG values in
    // order, then one invocation per sum adds those S.
    uint row = chunk * p.stride;
    [[unroll]] for (uint j0 = 0; j0 < TBX; j0 += RG) {
        barrier();
        [[unroll]] for (uint j = 0; j < RG; j++) {
            if (j0 + j < TBX) {
                sh[j * WG + lid] = acc[j0 + j];
            }
        }
        barrier();
        float s = 0.0;
        uint jj = lid / S, ss = lid - jj * S;
        if (lid < RG * S && j0 + jj < TBX) {
            for (uint k = 0; k < SEG; k++) {
                s += sh[jj * WG + ss * SEG + k];
            }
        }
        barrier();
        if (lid < RG * S) {
            sh[lid] = s;
        }
        barrier();
        uint j = j0 + lid;
        if (live && lid < RG && j < TBX) {
            float total = 0.0;
            for (uint k = 0; k < S; k++) {
                total += sh[lid * S + k];
            }
            store(row, j, ci0, co0, total);
        }
    }
}
