#version 450
// norm_combine: second pass of the instance norm's reductions, one
// invocation per result, adding the chunks of norm_stats in chunk order:
//   MODE 0: per plane nc, merges the chunks' (count, mean, M2) with Chan's
//           parallel formula and writes stats[nc] = (mean, 1/sqrt(M2/V + eps))
//           and, when present, the mean (a) and invStd (b) outputs.
//   MODE 1: per channel c, adds Σ g and Σ g·x̂ over chunks, one sample at a
//           time, writes coef[nc] = (Σ g / V, Σ g·x̂ / V) for the input
//           gradient and, summed over samples, dgamma (a) and dbeta (b).
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint WY = 1;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const uint MODE = 0;

layout(std430, binding = 0) readonly buffer P { vec2 partial[]; };
layout(std430, binding = 1) writeonly buffer S { vec2 res[]; };
layout(std430, binding = 2) writeonly buffer A { float a[]; };
layout(std430, binding = 3) writeonly buffer B { float b[]; };
layout(push_constant) uniform Push {
    uint nc, c, v;
    uint ch, chunks;
    uint residual, leaky, hasA, hasB;
    float slope, eps;
} p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (MODE == 0) {
        if (i >= p.nc) {
            return;
        }
        vec2 c0 = partial[i * p.chunks];
        float n = float(min(p.ch, p.v)), mean = c0.x, m2 = c0.y;
        for (uint j = 1; j < p.chunks; j++) {
            vec2 cj = partial[i * p.chunks + j];
            float nj = float(min(p.ch, p.v - j * p.ch));
            float nab = n + nj;
            float d = cj.x - mean;
            mean += d * (nj / nab);
            m2 += cj.y + d * d * (n / nab) * nj;
            n = nab;
        }
        float inv = 1.0 / sqrt(m2 / float(p.v) + p.eps);
        res[i] = vec2(mean, inv);
        if (p.hasA != 0) {
            a[i] = mean;
        }
        if (p.hasB != 0) {
            b[i] = inv;
        }
    } else {
        if (i >= p.c) {
            return;
        }
        uint samples = p.nc / p.c;
        vec2 total = vec2(0.0);
        for (uint n = 0; n < samples; n++) {
            uint nc = n * p.c + i;
            vec2 s = vec2(0.0);
            for (uint j = 0; j < p.chunks; j++) {
                s += partial[nc * p.chunks + j];
            }
            res[nc] = s / float(p.v);
            total += s;
        }
        if (p.hasA != 0) {
            a[i] = total.y;
        }
        if (p.hasB != 0) {
            b[i] = total.x;
        }
    }
}
