#version 450
// optim: one optimiser step, elementwise over the parameters, in place;
// MODE 0 Adam, 1 SGD, 2 SGD with momentum (see ref.AdamParams and
// ref.SGDParams). Each invocation updates one element, or one vec4 when VEC4
// (the host picks it when the length is a multiple of 4). The host computes
// the step-dependent scalars in float64 and passes them rounded to float32.
//   Adam: g = grad + wd·param; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
//         param −= stepSize·m / (sqrt(v)/bc2Sqrt + eps)
//   SGD:  d = grad + wd·param; with momentum: buf = d on the first step,
//         else momentum·buf + (1−dampening)·d; d = d + momentum·buf
//         (Nesterov) or buf; param −= lr·d
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const bool VEC4 = false;

layout(std430, binding = 0) buffer Param { float param[]; };
layout(std430, binding = 0) buffer Param4 { vec4 param4[]; };
layout(std430, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, binding = 1) readonly buffer Grad4 { vec4 grad4[]; };
layout(std430, binding = 2) buffer M { float mbuf[]; }; // Adam m, SGD momentum buffer
layout(std430, binding = 2) buffer M4 { vec4 mbuf4[]; };
layout(std430, binding = 3) buffer V { float vbuf[]; }; // Adam v
layout(std430, binding = 3) buffer V4 { vec4 vbuf4[]; };
layout(push_constant) uniform Push {
    uint n;     // invocations that do work
    uint flags; // SGD with momentum: 1 Nesterov, 2 first step
    float lr;   // Adam: stepSize = lr/(1 − b1^t)
    float wd;
    float b1, oneMinusB1; // SGD: momentum, 1 − dampening
    float b2, oneMinusB2;
    float bc2Sqrt, eps;
} p;

// The update, written once for float and vec4 views of the buffers. Every
// temporary is precise: a compiler may otherwise fuse a product and a sum
// into an FMA in one view and not in the other (NVIDIA did), and a
// parameter group stepped whole (vec4s) would differ in its last bits from
// the same parameters stepped tensor by tensor (floats).
#define ADAM(T, P, G, MB, VB)                                        \
    {                                                                \
        T w = P[i];                                                  \
        precise T g = G[i] + p.wd * w;                               \
        precise T m = p.b1 * MB[i] + p.oneMinusB1 * g;               \
        precise T v = p.b2 * VB[i] + p.oneMinusB2 * g * g;           \
        MB[i] = m;                                                   \
        VB[i] = v;                                                   \
        precise T u = w - p.lr * m / (sqrt(v) / p.bc2Sqrt + p.eps);  \
        P[i] = u;                                                    \
    }

#define SGD(T, P, G, MB)                                             \
    {                                                                \
        T w = P[i];                                                  \
        precise T g = G[i] + p.wd * w;                               \
        if (MODE == 2) {                                             \
            precise T b = g;                                         \
            if ((p.flags & 2u) == 0) {                               \
                b = p.b1 * MB[i] + p.oneMinusB1 * g;                 \
            }                                                        \
            MB[i] = b;                                               \
            if ((p.flags & 1u) != 0) {                               \
                g += p.b1 * b;                                       \
            } else {                                                 \
                g = b;                                               \
            }                                                        \
        }                                                            \
        precise T u = w - p.lr * g;                                  \
        P[i] = u;                                                    \
    }

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    if (MODE == 0) {
        if (VEC4) {
            ADAM(vec4, param4, grad4, mbuf4, vbuf4)
        } else {
            ADAM(float, param, grad, mbuf, vbuf)
        }
    } else {
        if (VEC4) {
            SGD(vec4, param4, grad4, mbuf4)
        } else {
            SGD(float, param, grad, mbuf)
        }
    }
}
