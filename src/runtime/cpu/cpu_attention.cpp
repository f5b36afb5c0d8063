// RoPE, KV-cache writes and windowed causal attention on the CPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/op_profile.h"
#include "runtime/cpu/kernels.h"
#include "runtime/cpu/cpu_backend.h"

namespace moshi {

void CpuBackend::rope(Tensor& qkv, int heads, int head_dim, float max_period, const std::vector<int64_t>& pos) {
  OpTimer timer("rope");
  const int64_t HD = static_cast<int64_t>(heads) * head_dim, rows = qkv.numel() / (3 * HD);
  MOSHI_CHECK(static_cast<int64_t>(pos.size()) == rows, "rope: ", pos.size(), " positions for ", rows, " rows");
  const int half = head_dim / 2;
  std::vector<float> freqs(half);
  const float step = static_cast<float>(-std::log(static_cast<double>(max_period)) * 2.0 / head_dim);
  for (int i = 0; i < half; ++i) freqs[i] = std::exp(static_cast<float>(i) * step);
  float* p = qkv.f32();
  for (int64_t r = 0; r < rows; ++r) {
    const float t = static_cast<float>(pos[r]);
    for (int i = 0; i < half; ++i) {
      const float a = freqs[i] * t, c = std::cos(a), s = std::sin(a);
      for (int part = 0; part < 2; ++part)  // q, then k
        for (int h = 0; h < heads; ++h) {
          float* v = p + r * 3 * HD + part * HD + h * head_dim + 2 * i;
          const float re = v[0], im = v[1];
          v[0] = re * c - im * s;
          v[1] = re * s + im * c;
        }
    }
  }
}

void CpuBackend::kv_write(KvCache& cache, const Tensor& qkv, int batch, const std::vector<int64_t>& pos) {
  const int64_t HD = cache.k.dim(2) * cache.k.dim(3), rows = qkv.numel() / (3 * HD), T = rows / batch;
  const float* p = qkv.f32();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, slot = pos[r] % cache.capacity;
      const float* row = p + r * 3 * HD;
      std::memcpy(cache.k.f32() + (b * cache.capacity + slot) * HD, row + HD, HD * sizeof(float));
      std::memcpy(cache.v.f32() + (b * cache.capacity + slot) * HD, row + 2 * HD, HD * sizeof(float));
    }
}

void CpuBackend::attention(const Tensor& qkv, const KvCache& cache, int batch, const std::vector<int64_t>& pos,
                           const std::vector<int64_t>& lo, Tensor& out) {
  const int64_t H = cache.k.dim(2), D = cache.k.dim(3), HD = H * D, rows = qkv.numel() / (3 * HD), T = rows / batch;
  OpTimer timer("attention");
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const float* pq = qkv.f32();
  float* po = out.f32();
  for (int64_t r = 0; r < rows; ++r)
    MOSHI_CHECK(pos[r] - std::max<int64_t>(lo[r], 0) < cache.capacity, "attention: window of position ", pos[r],
                " exceeds the cache capacity ", cache.capacity);
  const int64_t cap = cache.capacity;
  pool_.parallel_for(static_cast<int>(batch * H), [&](int bh) {
    const int64_t b = bh / H, h = bh % H;
    thread_local std::vector<float> score;
    const float* kb = cache.k.f32() + (b * cap * H + h) * D;
    const float* vb = cache.v.f32() + (b * cap * H + h) * D;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, p = pos[r], l = std::max<int64_t>(lo[r], 0), n = p - l + 1;
      const float* q = pq + r * 3 * HD + h * D;
      score.resize(static_cast<size_t>(n));
      // Positions [l, p] occupy at most two contiguous runs of ring slots.
      const int64_t s0 = l % cap, run1 = std::min(n, cap - s0);
      cpu::dot_rows(q, kb + s0 * HD, HD, run1, D, scale, score.data());
      if (run1 < n) cpu::dot_rows(q, kb, HD, n - run1, D, scale, score.data() + run1);
      const float mx = *std::max_element(score.begin(), score.end());
      float sum = 0.f;
      for (float& s : score) sum += (s = std::exp(s - mx));
      const float inv = 1.f / sum;
      for (float& s : score) s *= inv;
      float* o = po + r * HD + h * D;
      std::fill_n(o, D, 0.f);
      cpu::axpy_rows(score.data(), vb + s0 * HD, HD, run1, D, o);
      if (run1 < n) cpu::axpy_rows(score.data() + run1, vb, HD, n - run1, D, o);
    }
  });
}

}  // namespace moshi
