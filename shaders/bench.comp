#version 450
// bench: micro-kernels that measure a device's peaks for the benchmark
// report. MODE 0 copies vec4s (memory bandwidth); MODE 1 runs sixteen
// independent FMA chains per invocation, four vec4s (fp32 arithmetic
// throughput: enough chains that a CPU device's SIMD lanes never wait for
// the previous FMA's result), and stores their sum so the work cannot be
// removed.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MODE = 0;
layout(constant_id = 2) const uint ITER = 1024;

layout(std430, binding = 0) readonly buffer X { vec4 x[]; };
layout(std430, binding = 1) writeonly buffer Y { vec4 y[]; };
layout(push_constant) uniform Push {
    uint n; // vec4 elements
    float a;
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    if (MODE == 0) {
        y[i] = x[i];
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
