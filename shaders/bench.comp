#version 450
// bench: micro-kernels that measure a device's peaks for the benchmark
// report. MODE 0 copies vec4s (memory bandwidth); MODE 1 runs eight
// independent FMA chains per invocation (fp32 arithmetic throughput) and
// stores their sum so the work cannot be removed.
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
    vec4 s0 = x[i], s1 = s0 + 1.0;
    vec4 b = vec4(p.a);
    for (uint k = 0; k < ITER; k++) {
        s0 = fma(s0, b, s1);
        s1 = fma(s1, b, s0);
    }
    y[i] = s0 + s1;
}
