#version 450
// loss: the per-voxel passes of the losses, one voxel (all its classes) per
// invocation, chosen by MODE. Logits and probabilities are [N, K, V]
// (V voxels per sample), labels [N, V]; a voxel's classes lie V apart, so
// neighbouring invocations read neighbouring addresses.
//   0 softmax     out = softmax over the classes of a
//   1 argmax      labels out = first class of largest a; a NaN counts as the
//                 largest value (torch.argmax)
//   2 dice grad   out = dL/dlogits from the probabilities a, the labels and
//                 coef[2k], coef[2k+1] (loss_sum MODE 3): with g the one-hot
//                 label, dp_k = coef[2k] + g_k·coef[2k+1], and out_k =
//                 p_k·(dp_k − Σ_j dp_j·p_j), the softmax's backward.
// Labels outside [0, K) match no class: they add no one-hot term.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint MODE = 0;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer L { int labels[]; };
layout(std430, binding = 2) readonly buffer Coef { float coef[]; };
layout(std430, binding = 3) writeonly buffer Out { float outv[]; };
layout(std430, binding = 3) writeonly buffer OutL { int outl[]; };
layout(push_constant) uniform Push {
    uint voxels; // N·V
    uint vox;    // V
    uint classes;
    uint seg, chunks, hasGrad, k0;
    float scale, eps;
} p;

// isNaN tests the bits, so that no compiler's fast-math folds it away.
bool isNaN(float v) {
    return (floatBitsToUint(v) & 0x7fffffffu) > 0x7f800000u;
}

void main() {
    uint e = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (e >= p.voxels) {
        return;
    }
    uint n = e / p.vox;
    uint base = n * p.classes * p.vox + (e - n * p.vox);
    uint K = p.classes;
    if (MODE == 0) {
        float mx = a[base];
        for (uint k = 1; k < K; k++) {
            mx = max(mx, a[base + k * p.vox]);
        }
        float s = 0.0;
        for (uint k = 0; k < K; k++) {
            s += exp(a[base + k * p.vox] - mx);
        }
        float inv = 1.0 / s;
        for (uint k = 0; k < K; k++) {
            outv[base + k * p.vox] = exp(a[base + k * p.vox] - mx) * inv;
        }
    } else if (MODE == 1) {
        int best = 0;
        float bv = a[base];
        for (uint k = 1; k < K; k++) {
            float l = a[base + k * p.vox];
            if (!isNaN(bv) && (l > bv || isNaN(l))) {
                best = int(k);
                bv = l;
            }
        }
        outl[e] = best;
    } else {
        int t = labels[e];
        float dot = 0.0;
        for (uint k = 0; k < K; k++) {
            float dp = coef[2 * k];
            if (t == int(k)) {
                dp += coef[2 * k + 1];
            }
            dot += dp * a[base + k * p.vox];
        }
        for (uint k = 0; k < K; k++) {
            float dp = coef[2 * k];
            if (t == int(k)) {
                dp += coef[2 * k + 1];
            }
            float q = a[base + k * p.vox];
            outv[base + k * p.vox] = q * (dp - dot);
        }
    }
}
