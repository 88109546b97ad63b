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

const uint LW = VEC4 ? 4 : 1;

#include "inputs.glsl"
INPUT(0, x)
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) writeonly buffer Y4 { vec4 y4[]; };
layout(push_constant) uniform Push {
    uint items; // invocations that do work
    uint inD, inH, inW;
    uint outD, outH, outW;
    uint aD, aH, aW;
    uint block, stride, offset; // concat and split, in elements
} p;

void store(uint e, vec4 v) {
    if (VEC4) {
        y4[e / 4] = v;
    } else {
        y[e] = v.x;
    }
}

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.items) {
        return;
    }
    uint e = i * LW; // first output element of this invocation
    if (MODE == 0 || MODE == 1) {
        // e indexes the part; its elements map to one contiguous run of
        // the whole tensor per sample.
        uint n = e / p.block;
        uint w = n * p.stride + p.offset + (e - n * p.block);
        if (MODE == 0) {
            if (VEC4) {
                y4[w / 4] = x4(i);
            } else {
                y[w] = x(e);
            }
        } else {
            if (VEC4) {
                y4[i] = x4(w / 4);
            } else {
                y[e] = x(w);
            }
        }
        return;
    }
    // Coordinates of the first written element in the written tensor: the
    // forward output for modes 2 and 4, the forward input for 3 and 5.
    bool fwd = MODE == 2 || MODE == 4;
    uint W = fwd ? p.outW : p.inW;
    uint H = fwd ? p.outH : p.inH;
    uint D = fwd ? p.outD : p.inD;
    uint w0 = e % W;
    uint r = e / W;
    uint h = r % H;
    r /= H;
    uint d = r % D;
    uint nc = r / D;
    vec4 v = vec4(0.0);
    if (MODE == 2) {
        uint row = ((nc * p.inD + d / p.aD) * p.inH + h / p.aH) * p.inW;
        // One division for the LW elements: step the source column along.
        uint iw = w0 / p.aW;
        uint rem = w0 - iw * p.aW;
        [[unroll]] for (uint j = 0; j < LW; j++) {
            v[j] = x(row + iw);
            if (++rem == p.aW) {
                rem = 0;
                iw++;
            }
        }
    } else if (MODE == 3) {
        uint base = ((nc * p.outD + d * p.aD) * p.outH + h * p.aH) * p.outW;
        if (VEC4 && p.aW <= 2) {
            // The 4·aW source values of a row are aligned vec4s (the rows
            // are multiples of 4): load them whole.
            for (uint a = 0; a < p.aD; a++) {
                for (uint b = 0; b < p.aH; b++) {
                    uint q = (base + (a * p.outH + b) * p.outW + w0 * p.aW) / 4;
                    vec4 lo = x4(q);
                    if (p.aW == 1) {
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
            for (uint a = 0; a < p.aD; a++) {
                for (uint b = 0; b < p.aH; b++) {
                    uint q = base + (a * p.outH + b) * p.outW + (w0 + j) * p.aW;
                    for (uint c = 0; c < p.aW; c++) {
                        s += x(q + c);
                    }
                }
            }
            v[j] = s;
        }
    } else if (MODE == 4) {
        // Unsigned wrap-around makes coordinates before the input huge, so
        // one comparison per axis tests both sides.
        uint id = d - p.aD;
        uint ih = h - p.aH;
        if (id < p.inD && ih < p.inH) {
            uint row = ((nc * p.inD + id) * p.inH + ih) * p.inW;
            [[unroll]] for (uint j = 0; j < LW; j++) {
                uint iw = w0 + j - p.aW;
                if (iw < p.inW) {
                    v[j] = x(row + iw);
                }
            }
        }
    } else {
        uint row = ((nc * p.outD + d + p.aD) * p.outH + h + p.aH) * p.outW + p.aW;
        [[unroll]] for (uint j = 0; j < LW; j++) {
            v[j] = x(row + w0 + j);
        }
    }
    store(e, v);
}
