// The CUDA backend against the CPU backend (the oracle), op by op on random inputs over a sweep
// of shapes that includes Moshi's and Mimi's (kernel 7, strides 4/5/6/8, FFN hidden 11264 and
// 2816, dims 4096/1024/512, head_dim 64/128, windows that wrap the ring, kv_repeat 2, f32 and
// bf16 weights, 1..64 rows), then whole golden cases on the GPU, then error paths.
// Every test is skipped, with the reason printed, when the machine has no CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "core/error.h"
#include "codec/mimi_config.h"
#include "codec/mimi_model.h"
#include "lm/lm_gen.h"
#include "moshi/verify.h"
#include "runtime/backend.h"
#include "weights/weight_source.h"

using namespace moshi;

#ifdef MOSHI_HAVE_CUDA
#include <thread>

#include "runtime/cpu/cpu_backend.h"

namespace {

// Tolerances: max |cuda - cpu| / max |cpu| over an output tensor.
namespace tol {
constexpr double kMove = 0.0;        // copies, transposes, cache writes, lookups, codes: bit-exact
constexpr double kPointwise = 1e-6;  // one libm function per element (CUDA's and glibc's differ by an ulp)
constexpr double kRope = 2e-6;       // cos/sin of angles up to a few thousand radians
constexpr double kSum = 1e-4;        // sums in another order: products, convs, norms, attention (bf16
                                     // weights too: both backends widen the same bf16 values to f32)
}  // namespace tol

// The CUDA backend, made once; null (with the reason) when there is no usable device. Never
// destroyed: tearing CUDA state down from a static destructor races the runtime's own exit.
std::shared_ptr<Backend> gpu_backend(std::string* why) {
  static std::string reason;
  static auto* be = new std::shared_ptr<Backend>([] {
    try {
      BackendOptions o;
      o.device = "cuda";
      return make_backend(o);
    } catch (const Error& e) {
      reason = e.what();
      return std::shared_ptr<Backend>();
    }
  }());
  *why = reason;
  return *be;
}

CpuBackend& cpu_backend() {
  static CpuBackend be(std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  return be;
}

// Deterministic fast uniform values in [-scale, scale) (the big weights have ~10^8 entries).
Tensor rand_t(const Shape& s, uint64_t seed, float scale = 1.f, float offset = 0.f) {
  Tensor t = Tensor::zeros_f32(s);
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    z ^= z << 13, z ^= z >> 7, z ^= z << 17;
    t.f32()[i] = offset + scale * (static_cast<float>(z >> 40) / static_cast<float>(1 << 23) - 1.f);
  }
  return t;
}
Tensor to_bf16(const Tensor& f) {
  Tensor t = Tensor::zeros(DType::BF16, f.shape());
  for (int64_t i = 0; i < f.numel(); ++i) t.ptr<uint16_t>()[i] = f32_to_bf16(f.f32()[i]);
  return t;
}

Tensor up(Backend& g, const Tensor& h) {
  Tensor t = g.empty(h.dtype(), h.shape());
  g.upload(t, h.data());
  return t;
}
Tensor down(Backend& g, const Tensor& d) {
  Tensor t = Tensor::zeros(d.dtype(), d.shape());
  g.download(d, t.data());
  return t;
}

// max |got - ref| / max |ref| (f32) or the fraction of differing elements (i64); NaN counts as
// infinitely wrong.
double rel_err(const Tensor& got, const Tensor& ref) {
  EXPECT_EQ(got.numel(), ref.numel());
  if (ref.dtype() == DType::I64) {
    int64_t bad = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) bad += got.i64()[i] != ref.i64()[i];
    return ref.numel() ? static_cast<double>(bad) / ref.numel() : 0.0;
  }
  double md = 0, mr = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double a = got.f32()[i], b = ref.f32()[i];
    if (std::isnan(a) != std::isnan(b)) return INFINITY;
    if (!std::isnan(b)) md = std::max(md, std::fabs(a - b)), mr = std::max(mr, std::fabs(b));
  }
  return md == 0 ? 0.0 : md / std::max(mr, 1e-30);
}

// Swaps the middle axes of a host [B, a, b, D] tensor: the CPU cache layout [B, cap, H, D] to the
// CUDA one [B, H, cap, D] and back.
Tensor kv_permute(const Tensor& t) {
  const int64_t B = t.dim(0), a = t.dim(1), b = t.dim(2), D = t.dim(3), es = dtype_size(t.dtype());
  Tensor o = Tensor::zeros(t.dtype(), {B, b, a, D});
  for (int64_t i = 0; i < B; ++i)
    for (int64_t x = 0; x < a; ++x)
      for (int64_t y = 0; y < b; ++y)
        std::memcpy(static_cast<char*>(o.data()) + (((i * b + y) * a + x) * D) * es,
                    static_cast<const char*>(t.data()) + (((i * a + x) * b + y) * D) * es, D * es);
  return o;
}
// A GPU cache holding the CPU cache `host` [B, cap, H, D], and back.
Tensor kv_up(Backend& g, const Tensor& host) { return up(g, kv_permute(host)); }
Tensor kv_down(Backend& g, const Tensor& dev) { return kv_permute(down(g, dev)); }

// The largest difference between a GPU cache (read back into the CPU's layout) and the CPU's,
// element by element as f32 (f32 or bf16 caches).
double cache_diff(Backend& g, const Tensor& gpu, const Tensor& cpu) {
  const Tensor got = kv_down(g, gpu);
  const bool bf16 = cpu.dtype() == DType::BF16;
  double worst = 0;
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    const float a = bf16 ? bf16_to_f32(got.ptr<uint16_t>()[i]) : got.f32()[i];
    const float b = bf16 ? bf16_to_f32(cpu.ptr<uint16_t>()[i]) : cpu.f32()[i];
    worst = std::max(worst, static_cast<double>(std::fabs(a - b)));
  }
  return worst;
}

// A second CUDA backend, made with the environment variable `name` set to "0" (the backend reads
// its switches when it is made).
std::shared_ptr<Backend> cuda_backend_without(const char* name) {
  setenv(name, "0", 1);
  BackendOptions o;
  o.device = "cuda";
  std::shared_ptr<Backend> be = make_backend(o);
  unsetenv(name);
  return be;
}
// One that records nothing (MOSHI_CUDA_GRAPHS=0): every op runs as it comes.
std::shared_ptr<Backend> eager_cuda_backend() { return cuda_backend_without("MOSHI_CUDA_GRAPHS"); }
// One whose products all stay on mma.sync (MOSHI_WGMMA=0): on a GPU where the large ones go to
// the warpgroup-MMA kernels, the product tests check both paths.
std::shared_ptr<Backend> mma_only_cuda_backend() { return cuda_backend_without("MOSHI_WGMMA"); }

// One tensor on each backend: the CPU's (host) and the GPU's (device).
struct Pair {
  Tensor c, g;
};

class CudaOps : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    gpu_ = gpu_backend(&why);
    if (!gpu_) GTEST_SKIP() << "no CUDA device: " << why;
  }
  Backend& G() { return *gpu_; }
  CpuBackend& C() { return cpu_backend(); }
  Pair both(const Tensor& host) { return {host.clone(), up(G(), host)}; }
  Pair zeros(const Shape& s, DType dt = DType::F32) { return {Tensor::zeros(dt, s), G().empty(dt, s)}; }
  double err(const Pair& p) { return rel_err(down(G(), p.g), p.c); }
  // Runs `body` with G() the default backend, then with one whose products stay on mma.sync.
  template <typename F>
  void on_both_product_paths(F body) {
    {
      SCOPED_TRACE("default products");
      body();
    }
    const std::shared_ptr<Backend> keep = gpu_;
    gpu_ = mma_only_cuda_backend();
    {
      SCOPED_TRACE("mma.sync products only (MOSHI_WGMMA=0)");
      body();
    }
    gpu_ = keep;
  }
  std::shared_ptr<Backend> gpu_;
};

TEST_F(CudaOps, LinearMatchesCpu) {
  on_both_product_paths([&] {
    struct S {
      int64_t in, out;
    };
    // (2048 x 4112: two weight tiles a warp, the last pair half past the end.)
    const S shapes[] = {{4096, 4096}, {4096, 2 * 11264}, {11264, 4096}, {1024, 2 * 2816}, {2816, 1024}, {512, 1536},
                        {512, 2048},  {256, 2048},       {33, 65},      {37, 5},          {44, 16},     {16, 1},
                        {7, 4},       {2048, 4112}};
    const int64_t rows[] = {1, 2, 3, 5, 8, 13, 16, 40, 64};
    uint64_t seed = 1;
    for (const S& s : shapes)
      for (DType dt : {DType::F32, DType::BF16}) {
        Tensor wf = rand_t({s.out, s.in}, seed++, 1.f / std::sqrt(static_cast<float>(s.in)));
        const Tensor w = dt == DType::BF16 ? to_bf16(wf) : wf;
        const Pair pw{C().prepare_linear(w), G().prepare_linear(w)};
        const Pair bias = both(rand_t({s.out}, seed++));
        for (int64_t N : rows) {
          const bool odd = N == 3 || N == 5 || N == 13 || N == 40;
          if (s.in * s.out > (int64_t{1} << 24) && odd) continue;  // keep the big ones quick
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(testing::Message() << "N " << N << " in " << s.in << " out " << s.out << " "
                                            << dtype_name(dt) << (with_bias ? " +bias" : ""));
            const Pair x = both(rand_t({N, s.in}, seed++));
            Pair y = zeros({N, s.out});
            C().linear(x.c, pw.c, with_bias ? &bias.c : nullptr, y.c);
            G().linear(x.g, pw.g, with_bias ? &bias.g : nullptr, y.g);
            EXPECT_LE(err(y), tol::kSum);
          }
        }
      }
  });
}

// A gated feed-forward's first product with its activation (one kernel where the backend has
// one) against the CPU's linear then gated_activation: the LM's shapes, and shapes that fall back
// to the two ops (f32 weights, `in` not a multiple of 32, more than 64 rows); 2048 x 4096 (32 MB)
// takes the warpgroup-MMA kernels at every row count where the GPU has them.
TEST_F(CudaOps, LinearGluMatchesCpu) {
  on_both_product_paths([&] {
    struct S {
      int64_t in, hidden;
      DType dt;
    };
    const S shapes[] = {{4096, 11264, DType::BF16}, {1024, 2816, DType::BF16}, {64, 20, DType::BF16},
                        {1024, 2816, DType::F32},   {40, 24, DType::BF16},   {2048, 2052, DType::BF16},
                        {2048, 4096, DType::BF16}};
    const int64_t rows[] = {1, 2, 8, 13, 32, 40, 70};
    uint64_t seed = 1500;
    for (const S& s : shapes) {
      Tensor wf = rand_t({2 * s.hidden, s.in}, seed++, 1.f / std::sqrt(static_cast<float>(s.in)));
      const Tensor w = s.dt == DType::BF16 ? to_bf16(wf) : wf;
      const Pair pw{C().prepare_linear(w), G().prepare_linear(w)};
      for (int64_t N : rows)
        for (Act act : {Act::Silu, Act::Gelu}) {
          if (s.in * s.hidden > (int64_t{1} << 24) && N != 1 && N != 32) continue;  // keep the big ones quick
          SCOPED_TRACE(testing::Message() << "N " << N << " in " << s.in << " hidden " << s.hidden << " "
                                          << dtype_name(s.dt) << (act == Act::Silu ? " silu" : " gelu"));
          const Pair x = both(rand_t({N, s.in}, seed++));
          Pair t = zeros({N, 2 * s.hidden}), y = zeros({N, s.hidden});
          C().linear_glu(x.c, pw.c, act, t.c, y.c);
          G().linear_glu(x.g, pw.g, act, t.g, y.g);
          EXPECT_LE(err(y), tol::kSum);
        }
    }
  });
}

// A product with its activation (one kernel for a few rows) against the CPU's linear then
// activation: Mimi's feed-forward shapes, bf16 at one row, and shapes that fall back.
TEST_F(CudaOps, LinearActMatchesCpu) {
  struct S {
    int64_t in, out;
    DType dt;
  };
  const S shapes[] = {{512, 2048, DType::F32}, {2048, 512, DType::F32}, {1024, 2816, DType::BF16}, {37, 20, DType::F32}};
  const int64_t rows[] = {1, 2, 8, 9};
  uint64_t seed = 2000;
  for (const S& s : shapes) {
    Tensor wf = rand_t({s.out, s.in}, seed++, 1.f / std::sqrt(static_cast<float>(s.in)));
    const Tensor w = s.dt == DType::BF16 ? to_bf16(wf) : wf;
    const Pair pw{C().prepare_linear(w), G().prepare_linear(w)};
    const Pair bias = both(rand_t({s.out}, seed++));
    for (int64_t N : rows)
      for (Act act : {Act::Gelu, Act::Elu, Act::Identity})
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(testing::Message() << "N " << N << " in " << s.in << " out " << s.out << " "
                                          << dtype_name(s.dt) << " act " << static_cast<int>(act)
                                          << (with_bias ? " +bias" : ""));
          const Pair x = both(rand_t({N, s.in}, seed++));
          Pair y = zeros({N, s.out});
          C().linear_act(x.c, pw.c, with_bias ? &bias.c : nullptr, act, y.c);
          G().linear_act(x.g, pw.g, with_bias ? &bias.g : nullptr, act, y.g);
          EXPECT_LE(err(y), tol::kSum);
        }
  }
}

// A half-layer's norm + product (the norm inside the product where the backend fuses it: one
// bf16 row, or up to 8 f32 rows) and the product that adds onto the residual stream (inside the
// product's epilogue on the streaming and tensor-core paths), against the CPU's separate ops:
// the LM's and Mimi's shapes, RMSNorm and LayerNorm, and shapes that fall back (`in` not a
// multiple of 8, more rows than a fused pass takes, f32 beyond 8 rows).
TEST_F(CudaOps, NormLinearAndLinearAddMatchCpu) {
  on_both_product_paths([&] {
    struct S {
      int64_t in, out;
      DType dt;
    };
    const S shapes[] = {{4096, 12288, DType::BF16}, {4096, 1024, DType::BF16}, {1024, 2816, DType::BF16}, {512, 1536, DType::F32},
                        {2048, 512, DType::F32},    {36, 20, DType::BF16},     {36, 20, DType::F32},
                        {2048, 4112, DType::BF16}};
    const int64_t rows[] = {1, 2, 5, 8, 13, 40, 70};
    uint64_t seed = 2600;
    for (const S& s : shapes) {
      Tensor wf = rand_t({s.out, s.in}, seed++, 1.f / std::sqrt(static_cast<float>(s.in)));
      const Tensor w = s.dt == DType::BF16 ? to_bf16(wf) : wf;
      const Pair pw{C().prepare_linear(w), G().prepare_linear(w)};
      Tensor gf = rand_t({2 * s.out, s.in}, seed++, 1.f / std::sqrt(static_cast<float>(s.in)));
      const Tensor gw = s.dt == DType::BF16 ? to_bf16(gf) : gf;
      const Pair pg{C().prepare_linear(gw), G().prepare_linear(gw)};
      const Pair nw = both(rand_t({s.in}, seed++, 0.5f, 1.f)), nb = both(rand_t({s.in}, seed++, 0.5f));
      const Pair bias = both(rand_t({s.out}, seed++)), scale = both(rand_t({s.out}, seed++, 0.2f));
      for (int64_t N : rows) {
        if (s.in * s.out > (int64_t{1} << 24) && N > 2) continue;  // keep the big ones quick
        for (bool layer : {false, true}) {
          SCOPED_TRACE(testing::Message() << "N " << N << " in " << s.in << " out " << s.out << " "
                                          << dtype_name(s.dt) << (layer ? " layer_norm" : " rms_norm"));
          const InputNorm nc{layer, &nw.c, &nb.c, layer ? 1e-5f : 1e-8f}, ng{layer, &nw.g, &nb.g, nc.eps};
          const Pair x = both(rand_t({N, s.in}, seed++, 2.f, 0.3f));
          Pair h = zeros({N, s.in}), y = zeros({N, s.out}), t = zeros({N, 2 * s.out});
          C().norm_linear(x.c, nc, h.c, pw.c, &bias.c, y.c);
          G().norm_linear(x.g, ng, h.g, pw.g, &bias.g, y.g);
          EXPECT_LE(err(y), tol::kSum) << "norm_linear";
          C().norm_linear_act(x.c, nc, h.c, pw.c, nullptr, Act::Gelu, y.c);
          G().norm_linear_act(x.g, ng, h.g, pw.g, nullptr, Act::Gelu, y.g);
          EXPECT_LE(err(y), tol::kSum) << "norm_linear_act";
          C().norm_linear_glu(x.c, nc, h.c, pg.c, Act::Silu, t.c, y.c);
          G().norm_linear_glu(x.g, ng, h.g, pg.g, Act::Silu, t.g, y.g);
          EXPECT_LE(err(y), tol::kSum) << "norm_linear_glu";
        }
        for (int way = 0; way < 3; ++way) {  // plain, + bias, + bias and scale
          SCOPED_TRACE(testing::Message() << "linear_add N " << N << " in " << s.in << " out " << s.out << " "
                                          << dtype_name(s.dt) << " way " << way);
          const Pair a = both(rand_t({N, s.in}, seed++));
          Pair x = both(rand_t({N, s.out}, seed++, 3.f)), t = zeros({N, s.out});
          const Tensor* bc = way > 0 ? &bias.c : nullptr;
          const Tensor* bg = way > 0 ? &bias.g : nullptr;
          C().linear_add(a.c, pw.c, bc, way > 1 ? &scale.c : nullptr, t.c, x.c);
          G().linear_add(a.g, pw.g, bg, way > 1 ? &scale.g : nullptr, t.g, x.g);
          EXPECT_LE(err(x), tol::kSum);
        }
      }
    }
  });
}

// Streaming convs step by step against the CPU, four ways: conv1d + conv_history_update,
// conv1d_step over x and over elu(x) (ELU gathered with the conv's input and history where the
// backend fuses it, pointwise convs included), and conv1d_step_add over elu(x) onto a random y.
// Replicate-padded convs take no activation.
// Shapes with up to 8 output rows (B·Tout) take the few-step product, the others cuBLAS.
TEST_F(CudaOps, Conv1dStreamsLikeCpu) {
  struct S {
    int B, cin, cout, K, stride, dil, groups, T;
    bool replicate;
  };
  const S shapes[] = {{1, 1, 4, 7, 1, 1, 1, 1920, true},   {2, 8, 8, 3, 1, 2, 1, 40, false},
                      {1, 16, 32, 8, 4, 1, 1, 32, false},  {1, 32, 64, 10, 5, 1, 1, 40, true},
                      {2, 64, 128, 12, 6, 1, 1, 36, false}, {1, 128, 256, 16, 8, 1, 1, 32, false},
                      {1, 512, 512, 4, 2, 1, 1, 8, false},  {2, 16, 16, 3, 1, 1, 16, 10, false},
                      {1, 8, 12, 3, 1, 1, 4, 20, true},     {1, 64, 32, 7, 1, 1, 1, 2, false},
                      {2, 6, 5, 1, 1, 1, 1, 9, false},      {1, 512, 1024, 3, 1, 1, 1, 4, false},
                      {2, 64, 96, 4, 2, 1, 1, 6, false}};
  enum Way { kOps, kStep, kStepElu, kStepAdd };
  uint64_t seed = 100;
  for (const S& s : shapes)
    for (Way way : {kOps, kStep, kStepElu, kStepAdd})
      for (bool with_bias : {false, true}) {
        if (s.replicate && way != kOps) continue;
        SCOPED_TRACE(testing::Message() << "B " << s.B << " " << s.cin << "->" << s.cout << " K " << s.K
                                        << " stride " << s.stride << " dil " << s.dil << " groups " << s.groups
                                        << " T " << s.T << " way " << static_cast<int>(way)
                                        << (with_bias ? " +bias" : ""));
        const Tensor w = rand_t({s.cout, s.cin / s.groups, s.K}, seed++, 0.3f);
        const Pair pw{C().prepare_conv(w, s.groups), G().prepare_conv(w, s.groups)};
        const Pair b = both(rand_t({s.cout}, seed++));
        const Tensor* bc = with_bias ? &b.c : nullptr;
        const Tensor* bg = with_bias ? &b.g : nullptr;
        const int64_t P = (s.K - 1) * s.dil + 1 - s.stride;
        Pair prev = zeros({s.B, s.cin, P});
        for (int call = 0; call < 3; ++call) {
          const Pair x = both(rand_t({s.B, s.cin, s.T}, seed++, 2.f));
          const Shape ys = {s.B, s.cout, s.T / s.stride};
          Pair y = way == kStepAdd ? both(rand_t(ys, seed++)) : zeros(ys);
          if (way == kOps) {
            if (s.replicate) {
              std::vector<uint8_t> first(s.B, call == 0 ? 1 : 0);
              C().conv_history_replicate(prev.c, x.c, first);
              G().conv_history_replicate(prev.g, x.g, first);
            }
            C().conv1d(prev.c, x.c, pw.c, bc, s.cin, s.cout, s.K, s.stride, s.dil, s.groups, y.c);
            G().conv1d(prev.g, x.g, pw.g, bg, s.cin, s.cout, s.K, s.stride, s.dil, s.groups, y.g);
            C().conv_history_update(prev.c, x.c);
            G().conv_history_update(prev.g, x.g);
          } else if (way == kStepAdd) {
            Pair scratch = zeros({s.B, s.cin, s.T}), tmp = zeros({s.B, s.cout, s.T / s.stride});
            C().conv1d_step_add(prev.c, x.c, Act::Elu, pw.c, bc, s.cin, s.cout, s.K, s.stride, s.dil, s.groups,
                                scratch.c, tmp.c, y.c);
            G().conv1d_step_add(prev.g, x.g, Act::Elu, pw.g, bg, s.cin, s.cout, s.K, s.stride, s.dil, s.groups,
                                scratch.g, tmp.g, y.g);
          } else {
            const Act act = way == kStepElu ? Act::Elu : Act::Identity;
            Pair scratch = zeros({s.B, s.cin, s.T});
            C().conv1d_step(prev.c, x.c, act, pw.c, bc, s.cin, s.cout, s.K, s.stride, s.dil, s.groups, scratch.c, y.c);
            G().conv1d_step(prev.g, x.g, act, pw.g, bg, s.cin, s.cout, s.K, s.stride, s.dil, s.groups, scratch.g, y.g);
          }
          EXPECT_LE(err(y), tol::kSum) << "call " << call;
          if (P) {
            // A copy is exact; an ELU'd history may differ by an ulp (CUDA's expm1f vs glibc's).
            EXPECT_LE(err(prev), way >= kStepElu ? tol::kPointwise : tol::kMove) << "call " << call;
          }
        }
      }
}

// Transposed convs over several calls against the CPU (overlap carried between calls): grouped,
// ungrouped with up to 8 frames (B·T: one GEMV pass) and more (cuBLAS).
TEST_F(CudaOps, ConvTranspose1dStreamsLikeCpu) {
  struct S {
    int B, cin, cout, K, stride, groups, T;
  };
  const S shapes[] = {{1, 32, 16, 8, 4, 1, 5},  {2, 64, 32, 10, 5, 1, 3}, {1, 16, 8, 12, 6, 1, 4},
                      {1, 32, 16, 16, 8, 1, 2}, {2, 32, 32, 4, 2, 32, 6}, {1, 8, 12, 6, 3, 4, 5},
                      {1, 4, 4, 2, 2, 1, 3},    {1, 512, 512, 4, 2, 512, 1}, {1, 1024, 512, 16, 8, 1, 1},
                      {1, 16, 8, 8, 4, 1, 12},  {2, 8, 8, 4, 2, 1, 6},   {1, 1024, 512, 16, 8, 1, 2}};
  uint64_t seed = 200;
  for (const S& s : shapes)
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(testing::Message() << "B " << s.B << " " << s.cin << "->" << s.cout << " K " << s.K << " stride "
                                      << s.stride << " groups " << s.groups << " T " << s.T);
      const Tensor w = rand_t({s.cin, s.cout / s.groups, s.K}, seed++, 0.3f);
      const Pair pw{C().prepare_conv_transpose(w, s.groups), G().prepare_conv_transpose(w, s.groups)};
      const Pair b = both(rand_t({s.cout}, seed++));
      Pair partial = zeros({s.B, s.cout, s.K - s.stride});
      for (int call = 0; call < 3; ++call) {
        const Pair x = both(rand_t({s.B, s.cin, s.T}, seed++));
        Pair y = zeros({s.B, s.cout, s.T * s.stride});
        C().conv_transpose1d(x.c, pw.c, with_bias ? &b.c : nullptr, s.cin, s.cout, s.K, s.stride, s.groups, partial.c,
                             y.c);
        G().conv_transpose1d(x.g, pw.g, with_bias ? &b.g : nullptr, s.cin, s.cout, s.K, s.stride, s.groups, partial.g,
                             y.g);
        EXPECT_LE(err(y), tol::kSum) << "call " << call;
        if (s.K > s.stride) {
          EXPECT_LE(err(partial), tol::kSum) << "call " << call;
        }
      }
    }
}

TEST_F(CudaOps, ElementwiseMatchCpu) {
  uint64_t seed = 300;
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{3 * 4096}, int64_t{100003}}) {
    SCOPED_TRACE(testing::Message() << "n " << n);
    const Tensor h = rand_t({n}, seed++, 4.f);
    {  // elu out of place and in place
      const Pair x = both(h);
      Pair y = zeros({n});
      C().elu(x.c, y.c);
      G().elu(x.g, y.g);
      EXPECT_LE(err(y), tol::kPointwise);
      Pair z = both(h);
      C().elu(z.c, z.c);
      G().elu(z.g, z.g);
      EXPECT_LE(err(z), tol::kPointwise);
    }
    for (Act a : {Act::Identity, Act::Gelu, Act::Silu, Act::Relu, Act::Sigmoid, Act::Tanh, Act::Elu}) {
      Pair x = both(h);
      C().activation(x.c, a);
      G().activation(x.g, a);
      EXPECT_LE(err(x), tol::kPointwise) << "act " << static_cast<int>(a);
      if (n % 2) continue;
      const Pair g2 = both(h);
      Pair y = zeros({n / 2});
      C().gated_activation(g2.c.reshape({1, n}), a, y.c);
      G().gated_activation(g2.g.reshape({1, n}), a, y.g);
      EXPECT_LE(err(y), tol::kPointwise) << "gated act " << static_cast<int>(a);
    }
    const Pair a = both(h), b = both(rand_t({n}, seed++));
    Pair y = zeros({n});
    C().add(a.c, b.c, y.c);
    G().add(a.g, b.g, y.g);
    EXPECT_EQ(err(y), tol::kMove);
    Pair x1 = both(h), x2 = both(h);
    C().add_scaled(x1.c, b.c, nullptr);
    G().add_scaled(x1.g, b.g, nullptr);
    EXPECT_EQ(err(x1), tol::kMove);
    if (n % 4096 == 0) {  // per-channel scale over the last dimension
      const Pair sc = both(rand_t({4096}, seed++, 0.01f));
      C().add_scaled(x2.c, b.c, &sc.c);
      G().add_scaled(x2.g, b.g, &sc.g);
      EXPECT_LE(err(x2), tol::kPointwise);
    }
  }
  for (Shape s : {Shape{2, 33, 70}, Shape{1, 512, 1}, Shape{3, 1, 1920}, Shape{1, 512, 250}}) {
    SCOPED_TRACE(shape_str(s));
    const Pair x = both(rand_t(s, seed++));
    Pair y = zeros({s[0], s[2], s[1]}), back = zeros(s);
    C().transpose_ct(x.c, y.c);
    G().transpose_ct(x.g, y.g);
    EXPECT_EQ(err(y), tol::kMove);
    C().transpose_tc(y.c, back.c);
    G().transpose_tc(y.g, back.g);
    EXPECT_EQ(err(back), tol::kMove);
  }
}

TEST_F(CudaOps, NormsMatchCpu) {
  uint64_t seed = 400;
  // 5000: more than the kernel that holds a row in registers takes.
  for (int64_t Cn : {int64_t{5000}, int64_t{4096}, int64_t{1024}, int64_t{512}, int64_t{33}, int64_t{16}})
    for (int64_t N : {int64_t{1}, int64_t{3}, int64_t{64}}) {
      SCOPED_TRACE(testing::Message() << "N " << N << " C " << Cn);
      const Pair x = both(rand_t({N, Cn}, seed++, 2.f, 0.5f));  // off-centre: the variance must subtract the mean
      const Pair w = both(rand_t({Cn}, seed++)), b = both(rand_t({Cn}, seed++));
      Pair y = zeros({N, Cn}), z = zeros({N, Cn});
      C().layer_norm(x.c, w.c, b.c, 1e-5f, y.c);
      G().layer_norm(x.g, w.g, b.g, 1e-5f, y.g);
      EXPECT_LE(err(y), tol::kSum);
      C().rms_norm(x.c, w.c, 1e-8f, z.c);
      G().rms_norm(x.g, w.g, 1e-8f, z.g);
      EXPECT_LE(err(z), tol::kSum);
    }
}

TEST_F(CudaOps, EmbeddingAndSinPositionsMatchCpu) {
  uint64_t seed = 500;
  for (int64_t D : {int64_t{4096}, int64_t{1024}, int64_t{16}})
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(testing::Message() << "D " << D << " " << dtype_name(dt));
      const int64_t V = 2049;
      const Tensor tf = rand_t({V, D}, seed++);
      const Tensor tab = dt == DType::BF16 ? to_bf16(tf) : tf;
      const Pair t{C().prepare_embedding(tab), G().prepare_embedding(tab)};
      const std::vector<int64_t> ids = {5, -1, 0, V - 1, -2, 1234, 5};
      Pair out = both(rand_t({7, D}, seed++));
      for (bool acc : {true, false}) {
        C().embedding(t.c, ids, out.c, acc);
        G().embedding(t.g, ids, out.g, acc);
        EXPECT_EQ(err(out), tol::kMove) << "accumulate " << acc;
      }
    }
  for (int64_t Cn : {int64_t{512}, int64_t{32}, int64_t{6}}) {
    SCOPED_TRACE(testing::Message() << "C " << Cn);
    const std::vector<int64_t> pos = {0, 1, 17, 250, 2999, 3000};
    Pair x = both(rand_t({6, Cn}, seed++));
    for (float scale : {1.f, 0.5f}) {
      C().sin_embedding_add(x.c, pos, 10000.f, scale);
      G().sin_embedding_add(x.g, pos, 10000.f, scale);
    }
    EXPECT_LE(err(x), tol::kRope);
  }
}

TEST_F(CudaOps, RopeMatchesCpu) {
  uint64_t seed = 600;
  const AttnShape shapes[] = {{32, 32, 128}, {16, 16, 64}, {8, 4, 64}, {4, 4, 8}};
  for (const AttnShape& sh : shapes)
    for (bool interleaved : {true, false}) {
      SCOPED_TRACE(testing::Message() << sh.heads << "/" << sh.kv_heads << " heads of " << sh.head_dim
                                      << (interleaved ? " interleaved" : " concat"));
      const std::vector<int64_t> pos = {0, 3, 250, 2999, 3500};
      Pair qkv = both(rand_t({5, sh.row()}, seed++));
      C().rope(qkv.c, sh, 10000.f, interleaved, pos);
      G().rope(qkv.g, sh, 10000.f, interleaved, pos);
      EXPECT_LE(err(qkv), tol::kRope);
    }
}

TEST_F(CudaOps, KvWriteWrapsTheRing) {
  const AttnShape sh{8, 4, 64};
  const int B = 2, T = 3, cap = 5;
  KvCache cc = C().new_kv_cache(DType::F32, B, cap, sh.kv_heads, sh.head_dim);
  KvCache cg = G().new_kv_cache(DType::F32, B, cap, sh.kv_heads, sh.head_dim);
  EXPECT_EQ(cg.k.shape(), (Shape{B, sh.kv_heads, cap, sh.head_dim}));  // head-major on the GPU
  uint64_t seed = 700;
  for (int64_t start : {0, 3, 7}) {
    std::vector<int64_t> pos;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) pos.push_back(start + t + 2 * b);
    const Pair qkv = both(rand_t({B * T, sh.row()}, seed++));
    C().kv_write(cc, qkv.c, sh, B, pos);
    G().kv_write(cg, qkv.g, sh, B, pos);
    EXPECT_EQ(rel_err(kv_down(G(), cg.k), cc.k), tol::kMove);
    EXPECT_EQ(rel_err(kv_down(G(), cg.v), cc.v), tol::kMove);
  }
}

TEST_F(CudaOps, AttentionMatchesCpu) {
  struct S {
    const char* what;
    int B, T;
    AttnShape sh;
    int64_t cap;
    std::vector<int64_t> pos, lo;  // per stream: the first query's position and window start
  };
  const S cases[] = {
      {"LM step, 3000-key window wrapping the ring", 1, 1, {32, 32, 128}, 3001, {4500}, {1501}},
      {"depformer-like, kv_repeat 2", 2, 1, {16, 8, 64}, 300, {310, 99}, {61, 0}},
      {"Mimi-like block of 6 steps, context 250", 1, 6, {8, 8, 64}, 256, {1000}, {751}},
      {"40 steps x 8 heads (more blocks than SMs)", 1, 40, {8, 8, 64}, 256, {1000}, {751}},
      {"prefill, tiny heads", 2, 16, {4, 2, 8}, 40, {30, 0}, {15, -15}},
      {"head_dim 100 (not a multiple of 32)", 1, 2, {2, 2, 100}, 64, {70}, {20}},
      {"head_dim 256", 1, 1, {2, 1, 256}, 512, {600}, {100}},
      {"negative window start", 1, 1, {4, 4, 64}, 16, {3}, {-5}},
      {"8000 keys, 8 query heads per kv head", 1, 1, {8, 1, 128}, 8192, {9000}, {1001}},
  };
  uint64_t seed = 800;
  for (const S& s : cases) {
    SCOPED_TRACE(s.what);
    const int64_t rows = s.B * s.T;
    const Tensor kh = rand_t({s.B, s.cap, s.sh.kv_heads, s.sh.head_dim}, seed++, 2.f);
    const Tensor vh = rand_t({s.B, s.cap, s.sh.kv_heads, s.sh.head_dim}, seed++);
    const Pair k{kh, kv_up(G(), kh)}, v{vh, kv_up(G(), vh)};
    const Pair qkv = both(rand_t({rows, s.sh.row()}, seed++, 2.f));
    std::vector<int64_t> pos, lo;
    for (int b = 0; b < s.B; ++b)
      for (int t = 0; t < s.T; ++t) {
        pos.push_back(s.pos[b] + t);
        lo.push_back(s.lo[b] + (s.lo[b] > 0 ? t : 0));
      }
    Pair out = zeros({rows, static_cast<int64_t>(s.sh.heads) * s.sh.head_dim});
    C().attention(qkv.c, KvCache{k.c, v.c, s.cap}, s.sh, s.B, pos, lo, out.c);
    G().attention(qkv.g, KvCache{k.g, v.g, s.cap}, s.sh, s.B, pos, lo, out.g);
    EXPECT_LE(err(out), tol::kSum);
  }
}

TEST_F(CudaOps, Bf16KvCacheMatchesCpu) {
  // Keys and values rounded to bf16 on the way into the ring, read back widened: the GPU's
  // cache and attention over it agree with the CPU's doing the same.
  const AttnShape sh{8, 4, 64};
  const int B = 2, T = 3;
  const int64_t cap = 40;
  // Slots not yet written are in every window's reach here: both caches start zeroed.
  KvCache cc = C().new_kv_cache(DType::BF16, B, cap, sh.kv_heads, sh.head_dim);
  KvCache cg = G().new_kv_cache(DType::BF16, B, cap, sh.kv_heads, sh.head_dim);
  uint64_t seed = 950;
  for (int64_t start : {0, 3, 30, 41}) {  // the last blocks wrap the ring
    SCOPED_TRACE(start);
    std::vector<int64_t> pos, lo;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) pos.push_back(start + t + 2 * b), lo.push_back(std::max<int64_t>(0, start + t + 2 * b - 30));
    const Pair qkv = both(rand_t({B * T, sh.row()}, seed++, 2.f));
    C().kv_write(cc, qkv.c, sh, B, pos);
    G().kv_write(cg, qkv.g, sh, B, pos);
    Pair out = zeros({B * T, static_cast<int64_t>(sh.heads) * sh.head_dim});
    C().attention(qkv.c, cc, sh, B, pos, lo, out.c);
    G().attention(qkv.g, cg, sh, B, pos, lo, out.g);
    EXPECT_LE(err(out), tol::kSum);
  }
}

TEST_F(CudaOps, VqEncodeDecodeMatchCpu) {
  uint64_t seed = 900;
  struct S {
    int64_t N, D, bins;
  };
  for (const S& s : {S{1, 256, 2048}, S{7, 256, 2048}, S{64, 256, 2048}, S{16, 16, 64}, S{3, 16, 64}}) {
    SCOPED_TRACE(testing::Message() << "N " << s.N << " D " << s.D << " bins " << s.bins);
    Tensor cb = rand_t({s.bins, s.D}, seed++);
    std::memcpy(cb.f32() + 5 * s.D, cb.f32() + 3 * s.D, s.D * sizeof(float));  // entries 3 and 5 tie
    Tensor norms = Tensor::zeros_f32({s.bins});
    for (int64_t j = 0; j < s.bins; ++j)
      for (int64_t d = 0; d < s.D; ++d) norms.f32()[j] += cb.f32()[j * s.D + d] * cb.f32()[j * s.D + d];
    const Pair pcb{C().prepare_linear(cb), G().prepare_linear(cb)};
    const Pair pn{C().prepare_vector(norms), G().prepare_vector(norms)};
    Tensor rh = rand_t({s.N, s.D}, seed++);
    std::memcpy(rh.f32(), cb.f32() + 3 * s.D, s.D * sizeof(float));  // row 0 sits on the tied entries
    Pair r = both(rh), codes = zeros({s.N}, DType::I64);
    for (int level = 0; level < 2; ++level) {
      const Tensor before = r.c.clone();
      C().vq_encode(r.c, pcb.c, pn.c, codes.c, 0);
      G().vq_encode(r.g, pcb.g, pn.g, codes.g, 0);
      const Tensor gc = down(G(), codes.g);
      if (level == 0) {
        EXPECT_EQ(gc.i64()[0], 3) << "ties go to the lowest index";
      }
      // Distances come from sums in another order, so a near-tie may resolve differently; then
      // both picks must be equally near (in double precision on the same input).
      auto dist = [&](int64_t n, int64_t j) {
        double d2 = 0;
        for (int64_t d = 0; d < s.D; ++d) {
          const double e = before.f32()[n * s.D + d] - cb.f32()[j * s.D + d];
          d2 += e * e;
        }
        return std::sqrt(d2);
      };
      bool all_equal = true;
      for (int64_t n = 0; n < s.N; ++n) {
        const int64_t a = codes.c.i64()[n], b = gc.i64()[n];
        if (a == b) continue;
        all_equal = false;
        EXPECT_NEAR(dist(n, a), dist(n, b), 1e-5 * std::max(1.0, dist(n, a)))
            << "row " << n << ": cpu picked " << a << ", cuda " << b;
      }
      if (all_equal) {
        EXPECT_EQ(err(r), tol::kMove);  // the same entry subtracted from the same row
      }
      r.g = up(G(), r.c);  // continue both from the CPU's residual
    }
    Pair acc = both(rand_t({s.N, s.D}, seed++));
    C().vq_decode_add(acc.c, pcb.c, pn.c, codes.c, 0);
    G().vq_decode_add(acc.g, pcb.g, pn.g, up(G(), codes.c), 0);
    EXPECT_EQ(err(acc), tol::kMove);
  }
}

// The fused ops against the CPU's composition of the ops they stand for.
TEST_F(CudaOps, FusedRopeCacheWriteAndAddNormMatchCpu) {
  uint64_t seed = 700;
  for (DType kv : {DType::F32, DType::BF16})
    for (bool interleaved : {false, true})
      for (bool with_rope : {true, false}) {
        SCOPED_TRACE(testing::Message() << dtype_name(kv) << (interleaved ? " interleaved" : " halves")
                                        << (with_rope ? "" : " no rope"));
        const AttnShape s{8, 4, 64};
        const int B = 2, T = 3;
        const int64_t cap = 7;
        const std::vector<int64_t> pos = {5, 6, 7, 0, 1, 2};
        Pair qkv = both(rand_t({B * T, s.row()}, seed++));
        KvCache cc = C().new_kv_cache(kv, B, cap, 4, 64), gc = G().new_kv_cache(kv, B, cap, 4, 64);
        C().rope_kv_write(qkv.c, cc, s, with_rope, 10000.f, interleaved, B, pos);
        G().rope_kv_write(qkv.g, gc, s, with_rope, 10000.f, interleaved, B, pos);
        EXPECT_LE(err(qkv), tol::kRope);
        // bf16 caches may round a value that differs by an ulp to the neighbouring bf16.
        EXPECT_LE(cache_diff(G(), gc.k, cc.k), kv == DType::BF16 ? 1e-2 : 1e-5);
        EXPECT_LE(cache_diff(G(), gc.v, cc.v), kv == DType::BF16 ? 1e-2 : 1e-5);
      }
  for (int64_t Cn : {int64_t{5000}, int64_t{4096}, int64_t{1024}, int64_t{37}})
    for (bool scaled : {false, true}) {
      SCOPED_TRACE(testing::Message() << "C " << Cn << (scaled ? " scaled" : ""));
      Pair x = both(rand_t({3, Cn}, seed++)), u = both(rand_t({3, Cn}, seed++));
      const Pair sc = both(rand_t({Cn}, seed++, 0.1f)), alpha = both(rand_t({Cn}, seed++, 1.f, 1.f));
      Pair y = zeros({3, Cn});
      C().add_rms_norm(x.c, u.c, scaled ? &sc.c : nullptr, alpha.c, 1e-8f, y.c);
      G().add_rms_norm(x.g, u.g, scaled ? &sc.g : nullptr, alpha.g, 1e-8f, y.g);
      EXPECT_LE(err(x), tol::kPointwise);
      EXPECT_LE(err(y), tol::kSum);
      const Pair bias = both(rand_t({Cn}, seed++));
      C().add_layer_norm(x.c, u.c, scaled ? &sc.c : nullptr, alpha.c, bias.c, 1e-5f, y.c);
      G().add_layer_norm(x.g, u.g, scaled ? &sc.g : nullptr, alpha.g, bias.g, 1e-5f, y.g);
      EXPECT_LE(err(x), tol::kPointwise);
      EXPECT_LE(err(y), tol::kSum);
    }
}

// The decoding step's attention with its RoPE and cache write in the same kernel, against the
// CPU's rope_kv_write then attention, step after step (earlier steps' keys come back from the
// cache, the ring wraps, long caches split the window): outputs and caches agree.
TEST_F(CudaOps, RopeKvAttentionMatchesCpu) {
  struct S {
    int heads, kv_heads, D;
    int64_t cap;
    int B;
  };
  const S shapes[] = {{8, 4, 64, 6, 2}, {4, 4, 128, 3000, 1}, {6, 3, 48, 9, 3}, {4, 2, 32, 700, 2}};
  uint64_t seed = 1900;
  for (const S& s : shapes)
    for (DType kv : {DType::BF16, DType::F32})
      for (bool interleaved : {false, true})
        for (bool with_rope : {true, false}) {
          SCOPED_TRACE(testing::Message() << "heads " << s.heads << "/" << s.kv_heads << " D " << s.D << " cap "
                                          << s.cap << " " << dtype_name(kv) << (interleaved ? " interleaved" : "")
                                          << (with_rope ? "" : " no rope"));
          const AttnShape sh{s.heads, s.kv_heads, s.D};
          KvCache cc = C().new_kv_cache(kv, s.B, s.cap, s.kv_heads, s.D);
          KvCache gc = G().new_kv_cache(kv, s.B, s.cap, s.kv_heads, s.D);
          const int64_t window = std::min<int64_t>(s.cap, 5);
          for (int64_t step = 0; step < 12; ++step) {
            std::vector<int64_t> pos, lo;
            for (int b = 0; b < s.B; ++b) {
              pos.push_back(step + 3 * b);
              lo.push_back(std::max<int64_t>(0, step + 3 * b - window + 1));
            }
            Pair qkv = both(rand_t({s.B, sh.row()}, seed++));
            Pair out = zeros({s.B, static_cast<int64_t>(s.heads) * s.D});
            C().rope_kv_attention(qkv.c, cc, sh, with_rope, 10000.f, interleaved, s.B, pos, lo, out.c);
            G().rope_kv_attention(qkv.g, gc, sh, with_rope, 10000.f, interleaved, s.B, pos, lo, out.g);
            ASSERT_LE(err(out), tol::kSum) << "step " << step;
          }
          EXPECT_LE(cache_diff(G(), gc.k, cc.k), kv == DType::BF16 ? 1e-2 : 1e-5);  // bf16: an ulp apart
          EXPECT_LE(cache_diff(G(), gc.v, cc.v), kv == DType::BF16 ? 1e-2 : 1e-5);
        }
}

// One step's embedding sum (one kernel) against the CPU's lookups added table by table: tables
// of different lengths, id -1 (zeros) and the last row; mixed dtypes fall back to the lookups.
TEST_F(CudaOps, EmbeddingSumMatchesCpu) {
  const int64_t D = 256;
  for (bool mixed : {false, true}) {
    SCOPED_TRACE(mixed ? "mixed dtypes" : "bf16 tables");
    std::vector<Pair> tabs;
    for (int k = 0; k < 9; ++k) {
      const int64_t V = k == 8 ? 3001 : 2049;
      Tensor tf = rand_t({V, D}, 1700 + k);
      const Tensor t = mixed && k == 3 ? tf : to_bf16(tf);
      tabs.push_back({C().prepare_embedding(t), G().prepare_embedding(t)});
    }
    std::vector<const Tensor*> tc, tg;
    for (const Pair& p : tabs) {
      tc.push_back(&p.c);
      tg.push_back(&p.g);
    }
    const int B = 3;
    std::vector<int64_t> ids;
    for (int k = 0; k < 9; ++k)
      for (int b = 0; b < B; ++b) ids.push_back(b == 1 && k % 3 == 0 ? -1 : (k * 131 + b * 977) % tabs[k].c.dim(0));
    ids[2] = 2048;
    Pair out = both(rand_t({B, D}, 1799));
    C().embedding_sum(tc, ids, out.c);
    G().embedding_sum(tg, ids, out.g);
    EXPECT_EQ(err(out), 0.0);
  }
  // An id past its table is an error, not a read.
  const Tensor t = G().prepare_embedding(to_bf16(rand_t({5, 8}, 1800)));
  Tensor out = G().empty(DType::F32, {1, 8});
  EXPECT_THROW(G().embedding_sum({&t, &t}, {1, 5}, out), Error);
}

TEST_F(CudaOps, EmbeddingFromDeviceIdsMatchesHostIds) {
  const int64_t V = 2049, D = 1024;
  const Tensor tab = to_bf16(rand_t({V, D}, 71));
  const Pair t{C().prepare_embedding(tab), G().prepare_embedding(tab)};
  // ids [4, 3]: column 1 is read; the id past the table reads its last row.
  const std::vector<int64_t> host = {9, 5, 9, 9, -1, 9, 9, V - 1, 9, 9, V + 7, 9};
  Tensor ids_c = Tensor::zeros(DType::I64, {4, 3});
  std::memcpy(ids_c.data(), host.data(), host.size() * sizeof(int64_t));
  const Tensor ids_g = up(G(), ids_c);
  Pair out = both(rand_t({4, D}, 72));
  for (bool acc : {true, false}) {
    C().embedding_from(t.c, ids_c, 1, out.c, acc);
    G().embedding_from(t.g, ids_g, 1, out.g, acc);
    EXPECT_EQ(err(out), tol::kMove) << "accumulate " << acc;
  }
  Tensor ref = Tensor::zeros_f32({4, D});
  C().embedding(t.c, {5, -1, V - 1, V - 1}, ref, false);
  EXPECT_EQ(rel_err(down(G(), out.g), ref), 0.0);
}

// The GPU draws what the host's sample_token draws from the same logits: greedy exactly; sampled
// draws agree except where two candidates' scores differ by rounding (the host also divides
// by the softmax sum), which the tolerance below allows for once in a thousand draws.
TEST_F(CudaOps, SampleDrawsLikeTheHost) {
  struct P {
    SamplingParams p;
    const char* what;
  };
  const P params[] = {{{false, 0.8f, 250}, "greedy"},      {{true, 0.8f, 250}, "audio defaults"},
                      {{true, 0.7f, 25}, "text defaults"}, {{true, 1.f, 0}, "whole vocabulary"},
                      {{true, 0.9f, 1}, "top-1"},          {{true, 0.5f, 100000}, "top-k past V"}};
  int64_t draws = 0, differ = 0;
  uint64_t seed = 900;
  for (int64_t V : {int64_t{2048}, int64_t{32000}, int64_t{7}})
    for (int B : {1, 3, 32})
      for (bool ties : {false, true}) {
        // Ties: logits on a coarse grid, so the top-k threshold falls inside a run of equal values.
        Tensor l = rand_t({B, V}, seed++, 4.f);
        if (ties)
          for (int64_t i = 0; i < l.numel(); ++i) l.f32()[i] = std::round(l.f32()[i] * 2.f) / 2.f;
        const Pair lg = both(l);
        for (const P& p : params)
          for (int step = 0; step < 3; ++step) {
            SCOPED_TRACE(testing::Message() << "V " << V << " B " << B << " " << p.what << (ties ? " ties" : ""));
            std::vector<int64_t> steps(B);
            for (int b = 0; b < B; ++b) steps[b] = step * 7 + b;
            Pair tok = zeros({B, 2}, DType::I64);
            C().sample(lg.c, p.p, 42, steps, 3, tok.c, 1);
            G().sample(lg.g, p.p, 42, steps, 3, tok.g, 1);
            const Tensor got = down(G(), tok.g);
            for (int b = 0; b < B; ++b) {
              const int64_t want = tok.c.i64()[b * 2 + 1], have = got.i64()[b * 2 + 1];
              ASSERT_GE(have, 0);
              ASSERT_LT(have, V);
              EXPECT_EQ(got.i64()[b * 2], 0);  // other columns untouched
              ++draws;
              if (want != have) {
                ++differ;
                if (!p.p.use_sampling) ADD_FAILURE() << "greedy token " << have << " vs " << want;
              }
            }
          }
      }
  std::printf("sample: %lld of %lld GPU draws differ from the host's\n", static_cast<long long>(differ),
              static_cast<long long>(draws));
  EXPECT_LE(differ * 1000, draws);
}

// Marks time the device's queue: a product queued between two marks takes time on the device
// (read once both marks were reached); a mark never set, or a slot out of range, is an error.
TEST_F(CudaOps, MarksTimeTheDeviceQueue) {
  const std::shared_ptr<Backend> be = eager_cuda_backend();  // a backend of its own: no marks set
  const Tensor pw = be->prepare_linear(to_bf16(rand_t({4096, 4096}, 77, 0.01f)));
  const Tensor x = up(*be, rand_t({1, 4096}, 78));
  Tensor y = be->empty(DType::F32, {1, 4096});
  EXPECT_THROW(be->marks_ms(0, 1), Error);
  be->mark(0);
  for (int i = 0; i < 20; ++i) be->linear(x, pw, nullptr, y);
  be->mark(1);
  be->synchronize();
  const double ms = be->marks_ms(0, 1);
  EXPECT_GT(ms, 0.0);
  EXPECT_LT(ms, 5000.0);
  EXPECT_THROW(be->mark(Backend::kMarks), Error);
}

// A stage's recording replays exactly what eager runs compute: an LM run with CUDA graphs (warm,
// capture, then replays) draws the same tokens as the same run on a backend without graphs.
TEST_F(CudaOps, RecordedStagesReplayLikeEagerRuns) {
  SyntheticSource src(11);
  std::shared_ptr<Backend> eager = eager_cuda_backend();
  auto run = [&](std::shared_ptr<Backend> be) {
    auto m = LmModel::load(src, tiny_lm_config(), be);
    GenParams p;
    p.seed = 5;
    LmGen gen(m, 3, p);
    const int nu = gen.user_codebooks();
    std::vector<int64_t> user(static_cast<size_t>(3) * nu), out, all;
    std::vector<uint8_t> ready;
    for (int s = 0; s < 8; ++s) {
      for (size_t i = 0; i < user.size(); ++i) user[i] = (s * 131 + i * 17) % 2048;
      gen.step(user, nu, out, ready);
      all.insert(all.end(), out.begin(), out.end());
      if (s == 4) gen.reset(1);  // a reset stream replays through the same recording
    }
    return all;
  };
  const std::vector<int64_t> a = run(gpu_), b = run(eager);
  EXPECT_EQ(a, b);
  EXPECT_GT(std::count_if(a.begin(), a.end(), [](int64_t t) { return t >= 0; }), 0);
}

// The same for Mimi: streaming encode and decode frame by frame (each frame one recorded stage)
// give the same codes and audio as without graphs, across a stream reset.
TEST_F(CudaOps, RecordedMimiFramesReplayLikeEagerRuns) {
  const char* cfg = R"({
    "seanet": {"dimension": 16, "n_filters": 4, "ratios": [8, 6, 5, 4]},
    "transformer": {"d_model": 16, "num_heads": 2, "num_layers": 2, "context": 6, "layer_scale": 0.01,
                    "dim_feedforward": 32},
    "quantizer": {"dimension": 8, "n_q": 4, "bins": 16}})";
  SyntheticSource src(7);
  std::shared_ptr<Backend> eager = eager_cuda_backend();
  const int64_t frames = 9, fs = 1920;
  Tensor pcm = rand_t({2, 1, frames * fs}, 91, 0.5f);
  auto run = [&](std::shared_ptr<Backend> be, Tensor& codes, Tensor& audio) {
    auto m = MimiModel::load(src, parse_mimi_config(cfg, "tiny"), be);
    auto enc = m->new_encoder(2, 1);
    auto dec = m->new_decoder(2, 1);
    codes = Tensor::zeros(DType::I64, {2, 4, frames});
    audio = Tensor::zeros_f32({2, 1, frames * fs});
    Tensor c1 = Tensor::zeros(DType::I64, {2, 4, 1}), a1 = Tensor::zeros_f32({2, 1, fs});
    Tensor p1 = Tensor::zeros_f32({2, 1, fs});
    for (int64_t f = 0; f < frames; ++f) {
      if (f == 5) {
        m->reset(*enc, 1);
        m->reset(*dec, 1);
      }
      for (int b = 0; b < 2; ++b) std::memcpy(p1.f32() + b * fs, pcm.f32() + b * frames * fs + f * fs, fs * 4);
      m->encode(*enc, p1, nullptr, 4, &c1);
      m->decode(*dec, c1, a1);
      for (int b = 0; b < 2; ++b) {
        for (int k = 0; k < 4; ++k) codes.i64()[(b * 4 + k) * frames + f] = c1.i64()[b * 4 + k];
        std::memcpy(audio.f32() + b * frames * fs + f * fs, a1.f32() + b * fs, fs * 4);
      }
    }
  };
  Tensor ca, aa, cb, ab;
  run(gpu_, ca, aa);
  run(eager, cb, ab);
  EXPECT_EQ(rel_err(ca, cb), 0.0);
  EXPECT_EQ(rel_err(aa, ab), 0.0);
}

TEST_F(CudaOps, StagesRefuseChangedSequencesAndRoundTrips) {
  const Tensor w = G().prepare_linear(to_bf16(rand_t({64, 32}, 81)));
  Tensor x = up(G(), rand_t({2, 32}, 82)), y = G().empty(DType::F32, {2, 64});
  Tensor x1 = x.slice0(0, 1), y1 = y.slice0(0, 1);
  const int id = G().stage_create();
  for (int run = 0; run < 3; ++run) {  // warm, capture, replay
    G().stage_begin(id);
    G().linear(x, w, nullptr, y);
    G().stage_end(id);
  }
  Pair ref = zeros({2, 64});
  G().linear(x, w, nullptr, ref.g);
  EXPECT_EQ(rel_err(down(G(), y), down(G(), ref.g)), 0.0);
  G().stage_begin(id);
  G().linear(x1, w, nullptr, y1);  // another launch shape: refused, nothing runs
  EXPECT_THROW(G().stage_end(id), Error);
  G().stage_begin(id);
  std::vector<float> h(128);
  EXPECT_THROW(G().download(y, h.data()), Error);  // no round trip inside a stage
  EXPECT_THROW(G().stage_end(id), Error);          // and the interrupted run is not replayed
  G().stage_destroy(id);
  G().linear(x, w, nullptr, y);  // the backend still works
  EXPECT_EQ(rel_err(down(G(), y), down(G(), ref.g)), 0.0);
  // A recording interrupted by an error (the scope left without finish) leaves nothing behind:
  // the stream is not left capturing and the stage runs eagerly afterwards.
  StageHandle stage(G());
  stage.run().finish();  // warm
  try {
    StageHandle::Scope sc = stage.run();  // capture
    G().linear(x, w, nullptr, y);
    throw Error("interrupted");
  } catch (const Error&) {
  }
  G().zero(y);
  for (int run = 0; run < 2; ++run) {
    StageHandle::Scope sc = stage.run();
    G().linear(x, w, nullptr, y);
    sc.finish();
  }
  EXPECT_EQ(rel_err(down(G(), y), down(G(), ref.g)), 0.0);
}

TEST_F(CudaOps, MemoryOpsRoundTrip) {
  const Tensor h = rand_t({3, 1000}, 1000);
  Tensor a = up(G(), h), b = G().empty(DType::F32, {3, 1000});
  G().copy(b, a);
  EXPECT_EQ(rel_err(down(G(), b), h), 0.0);
  Tensor tail = b.slice0(1, 3), head = b.slice0(0, 2);
  G().copy(tail, head);  // overlapping: memmove semantics
  Tensor got = down(G(), b);
  EXPECT_EQ(std::memcmp(got.f32() + 1000, h.f32(), 2000 * sizeof(float)), 0);
  G().zero(b);
  EXPECT_EQ(rel_err(down(G(), b), Tensor::zeros_f32({3, 1000})), 0.0);
  Tensor e = G().empty(DType::F32, {2, 0, 3});  // empty tensors still have storage
  EXPECT_TRUE(e.defined());
  EXPECT_EQ(G().device(), Device::CUDA);
}

// Golden case folders (kind mimi or lm) under $MOSHI_GOLDEN_DIR, the build's golden directory
// and ./golden of the source tree (a copy that travels with the repository to a GPU machine).
std::vector<std::string> golden_case_dirs(std::string* searched) {
  std::vector<std::string> roots;
  if (const char* env = std::getenv("MOSHI_GOLDEN_DIR")) roots.push_back(env);
  roots.push_back(MOSHI_GOLDEN_DIR);
  roots.push_back(std::string(MOSHI_SOURCE_DIR) + "/golden");
  std::vector<std::string> out;
  for (const std::string& root : roots) {
    *searched += (searched->empty() ? "" : ", ") + root;
    if (!std::filesystem::is_directory(root)) continue;
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(root)) {
      std::ifstream f(e.path() / "config.json");
      const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      for (const char* kind : {"mimi", "lm"})
        if (text.find("\"kind\": \"" + std::string(kind) + "\"") != std::string::npos ||
            text.find("\"kind\":\"" + std::string(kind) + "\"") != std::string::npos)
          found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    if (!found.empty()) return found;  // the first root that has cases
  }
  return out;
}

TEST(CudaGolden, EveryGoldenCasePassesOnCuda) {
  std::string why;
  if (!gpu_backend(&why)) GTEST_SKIP() << "no CUDA device: " << why;
  std::string searched;
  const std::vector<std::string> dirs = golden_case_dirs(&searched);
  if (dirs.empty()) GTEST_SKIP() << "no golden mimi/lm cases in " << searched;
  for (const std::string& dir : dirs) {
    VerifyOptions o;
    o.device = "cuda";
    testutil::expect_case_passes(dir, o);
  }
}

TEST(CudaErrors, OutOfRangeIdsAndCodesThrow) {
  std::string why;
  std::shared_ptr<Backend> g = gpu_backend(&why);
  if (!g) GTEST_SKIP() << "no CUDA device: " << why;
  const Tensor tab = g->prepare_embedding(rand_t({10, 4}, 1));
  Tensor out = g->empty(DType::F32, {2, 4});
  EXPECT_THROW(g->embedding(tab, {3, 10}, out, false), Error);
  const Tensor cb = g->prepare_linear(rand_t({8, 4}, 2));
  const Tensor norms = g->prepare_vector(Tensor::zeros_f32({8}));
  Tensor codes = g->empty(DType::I64, {2});
  const int64_t bad[2] = {1, 8};
  g->upload(codes, bad);
  EXPECT_THROW(g->vq_decode_add(out, cb, norms, codes, 0), Error);
  // The backend still works after a refused op.
  g->embedding(tab, {3, -1}, out, false);
  EXPECT_EQ(down(*g, out).f32()[4], 0.f);
}

}  // namespace
#endif  // MOSHI_HAVE_CUDA

// Runs on every machine: a device index that cannot exist is a clean moshi::Error (no device,
// no such device or no CUDA in this build), never a crash.
TEST(CudaErrors, BadDeviceIsAnError) {
  BackendOptions o;
  o.device = "cuda:99";
  try {
    make_backend(o);
    ADD_FAILURE() << "cuda:99 was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("CUDA"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  o.device = "cuda:x";
  EXPECT_THROW(make_backend(o), Error);
}
