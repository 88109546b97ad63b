#version 450
#extension GL_GOOGLE_include_directive : require
// reduce_channels: deterministic per-channel sums of an [N, C, V] tensor,
// sums[c] = Σ_n Σ_v x[n, c, v] (bias gradients and similar). Two passes
// chosen by PASS, with no atomics so every run gives the same bits:
//   0: workgroup (j, c) sums the j-th segment of the flattened (n, v) range
//      of channel c into partial[c·chunks + j];
//   1: workgroup c sums partial[c·chunks .. c·chunks + chunks) into sums[c].
// Each invocation adds a strided subset in order (with VEC4, four
// consecutive elements at a time, when planes and segments are multiples of
// four), then a fixed binary tree in shared memory combines the
// invocations.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256; // a power of two
layout(constant_id = 1) const uint PASS = 0;
layout(constant_id = 2) const bool VEC4 = false;

#include "inputs.glsl"
INPUT(0, x)
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push {
    uint n;      // batch
    uint c;      // channels
    uint vox;    // voxels per (n, c)
    uint seg;    // pass 0: elements per segment
    uint chunks; // segments per channel
} p;

shared float sums[WG];

void main() {
    uint lid = gl_LocalInvocationID.x;
    float s = 0.0;
    if (PASS == 0) {
        uint j = gl_WorkGroupID.x;
        uint ch = gl_WorkGroupID.y;
        uint total = p.n * p.vox;
        uint begin = j * p.seg;
        uint end = min(begin + p.seg, total);
        uint lanes = VEC4 ? 4 : 1;
        // Position (sample nn, voxel v) of the invocation's first element,
        // then stepped along without a division per element.
        uint e = begin + lid * lanes;
        uint nn = e / p.vox;
        uint v = e - nn * p.vox;
        for (; e < end; e += WG * lanes) {
            uint at = (nn * p.c + ch) * p.vox + v;
            if (VEC4) {
                vec4 q = x4(at / 4);
                s += (q.x + q.y) + (q.z + q.w);
            } else {
                s += x(at);
            }
            v += WG * lanes;
            if (v >= p.vox) {
                uint q = v / p.vox;
                nn += q;
                v -= q * p.vox;
            }
        }
    } else {
        uint ch = gl_WorkGroupID.x;
        for (uint j = lid; j < p.chunks; j += WG) {
            s += x(ch * p.chunks + j);
        }
    }
    sums[lid] = s;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        barrier();
    }
    if (lid == 0) {
        if (PASS == 0) {
            y[gl_WorkGroupID.y * p.chunks + gl_WorkGroupID.x] = sums[0];
        } else {
            y[gl_WorkGroupID.x] = sums[0];
        }
    }
}
