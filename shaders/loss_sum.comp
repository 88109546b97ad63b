#version 450
// loss_sum: the reductions of the losses, deterministic: each workgroup sums
// a fixed segment of voxels (every invocation a strided subset in order,
// then a fixed tree in shared memory) into partials, and one workgroup adds
// the partials in a fixed order. No atomics: every run gives the same bits.
// Logits/probabilities are [N, K, V], labels [N, V]; MODE chooses:
//   0 CE partial  workgroup g: Σ over its voxels of lse − logit[label] into
//                 partial[g]; with hasGrad also out = (softmax − onehot)·scale
//                 (bindings: logits, labels, dlogits, partial)
//   1 CE final    loss[0] = scale · Σ partial           (partial, -, loss, -)
//   2 Dice stats  workgroup (g, k): Σp, Σp·g, Σg of class k over segment g
//                 into partial[3(k·chunks + g) + 0..2]   (probs, labels, partial, -)
//   3 Dice final  per class num = 2Σpg + eps, den = Σp + Σg + eps; for
//                 classes k ≥ k0: coef = (num/(m·den²), −2/(m·den)), else 0;
//                 loss[0] = 1 − mean over k ≥ k0 of num/den, m = K − k0
//                 (partial, -, coef, loss)
// Labels outside [0, K) match no class: no loss term and no one-hot.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256; // a power of two
layout(constant_id = 1) const uint MODE = 0;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer L { int labels[]; };
layout(std430, binding = 2) writeonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer C { float c[]; };
layout(push_constant) uniform Push {
    uint voxels; // N·V
    uint vox;    // V
    uint classes;
    uint seg;    // voxels per workgroup of the partial passes
    uint chunks; // workgroups (per class) of the partial passes
    uint hasGrad, k0;
    float scale, eps;
} p;

shared float s0[WG];
shared float s1[WG];
shared float s2[WG];

// tree adds s0..s2 over the workgroup into element 0, in a fixed order.
void tree() {
    uint lid = gl_LocalInvocationID.x;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (lid < stride) {
            s0[lid] += s0[lid + stride];
            s1[lid] += s1[lid + stride];
            s2[lid] += s2[lid + stride];
        }
        barrier();
    }
}

// log1p returns log(1 + r) for r ≥ 0. Vulkan lets log err by 2^-21
// absolute near 1, which is a large relative error for a small loss, so
// below 0.5 it sums the series of 2·atanh(z), z = r/(2 + r) ≤ 0.2.
float log1p(float r) {
    if (r >= 0.5) {
        return log(1.0 + r);
    }
    float z = r / (2.0 + r);
    float z2 = z * z;
    return 2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (1.0 / 5.0 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 * (1.0 / 11.0))))));
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint K = p.classes;
    if (MODE == 0) {
        uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
        uint begin = g * p.seg;
        uint end = min(begin + p.seg, p.voxels);
        float loss = 0.0;
        for (uint e = begin + lid; e < end; e += WG) {
            uint n = e / p.vox;
            uint base = n * K * p.vox + (e - n * p.vox);
            float mx = a[base];
            uint kmax = 0;
            for (uint k = 1; k < K; k++) {
                float l = a[base + k * p.vox];
                if (l > mx) {
                    mx = l;
                    kmax = k;
                }
            }
            // s = 1 + r, with r the sum over the classes other than kmax,
            // kept apart for log1p.
            float r = 0.0;
            for (uint k = 0; k < K; k++) {
                if (k != kmax) {
                    r += exp(a[base + k * p.vox] - mx);
                }
            }
            float s = 1.0 + r;
            int t = labels[e];
            if (t >= 0 && t < int(K)) {
                // Both terms are ≥ 0: no cancellation when the loss is small.
                loss += (mx - a[base + uint(t) * p.vox]) + log1p(r);
            }
            if (p.hasGrad != 0) {
                float inv = 1.0 / s;
                for (uint k = 0; k < K; k++) {
                    float q = exp(a[base + k * p.vox] - mx) * inv;
                    if (t == int(k)) {
                        // q − 1 cancels when q → 1, which only the class
                        // kmax can reach: there 1 − q = r/s.
                        q = k == kmax ? -r * inv : q - 1.0;
                    }
                    b[base + k * p.vox] = q * p.scale;
                }
            }
        }
        s0[lid] = loss;
        s1[lid] = 0.0;
        s2[lid] = 0.0;
        tree();
        if (lid == 0) {
            c[g] = s0[0];
        }
    } else if (MODE == 1) {
        float s = 0.0;
        for (uint j = lid; j < p.chunks; j += WG) {
            s += a[j];
        }
        s0[lid] = s;
        s1[lid] = 0.0;
        s2[lid] = 0.0;
        tree();
        if (lid == 0) {
            b[0] = s0[0] * p.scale;
        }
    } else if (MODE == 2) {
        uint g = gl_WorkGroupID.x;
        uint k = gl_WorkGroupID.y;
        uint begin = g * p.seg;
        uint end = min(begin + p.seg, p.voxels);
        float sp = 0.0, spg = 0.0, sg = 0.0;
        for (uint e = begin + lid; e < end; e += WG) {
            uint n = e / p.vox;
            float q = a[(n * K + k) * p.vox + (e - n * p.vox)];
            sp += q;
            if (labels[e] == int(k)) {
                spg += q;
                sg += 1.0;
            }
        }
        s0[lid] = sp;
        s1[lid] = spg;
        s2[lid] = sg;
        tree();
        if (lid == 0) {
            uint o = 3 * (k * p.chunks + g);
            b[o] = s0[0];
            b[o + 1] = s1[0];
            b[o + 2] = s2[0];
        }
    } else {
        float m = float(K - p.k0);
        float acc = 0.0; // meaningful in invocation 0
        for (uint k = 0; k < K; k++) {
            float sp = 0.0, spg = 0.0, sg = 0.0;
            for (uint j = lid; j < p.chunks; j += WG) {
                uint o = 3 * (k * p.chunks + j);
                sp += a[o];
                spg += a[o + 1];
                sg += a[o + 2];
            }
            // Invocation 0 may still read s0..s2[0] of the previous class.
            barrier();
            s0[lid] = sp;
            s1[lid] = spg;
            s2[lid] = sg;
            tree();
            if (lid == 0) {
                float num = 2.0 * s1[0] + p.eps;
                float den = s0[0] + s2[0] + p.eps;
                float ca = 0.0, cb = 0.0;
                if (k >= p.k0) {
                    acc += num / den;
                    ca = num / (m * den * den);
                    cb = -2.0 / (m * den);
                }
                b[2 * k] = ca;
                b[2 * k + 1] = cb;
            }
        }
        if (lid == 0) {
            c[0] = 1.0 - acc / m;
        }
    }
}
