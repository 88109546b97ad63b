#version 450
// norm_combine: second pass of the instance norm's reductions, one workgroup
// per result. Invocation l takes chunks l, l + WG, l + 2·WG, … of norm_stats
// in order, then the invocations' results meet in a fixed binary tree in
// shared memory: the work per result is spread over the workgroup instead
// of a chain of chunks/1 dependent steps, and the bits are the same on
// every run.
//   MODE 0: per plane nc, merges the chunks' (count, mean, M2) with Chan's
//           parallel formula and writes the mean (a) and invStd =
//           1/sqrt(M2/V + eps) (b). The chunks are norm_stats' (mean, M2)
//           pairs, ch voxels each but the last. With COUNTED they are the
//           (sum, M2, count, mean) vec4s of a kernel that computed them as
//           it wrote its output (a depthwise convolution's tiles), merged
//           in two passes as a plane's values would be: the sums give the
//           plane's mean, then each chunk adds its M2 and count·(its mean −
//           the plane's)², which keeps the precision of the plane's own
//           two-pass statistics (Chan's merges, one chunk at a time, lose
//           about an ulp over many small chunks).
//   MODE 1: per channel c, adds Σ g and Σ g·x̂ over chunks, one sample at a
//           time, writes coef[nc] = (Σ g / V, Σ g·x̂ / V) for the input
//           gradient and, summed over samples, dgamma (a) and dbeta (b).
layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;
layout(constant_id = 0) const uint WG = 64; // a power of two
layout(constant_id = 1) const uint WY = 1;
layout(constant_id = 2) const uint WZ = 1;
layout(constant_id = 3) const uint MODE = 0;
layout(constant_id = 4) const bool COUNTED = false;
const uint BLOCK = 16;

layout(std430, binding = 0) readonly buffer P { vec2 partial[]; };
layout(std430, binding = 0) readonly buffer P4 { vec4 partial4[]; }; // COUNTED
layout(std430, binding = 1) writeonly buffer S { vec2 res[]; };
layout(std430, binding = 2) writeonly buffer A { float a[]; };
layout(std430, binding = 3) writeonly buffer B { float b[]; };
layout(push_constant) uniform Push {
    uint nc, c, v;
    uint ch, chunks;
    uint hasA, hasB;
    float slope, eps;
} p;

// (voxel count, mean, M2) per invocation in MODE 0; (Σ g, Σ g·x̂) in MODE 1.
shared uint cnt[WG];
shared vec2 part[WG];

// merge folds the statistics (nb, sb) into (na, sa) with Chan's formula;
// either side may be empty.
void merge(inout uint na, inout vec2 sa, uint nb, vec2 sb) {
    if (nb == 0) {
        return;
    }
    if (na == 0) {
        na = nb;
        sa = sb;
        return;
    }
    float fa = float(na), fb = float(nb), fab = float(na + nb);
    float d = sb.x - sa.x;
    sa = vec2(sa.x + d * (fb / fab), sa.y + sb.y + d * d * (fa / fab) * fb);
    na += nb;
}

// treeSum returns the sum of v over the workgroup, added in a fixed tree.
float treeSum(float v) {
    uint lid = gl_LocalInvocationIndex;
    barrier(); // part's last reads are done
    part[lid] = vec2(v, 0.0);
    barrier();
    for (uint h = WG / 2; h > 0; h >>= 1) {
        if (lid < h) {
            part[lid].x += part[lid + h].x;
        }
        barrier();
    }
    return part[0].x;
}

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationIndex;
    uint results = MODE == 0 ? p.nc : p.c;
    // Surplus workgroups of the flattened grid leave together: no barrier
    // is skipped by only part of a workgroup.
    if (g >= results) {
        return;
    }
    if (MODE == 0 && COUNTED) {
        // Each invocation adds its chunks in blocks of BLOCK before its
        // running sum, which keeps a CPU device's many small chunks (16384
        // per plane of 128³) at about fp32 precision.
        float s = 0.0;
        for (uint j0 = lid; j0 < p.chunks; j0 += WG * BLOCK) {
            float bs = 0.0;
            for (uint j = j0; j < min(p.chunks, j0 + WG * BLOCK); j += WG) {
                bs += partial4[g * p.chunks + j].x;
            }
            s += bs;
        }
        float mu = treeSum(s) / float(p.v);
        float m2 = 0.0;
        for (uint j0 = lid; j0 < p.chunks; j0 += WG * BLOCK) {
            float bs = 0.0;
            for (uint j = j0; j < min(p.chunks, j0 + WG * BLOCK); j += WG) {
                vec4 q = partial4[g * p.chunks + j];
                float d = q.w - mu;
                bs += q.y + q.z * d * d;
            }
            m2 += bs;
        }
        m2 = treeSum(m2);
        if (lid == 0) {
            a[g] = mu;
            b[g] = 1.0 / sqrt(m2 / float(p.v) + p.eps);
        }
    } else if (MODE == 0) {
        uint n = 0;
        vec2 s = vec2(0.0);
        for (uint j = lid; j < p.chunks; j += WG) {
            merge(n, s, min(p.ch, p.v - j * p.ch), partial[g * p.chunks + j]);
        }
        cnt[lid] = n;
        part[lid] = s;
        barrier();
        for (uint h = WG / 2; h > 0; h >>= 1) {
            if (lid < h) {
                uint na = cnt[lid];
                vec2 sa = part[lid];
                merge(na, sa, cnt[lid + h], part[lid + h]);
                cnt[lid] = na;
                part[lid] = sa;
            }
            barrier();
        }
        if (lid == 0) {
            vec2 t = part[0];
            float inv = 1.0 / sqrt(t.y / float(p.v) + p.eps);
            a[g] = t.x;
            b[g] = inv;
        }
    } else {
        uint samples = p.nc / p.c;
        vec2 total = vec2(0.0);
        for (uint n = 0; n < samples; n++) {
            uint nc = n * p.c + g;
            vec2 s = vec2(0.0);
            for (uint j = lid; j < p.chunks; j += WG) {
                s += partial[nc * p.chunks + j];
            }
            part[lid] = s;
            barrier();
            for (uint h = WG / 2; h > 0; h >>= 1) {
                if (lid < h) {
                    part[lid] += part[lid + h];
                }
                barrier();
            }
            vec2 t = part[0];
            barrier(); // part is written again by the next sample
            if (lid == 0) {
                res[nc] = t / float(p.v);
            }
            total += t;
        }
        if (lid == 0) {
            if (p.hasA != 0) {
                a[g] = total.y;
            }
            if (p.hasB != 0) {
                b[g] = total.x;
            }
        }
    }
}
