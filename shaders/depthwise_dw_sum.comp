#version 450
// depthwise_dw_sum: second pass of the depthwise weight gradient. One
// invocation per weight (c, tap) adds the chunk partials that depthwise_dw
// wrote for it, in chunk order, so every run gives the same bits.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(std430, binding = 0) readonly buffer P { float partial[]; };
layout(std430, binding = 1) writeonly buffer DW { float dw[]; };
layout(push_constant) uniform Push {
    uint c;
    uint taps;   // K³
    uint tb;     // taps per block
    uint blocks; // blocks per channel
    uint chunks; // chunks per (channel, block)
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.c * p.taps) {
        return;
    }
    uint ch = i / p.taps;
    uint tap = i - ch * p.taps;
    uint blk = tap / p.tb;
    uint j = tap - blk * p.tb;
    uint at = (ch * p.blocks + blk) * p.chunks * p.tb + j;
    float s = 0.0;
    for (uint k = 0; k < p.chunks; k++) {
        s += partial[at + k * p.tb];
    }
    dw[i] = s;
}
