#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// layout: the shape operations, one pass each, chosen by MODE. Every
// invocation writes LW consecutive elements of its output (LW = 4 when VEC4,
// which the host picks only when the output's rows, or the concat blocks,
// are multiples of 4), so writes are coalesced along W. Backward passes are
// gathers over the input gradient: no atomics, every element written once.
//   0 concat part   y[n·stride + offset + r] = x[n·block + r]
//   1 split part    y[n·block + r] = x[n·stride + offset + r]
//                   (sample n is the workgroup's z, items counts one sample)
//   2 upsample      y[o] = x[o / factor]                  (nearest)
//   3 upsample bwd  y[i] = Σ over the factor block of x    (x = dy, y = dx)
//   4 pad           y[o] = x[o − before] inside, else 0
//   5 pad bwd       y[i] = x[i + before]                   (a crop)
// Modes 2-5 use the sizes "in" (the forward input) and "out" (the forward
// output); a is the factor (2, 3) or the padding before (4, 5).
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const bool VEC4 = false;
layout(constant_id = 2) const uint MODE = 0;
// The shapes of modes 2-5 (zero for 0 and 1), as specialization constants:
// divisions by them become multiplications, where a division by a push
// constant is a loop over the SIMD lanes on a CPU device.
layout(constant_id = 3) const uint IN_D = 1;
layout(constant_id = 4) const uint IN_H = 1;
layout(constant_id = 5) const uint IN_W = 1;
layout(constant_id = 6) const uint OUT_D = 1;
layout(constant_id = 7) const uint OUT_H = 1;
layout(constant_id = 8) const uint OUT_W = 1;
layout(constant_id = 9) const uint A_D = 1;
layout(constant_id = 10) const uint A_H = 1;
layout(constant_id = 11) const uint A_W = 1;

const uint LW = VEC4 ? 4 : 1;

#include "inputs.glsl"
INPUT(0, x)
// Mode 3 (the host asks no other): ACC adds the results to y's contents
// (an input gradient's second contribution) rather than storing over them.
layout(constant_id = 12) const bool ACC = false;
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) writeonly buffer Y4 { vec4 y4[]; };
// ACC: the contents, read through read-only views of the same binding.
layout(std430, binding = 1) readonly buffer YAcc { float yAcc[]; };
layout(std430, binding = 1) readonly buffer YAcc4 { vec4 yAcc4[]; };
layout(push_constant) uniform Push {
    uint items; // invocations that do work
    uint block, stride, offset; // concat and split, in elements
} p;

void store(uint e, vec4 v) {
    if (VEC4) {
        y4[e / 4] = ACC ? yAcc4[e / 4] + v : v;
    } else {
        y[e] = ACC ? yAcc[e] + v.x : v.x;
    }
}

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.items) {
        return;
    }
    uint e = i * LW; // first output element of this invocation
    if (MODE == 0 || MODE == 1) {
        // A part's sample is one contiguous run of the whole tensor. The
        // sample comes from the grid, not from a division by the block,
        // which a CPU device would do lane by lane.
        uint n = gl_WorkGroupID.z;
        uint w = n * p.stride + p.offset + e;
        uint q = n * p.block + e;
        if (MODE == 0) {
            if (VEC4) {
                y4[w / 4] = x4(q / 4);
            } else {
                y[w] = x(q);
            }
        } else {
            if (VEC4) {
                y4[q / 4] = x4(w / 4);
            } else {
                y[q] = x(w);
            }
        }
        return;
    }
    // Coordinates of the first written element in the written tensor: the
    // forward output for modes 2 and 4, the forward input for 3 and 5.
    bool fwd = MODE == 2 || MODE == 4;
    uint W = fwd ? OUT_W : IN_W;
    uint H = fwd ? OUT_H : IN_H;
    uint D = fwd ? OUT_D : IN_D;
    uint w0 = e % W;
    uint r = e / W;
    uint h = r % H;
    r /= H;
    uint d = r % D;
    uint nc = r / D;
    vec4 v = vec4(0.0);
    if (MODE == 2) {
        uint row = ((nc * IN_D + d / A_D) * IN_H + h / A_H) * IN_W;
        // One division for the LW elements: step the source column along.
        uint iw = w0 / A_W;
        uint rem = w0 - iw * A_W;
        [[unroll]] for (uint j = 0; j < LW; j++) {
            v[j] = x(row + iw);
            if (++rem == A_W) {
                rem = 0;
                iw++;
            }
        }
    } else if (MODE == 3) {
        uint base = ((nc * OUT_D + d * A_D) * OUT_H + h * A_H) * OUT_W;
        if (VEC4 && A_W <= 2) {
            // The 4·aW source values of a row are aligned vec4s (the rows
            // are multiples of 4): load them whole.
            for (uint a = 0; a < A_D; a++) {
                for (uint b = 0; b < A_H; b++) {
                    uint q = (base + (a * OUT_H + b) * OUT_W + w0 * A_W) / 4;
                    vec4 lo = x4(q);
                    if (A_W == 1) {
                        v += lo;
                    } else {
                        vec4 hi = x4(q + 1);
                        v += vec4(lo.x + lo.y, lo.z + lo.w, hi.x + hi.y, hi.z + hi.w);
                    }
                }
            }
            store(e, v);
            return;
        }
        [[unroll]] for (uint j = 0; j < LW; j++) {
            float s = 0.0;
            for (uint a = 0; a < A_D; a++) {
                for (uint b = 0; b < A_H; b++) {
                    uint q = base + (a * OUT_H + b) * OUT_W + (w0 + j) * A_W;
                    for (uint c = 0; c < A_W; c++) {
                        s += x(q + c);
                    }
                }
            }
            v[j] = s;
        }
    } else if (MODE == 4) {
        // Unsigned wrap-around makes coordinates before the input huge, so
        // one comparison per axis tests both sides.
        uint id = d - A_D;
        uint ih = h - A_H;
        if (id < IN_D && ih < IN_H) {
            uint row = ((nc * IN_D + id) * IN_H + ih) * IN_W;
            [[unroll]] for (uint j = 0; j < LW; j++) {
                uint iw = w0 + j - A_W;
                if (iw < IN_W) {
                    v[j] = x(row + iw);
                }
            }
        }
    } else {
        uint row = ((nc * OUT_D + d + A_D) * OUT_H + h + A_H) * OUT_W + A_W;
        [[unroll]] for (uint j = 0; j < LW; j++) {
            v[j] = x(row + w0 + j);
        }
    }
    store(e, v);
}
