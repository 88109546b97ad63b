#version 450
#extension GL_EXT_control_flow_attributes : require
// bench: micro-kernels that measure a device's peaks for the benchmark
// report. MODE 0 copies vec4s (memory bandwidth), PER per invocation laid
// out as elementwise.comp's items (all loaded before the first is stored);
// MODE 1 runs sixteen
// independent FMA chains per invocation, four vec4s (fp32 arithmetic
// throughput: enough chains that a CPU device's SIMD lanes never wait for
// the previous FMA's result), and stores their sum so the work cannot be
// removed.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const uint ITER = 1024;
layout(constant_id = 3) const uint PER = 1; // MODE 0

layout(std430, binding = 0) readonly buffer X { vec4 x[]; };
layout(std430, binding = 1) writeonly buffer Y { vec4 y[]; };
layout(push_constant) uniform Push {
    uint n; // vec4 elements
    float a;
} p;

void main() {
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (MODE == 0) {
        uint first = group * wg * PER + gl_LocalInvocationID.x;
        vec4 v[PER];
        [[unroll]] for (uint k = 0; k < PER; k++) {
            uint i = first + k * wg;
            v[k] = i < p.n ? x[i] : vec4(0.0);
        }
        [[unroll]] for (uint k = 0; k < PER; k++) {
            uint i = first + k * wg;
            if (i < p.n) {
                y[i] = v[k];
            }
        }
        return;
    }
    uint i = group * wg + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    // Each chain s ← s·a + c tends to c / (1 − a): finite for a < 1.
    vec4 c0 = x[i], c1 = c0 + 1.0, c2 = c0 + 2.0, c3 = c0 + 3.0;
    vec4 s0 = c0, s1 = c1, s2 = c2, s3 = c3;
    vec4 b = vec4(p.a);
    for (uint k = 0; k < ITER; k++) {
        s0 = fma(s0, b, c0);
        s1 = fma(s1, b, c1);
        s2 = fma(s2, b, c2);
        s3 = fma(s3, b, c3);
    }
    y[i] = (s0 + s1) + (s2 + s3);
}
