// Runs kernels/flash_decode_sdpa.metal on the CPU through the host stand-in (metal_stdlib here).
// usage: run_kernel simple|g8 H Hkv T D in.f16 out.f16
//   in.f16: q [H, D], k [Hkv, T, D], v [Hkv, T, D] as raw little-endian fp16; out.f16: out [H, D].
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include FLASH_DECODE_SOURCE

#undef device
#undef thread
#undef constant
#undef threadgroup
#undef kernel

using Tensor2 = metal::tensor<half, metal::dextents<int, 2>, metal::tensor_handle>;
using Tensor3 = metal::tensor<half, metal::dextents<int, 3>, metal::tensor_handle>;
using Kernel = void (*)(Tensor2, Tensor3, Tensor3, Tensor2, uint2, uint2);

// dispatchThreads(grid (32, splits * H, 1), threadgroup (32, splits, 1)), threadgroups in order.
static void dispatch(Kernel fn, int splits, int n_heads, Tensor2 q, Tensor3 k, Tensor3 v, Tensor2 out) {
    for (int h = 0; h < n_heads; ++h) {
        std::barrier<> threadgroup_sync(32 * splits);
        std::vector<std::unique_ptr<msl_host::SimdGroup>> simd_groups;
        for (int s = 0; s < splits; ++s) simd_groups.push_back(std::make_unique<msl_host::SimdGroup>());
        std::vector<std::thread> threads;
        for (int s = 0; s < splits; ++s) {
            for (int lane = 0; lane < 32; ++lane) {
                threads.emplace_back([&, s, lane] {
                    msl_host::context = {lane, simd_groups[s].get(), &threadgroup_sync};
                    fn(q, k, v, out, uint2{unsigned(lane), unsigned(s)}, uint2{0u, unsigned(h)});
                });
            }
        }
        for (auto &t : threads) t.join();
    }
}

int main(int argc, char **argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s simple|g8 H Hkv T D in.f16 out.f16\n", argv[0]);
        return 2;
    }
    const std::string variant = argv[1];
    const int n_heads = std::atoi(argv[2]), n_kv = std::atoi(argv[3]), kv_len = std::atoi(argv[4]),
              head_dim = std::atoi(argv[5]);
    const std::size_t nq = std::size_t(n_heads) * head_dim, nkv = std::size_t(n_kv) * kv_len * head_dim;
    std::vector<half> in(nq + 2 * nkv), out(nq);
    FILE *f = std::fopen(argv[6], "rb");
    if (!f || std::fread(in.data(), sizeof(half), in.size(), f) != in.size()) return 3;
    std::fclose(f);
    Tensor2 q{in.data(), {head_dim, n_heads}};
    Tensor3 k{in.data() + nq, {head_dim, kv_len, n_kv}};
    Tensor3 v{in.data() + nq + nkv, {head_dim, kv_len, n_kv}};
    Tensor2 o{out.data(), {head_dim, n_heads}};
    if (variant == "simple")
        dispatch(gemmaios_flash_decode_sdpa, 1, n_heads, q, k, v, o);
    else if (variant == "g8")
        dispatch(gemmaios_flash_decode_sdpa_g8, FD_G8_SPLITS, n_heads, q, k, v, o);
    else
        return 2;
    f = std::fopen(argv[7], "wb");
    if (!f || std::fwrite(out.data(), sizeof(half), out.size(), f) != out.size()) return 4;
    std::fclose(f);
    return 0;
}
