#version 450
#extension GL_GOOGLE_include_directive : require
// depthwise_dw_sum: second pass of the depthwise weight gradient. One
// invocation per weight (c, tap), and with hasDB one more per channel for
// the bias gradient, adds the chunk partials that
// depthwise_dw wrote for it, in chunk order, so every run gives the same
// bits.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

#include "inputs.glsl"
INPUT(0, partial)
layout(std430, binding = 1) writeonly buffer DW { float dw[]; };
layout(std430, binding = 2) writeonly buffer DB { float db[]; };
layout(push_constant) uniform Push {
    uint c;
    uint taps;   // K³
    uint tb;     // taps per block; depthwise_dw writes tb + 1 sums per group
    uint blocks; // blocks per channel
    uint chunks; // chunks per (channel, block)
    uint hasDB;
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint weights = p.c * p.taps;
    if (i >= weights + (p.hasDB != 0 ? p.c : 0)) {
        return;
    }
    uint ch, blk, j;
    if (i < weights) {
        ch = i / p.taps;
        uint tap = i - ch * p.taps;
        blk = tap / p.tb;
        j = tap - blk * p.tb;
    } else {
        ch = i - weights;
        blk = 0;
        j = p.tb; // block 0's sum of dy, after its taps
    }
    uint stride = p.tb + 1;
    uint at = (ch * p.blocks + blk) * p.chunks * stride + j;
    float s = 0.0;
    for (uint k = 0; k < p.chunks; k++) {
        s += partial(at + k * stride);
    }
    if (i < weights) {
        dw[i] = s;
    } else {
        db[i - weights] = s;
    }
}
