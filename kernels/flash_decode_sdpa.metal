// Flash-decode SDPA for Gemma 4's full (global) attention layers, single decode query (S = 1).
//
// Why: the 12B (16 query heads x head_dim 512) and 31B (32 x 512) full layers have a 16-32 KB fp16
// query that overflows the GPU decode scratch heap of the stock SDPA lowering, which crashes at
// the first token (apple/coreai-models#27). These kernels replace that op on the full layers.
//
// Computes, for each query head h with KV head kvh = h / (H / Hkv) (block GQA):
//     out[h] = softmax(q[h] . k[kvh, j] for j < T) @ v[kvh]          (scale 1.0: Gemma 4 RMS-norms q/k)
// The KV tensors hold exactly the T valid keys (the grown decode cache), so there is no mask.
//
// Tensors (torch shapes; Metal tensor indices run innermost-first, so torch q[h, d] is q[d, h]):
//     q   [H, D]        fp16   query of the decode token, one row per query head
//     k   [Hkv, T, D]   fp16   keys   (RMS-normed, RoPE applied)
//     v   [Hkv, T, D]   fp16   values (for attention_k_eq_v: v_norm(k_proj(x)), a separate tensor)
//     out [H, D]        fp16   attention output, one row per query head
// H, Hkv, D and T are read from the tensor extents at run time. Requires D % 32 == 0, D <= 512,
// H % Hkv == 0, T >= 1.
//
// Precision (mirrored step by step by gemmaios.kernels.flash_decode_model):
//   * q, k, v are read as half and widened to float (exact);
//   * each lane's partial dot over its D/32 dims, the simd_sum across the 32 lanes, the running
//     max m, the running exp-sum l, the exp() weights and the running output accumulators are fp32;
//   * the _g8 merge (split weights, total sum, weighted output sum) is fp32 in threadgroup memory;
//   * the only narrowing is the final store: half(acc * (1 / l)).
//
// Lane layout: lane `lane` of a SIMD-group owns head dims lane, lane + 32, lane + 64, ... so each
// load instruction of the SIMD-group reads 32 consecutive halves of a K or V row.
//
// This file is the single source of truth: gemmaios.kernels registers each [[kernel]] below with
// coreai_torch.TorchMetalKernel (helpers = the block between the gemmaios:helpers markers, body =
// the function body) and checks that the signature Core AI generates is the one written here.
// Metal does not compile on Linux. There, tests check this file's structure against the registration
// and run it as C++23 on a CPU stand-in of Metal's execution model (tests/msl_host/); on a Mac
// with Xcode 27, `xcrun -sdk macosx metal -std=metal4.0 -c kernels/flash_decode_sdpa.metal -o /tmp/fd.air`
// compiles it as is (Metal 4 tensors need -std=metal4.0).

#include <metal_stdlib>
#include <MetalPerformancePrimitives/MetalPerformancePrimitives.h>
using namespace metal;
using namespace mpp::tensor_ops;

// gemmaios:helpers:begin
// Lanes per SIMD-group on Apple GPUs.
constexpr constant int FD_SIMD_WIDTH = 32;
// Largest supported head dim; each lane keeps FD_MAX_DIMS_PER_LANE query values and output
// accumulators in registers (every loop over them has this constant trip count, so it unrolls).
constexpr constant int FD_MAX_HEAD_DIM = 512;
constexpr constant int FD_MAX_DIMS_PER_LANE = FD_MAX_HEAD_DIM / FD_SIMD_WIDTH;
// SIMD-groups per query head in the split-KV kernel (the "_g8" in bundle names).
constexpr constant int FD_G8_SPLITS = 8;
// Finite stand-in for -infinity (kernels build with fast math, which assumes no infinities):
// exp(FD_NEG_BIG - s) underflows to exactly 0 for any score an fp16 q.k can produce (|s| < 3e12).
constexpr constant float FD_NEG_BIG = -1.0e30f;

// One online-softmax step for score s: returns the factor that rescales the old accumulators
// (exp(m_old - m_new)) and sets e to this key's weight exp(s - m_new). All fp32.
inline float fd_online_step(thread float &m, thread float &l, float s, thread float &e) {
    const float m_new = max(m, s);
    const float rescale = exp(m - m_new);
    e = exp(s - m_new);
    l = l * rescale + e;
    m = m_new;
    return rescale;
}
// gemmaios:helpers:end

// Simple variant: one threadgroup of one SIMD-group per query head scans all T keys.
// Dispatch: threads_per_grid (32, H, 1), threads_per_threadgroup (32, 1, 1).
[[kernel]] void gemmaios_flash_decode_sdpa(tensor<device half, metal::dextents<int, 2>, tensor_handle> q [[buffer(0)]], tensor<device half, metal::dextents<int, 3>, tensor_handle> k [[buffer(1)]], tensor<device half, metal::dextents<int, 3>, tensor_handle> v [[buffer(2)]], tensor<device half, metal::dextents<int, 2>, tensor_handle> out [[buffer(3)]], uint2 tid [[thread_position_in_threadgroup]], uint2 tgid [[threadgroup_position_in_grid]]) {
    const int lane = int(tid.x);
    const int h = int(tgid.y);
    const int head_dim = q.get_extent(0);
    const int n_heads = q.get_extent(1);
    const int kv_len = k.get_extent(1);
    const int n_kv_heads = k.get_extent(2);
    const int kvh = h / (n_heads / n_kv_heads);
    const int dims_per_lane = head_dim / FD_SIMD_WIDTH;

    float qv[FD_MAX_DIMS_PER_LANE];
    float acc[FD_MAX_DIMS_PER_LANE];
    for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
        qv[c] = c < dims_per_lane ? float(q[lane + c * FD_SIMD_WIDTH, h]) : 0.0f;
        acc[c] = 0.0f;
    }
    float m = FD_NEG_BIG;
    float l = 0.0f;
    for (int j = 0; j < kv_len; ++j) {
        float partial = 0.0f;
        for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
            if (c < dims_per_lane) {
                partial += qv[c] * float(k[lane + c * FD_SIMD_WIDTH, j, kvh]);
            }
        }
        const float s = simd_sum(partial);
        float e;
        const float rescale = fd_online_step(m, l, s, e);
        for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
            if (c < dims_per_lane) {
                acc[c] = acc[c] * rescale + e * float(v[lane + c * FD_SIMD_WIDTH, j, kvh]);
            }
        }
    }
    const float inv_l = 1.0f / l;
    for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
        if (c < dims_per_lane) {
            out[lane + c * FD_SIMD_WIDTH, h] = half(acc[c] * inv_l);
        }
    }
}

// Split-KV variant: one threadgroup of FD_G8_SPLITS SIMD-groups per query head. SIMD-group g
// scans the contiguous key block [g * B, min(T, (g + 1) * B)), B = ceil(T / FD_G8_SPLITS), with
// its own running max and sum; the splits then merge through threadgroup memory, all 256 threads
// writing output dims. Splits past the end of a short cache are empty (m = FD_NEG_BIG, l = 0) and
// get weight exactly 0 in the merge.
// Dispatch: threads_per_grid (32, 8 * H, 1), threads_per_threadgroup (32, 8, 1).
[[kernel]] void gemmaios_flash_decode_sdpa_g8(tensor<device half, metal::dextents<int, 2>, tensor_handle> q [[buffer(0)]], tensor<device half, metal::dextents<int, 3>, tensor_handle> k [[buffer(1)]], tensor<device half, metal::dextents<int, 3>, tensor_handle> v [[buffer(2)]], tensor<device half, metal::dextents<int, 2>, tensor_handle> out [[buffer(3)]], uint2 tid [[thread_position_in_threadgroup]], uint2 tgid [[threadgroup_position_in_grid]]) {
    threadgroup float split_acc[FD_G8_SPLITS * FD_MAX_HEAD_DIM];
    threadgroup float split_m[FD_G8_SPLITS];
    threadgroup float split_l[FD_G8_SPLITS];

    const int lane = int(tid.x);
    const int split = int(tid.y);
    const int h = int(tgid.y);
    const int head_dim = q.get_extent(0);
    const int n_heads = q.get_extent(1);
    const int kv_len = k.get_extent(1);
    const int n_kv_heads = k.get_extent(2);
    const int kvh = h / (n_heads / n_kv_heads);
    const int dims_per_lane = head_dim / FD_SIMD_WIDTH;
    const int block = (kv_len + FD_G8_SPLITS - 1) / FD_G8_SPLITS;
    const int j_begin = min(kv_len, split * block);
    const int j_end = min(kv_len, j_begin + block);

    float qv[FD_MAX_DIMS_PER_LANE];
    float acc[FD_MAX_DIMS_PER_LANE];
    for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
        qv[c] = c < dims_per_lane ? float(q[lane + c * FD_SIMD_WIDTH, h]) : 0.0f;
        acc[c] = 0.0f;
    }
    float m = FD_NEG_BIG;
    float l = 0.0f;
    for (int j = j_begin; j < j_end; ++j) {
        float partial = 0.0f;
        for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
            if (c < dims_per_lane) {
                partial += qv[c] * float(k[lane + c * FD_SIMD_WIDTH, j, kvh]);
            }
        }
        const float s = simd_sum(partial);
        float e;
        const float rescale = fd_online_step(m, l, s, e);
        for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
            if (c < dims_per_lane) {
                acc[c] = acc[c] * rescale + e * float(v[lane + c * FD_SIMD_WIDTH, j, kvh]);
            }
        }
    }

    for (int c = 0; c < FD_MAX_DIMS_PER_LANE; ++c) {
        if (c < dims_per_lane) {
            split_acc[split * head_dim + lane + c * FD_SIMD_WIDTH] = acc[c];
        }
    }
    if (lane == 0) {
        split_m[split] = m;
        split_l[split] = l;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Merge: every thread derives the split weights exp(m_g - max m) itself (8 exps, no second
    // barrier), then writes the head dims d = t, t + 256, ... of this head's output.
    float m_max = split_m[0];
    for (int g = 1; g < FD_G8_SPLITS; ++g) {
        m_max = max(m_max, split_m[g]);
    }
    float weight[FD_G8_SPLITS];
    float l_total = 0.0f;
    for (int g = 0; g < FD_G8_SPLITS; ++g) {
        weight[g] = exp(split_m[g] - m_max);
        l_total += split_l[g] * weight[g];
    }
    const float inv_l = 1.0f / l_total;
    for (int d = split * FD_SIMD_WIDTH + lane; d < head_dim; d += FD_G8_SPLITS * FD_SIMD_WIDTH) {
        float o = 0.0f;
        for (int g = 0; g < FD_G8_SPLITS; ++g) {
            o += split_acc[g * head_dim + d] * weight[g];
        }
        out[d, h] = half(o * inv_l);
    }
}
