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

void CpuBackend::rope(Tensor& qkv, const AttnShape& sh, float max_period, bool interleaved,
                      const std::vector<int64_t>& pos) {
  OpTimer timer("rope");
  const int64_t R = sh.row(), rows = qkv.numel() / R, D = sh.head_dim;
  MOSHI_CHECK(static_cast<int64_t>(pos.size()) == rows, "rope: ", pos.size(), " positions for ", rows, " rows");
  const int64_t half = D / 2;
  std::vector<float> freqs(half);
  const float step = static_cast<float>(-std::log(static_cast<double>(max_period)) * 2.0 / D);
  for (int64_t i = 0; i < half; ++i) freqs[i] = std::exp(static_cast<float>(i) * step);
  // Pair i of a head: (2i, 2i+1) interleaved, or (i, i + D/2).
  const int64_t im_off = interleaved ? 1 : half, stride = interleaved ? 2 : 1;
  const int heads_qk = sh.heads + sh.kv_heads;  // q heads then k heads, contiguous
  float* p = qkv.f32();
  for (int64_t r = 0; r < rows; ++r) {
    const float t = static_cast<float>(pos[r]);
    for (int64_t i = 0; i < half; ++i) {
      const float a = freqs[i] * t, c = std::cos(a), s = std::sin(a);
      for (int h = 0; h < heads_qk; ++h) {
        float* v = p + r * R + h * D + i * stride;
        const float re = v[0], im = v[im_off];
        v[0] = re * c - im * s;
        v[im_off] = re * s + im * c;
      }
    }
  }
}

void CpuBackend::kv_write(KvCache& cache, const Tensor& qkv, const AttnShape& sh, int batch,
                          const std::vector<int64_t>& pos) {
  const int64_t R = sh.row(), KD = static_cast<int64_t>(sh.kv_heads) * sh.head_dim,
                QD = static_cast<int64_t>(sh.heads) * sh.head_dim, rows = qkv.numel() / R, T = rows / batch;
  const float* p = qkv.f32();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, slot = pos[r] % cache.capacity;
      const float* row = p + r * R;
      if (cache.k.dtype() == DType::BF16) {  // rounded once, on the way in
        uint16_t* kd = cache.k.ptr<uint16_t>() + (b * cache.capacity + slot) * KD;
        uint16_t* vd = cache.v.ptr<uint16_t>() + (b * cache.capacity + slot) * KD;
        for (int64_t e = 0; e < KD; ++e) kd[e] = f32_to_bf16(row[QD + e]), vd[e] = f32_to_bf16(row[QD + KD + e]);
        continue;
      }
      std::memcpy(cache.k.f32() + (b * cache.capacity + slot) * KD, row + QD, KD * sizeof(float));
      std::memcpy(cache.v.f32() + (b * cache.capacity + slot) * KD, row + QD + KD, KD * sizeof(float));
    }
}

void CpuBackend::attention(const Tensor& qkv, const KvCache& cache, const AttnShape& sh, int batch,
                           const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out) {
  OpTimer timer("attention");
  const int64_t H = sh.heads, D = sh.head_dim, R = sh.row(), KD = static_cast<int64_t>(sh.kv_heads) * D,
                rows = qkv.numel() / R, T = rows / batch, rep = sh.heads / sh.kv_heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const float* pq = qkv.f32();
  float* po = out.f32();
  for (int64_t r = 0; r < rows; ++r)
    MOSHI_CHECK(pos[r] - std::max<int64_t>(lo[r], 0) < cache.capacity, "attention: window of position ", pos[r],
                " exceeds the cache capacity ", cache.capacity);
  const int64_t cap = cache.capacity;
  const bool bf16 = cache.k.dtype() == DType::BF16;
  pool_.parallel_for(static_cast<int>(batch * H), [&](int bh) {
    const int64_t b = bh / H, h = bh % H, kvh = h / rep;
    thread_local std::vector<float> score, kw, vw;
    const float* kb = bf16 ? nullptr : cache.k.f32() + b * cap * KD + kvh * D;
    const float* vb = bf16 ? nullptr : cache.v.f32() + b * cap * KD + kvh * D;
    if (bf16) {  // widen this stream's head once: [cap, D] rows at stride KD
      kw.resize(static_cast<size_t>(cap * KD));
      vw.resize(static_cast<size_t>(cap * KD));
      const uint16_t* ks = cache.k.ptr<uint16_t>() + b * cap * KD;
      const uint16_t* vs = cache.v.ptr<uint16_t>() + b * cap * KD;
      for (int64_t s = 0; s < cap; ++s)
        for (int64_t e = 0; e < D; ++e) {
          kw[s * KD + kvh * D + e] = bf16_to_f32(ks[s * KD + kvh * D + e]);
          vw[s * KD + kvh * D + e] = bf16_to_f32(vs[s * KD + kvh * D + e]);
        }
      kb = kw.data() + kvh * D;
      vb = vw.data() + kvh * D;
    }
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, p = pos[r], l = std::max<int64_t>(lo[r], 0), n = p - l + 1;
      const float* q = pq + r * R + h * D;
      score.resize(static_cast<size_t>(n));
      // Positions [l, p] occupy at most two contiguous runs of ring slots.
      const int64_t s0 = l % cap, run1 = std::min(n, cap - s0);
      cpu::dot_rows(q, kb + s0 * KD, KD, run1, D, scale, score.data());
      if (run1 < n) cpu::dot_rows(q, kb, KD, n - run1, D, scale, score.data() + run1);
      const float mx = *std::max_element(score.begin(), score.end());
      float sum = 0.f;
      for (float& s : score) sum += (s = std::exp(s - mx));
      const float inv = 1.f / sum;
      for (float& s : score) s *= inv;
      float* o = po + r * H * D + h * D;
      std::fill_n(o, D, 0.f);
      cpu::axpy_rows(score.data(), vb + s0 * KD, KD, run1, D, o);
      if (run1 < n) cpu::axpy_rows(score.data() + run1, vb, KD, n - run1, D, o);
    }
  });
}

}  // namespace moshi
