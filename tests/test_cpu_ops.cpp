// CPU ops against naive references written here, over a sweep of shapes that includes Mimi's
// (kernel 7, strides 4/5/6/8, few-row and many-row matmuls), and streaming splits.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "core/dtype.h"
#include "core/error.h"
#include "runtime/cpu/cpu_backend.h"

using namespace moshi;

namespace {

Tensor rand_t(const Shape& s, uint32_t seed, float scale = 1.f) {
  Tensor t = Tensor::zeros_f32(s);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(g);
  return t;
}

float max_diff(const Tensor& a, const Tensor& b) {
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.f32()[i] - b.f32()[i]));
  return m;
}

}  // namespace

class LinearTest : public testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(LinearTest, MatchesNaive) {
  auto [N, in, out, threads] = GetParam();
  CpuBackend be(threads);
  Tensor x = rand_t({N, in}, 1), w = rand_t({out, in}, 2), b = rand_t({out}, 3), y = Tensor::zeros_f32({N, out});
  be.linear(x, be.prepare_linear(w), &b, y);
  Tensor ref = Tensor::zeros_f32({N, out});
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < out; ++o) {
      double s = b.f32()[o];
      for (int i = 0; i < in; ++i) s += static_cast<double>(x.f32()[n * in + i]) * w.f32()[o * in + i];
      ref.f32()[n * out + o] = static_cast<float>(s);
    }
  EXPECT_LT(max_diff(y, ref), 2e-5f * std::sqrt(static_cast<float>(in)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearTest,
                         testing::Values(std::make_tuple(1, 512, 1536, 1), std::make_tuple(2, 512, 2048, 2),
                                         std::make_tuple(4, 300, 130, 2), std::make_tuple(7, 33, 65, 1),
                                         std::make_tuple(3, 37, 5, 1), std::make_tuple(5, 100, 67, 2),
                                         std::make_tuple(8, 16, 1, 1), std::make_tuple(9, 64, 33, 2),
                                         std::make_tuple(64, 192, 32, 2), std::make_tuple(1920, 7, 4, 1)));

namespace {

// Naive causal conv of concat(prev, x).
Tensor naive_conv(const Tensor& prev, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int dil,
                  int groups) {
  const int64_t B = x.dim(0), Cin = x.dim(1), T = x.dim(2), P = prev.dim(2), Cout = w.dim(0), K = w.dim(2);
  const int64_t cig = Cin / groups, cog = Cout / groups;
  Tensor y = Tensor::zeros_f32({B, Cout, T / stride});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t co = 0; co < Cout; ++co)
      for (int64_t t = 0; t < T / stride; ++t) {
        double s = bias ? bias->f32()[co] : 0;
        for (int64_t ci = 0; ci < cig; ++ci)
          for (int64_t k = 0; k < K; ++k) {
            const int64_t u = t * stride + k * dil, c = (co / cog) * cig + ci;
            const float v = u < P ? prev.f32()[(b * Cin + c) * P + u] : x.f32()[(b * Cin + c) * T + u - P];
            s += static_cast<double>(v) * w.f32()[(co * cig + ci) * K + k];
          }
        y.f32()[(b * Cout + co) * (T / stride) + t] = static_cast<float>(s);
      }
  return y;
}

}  // namespace

class ConvTest : public testing::TestWithParam<std::tuple<int, int, int, int, int, int>> {};

TEST_P(ConvTest, MatchesNaiveAndStreams) {
  auto [cin, cout, K, stride, dil, groups] = GetParam();
  CpuBackend be(2);
  const int B = 2, P = (K - 1) * dil + 1 - stride, T = stride * 6;
  Tensor prev = rand_t({B, cin, P}, 4), x = rand_t({B, cin, T}, 5), w = rand_t({cout, cin / groups, K}, 6),
         b = rand_t({cout}, 7), y = Tensor::zeros_f32({B, cout, T / stride});
  be.conv1d(prev, x, be.prepare_conv(w, groups), &b, cin, cout, K, stride, dil, groups, y);
  EXPECT_LT(max_diff(y, naive_conv(prev, x, w, &b, stride, dil, groups)), 1e-4f);

  // Two calls of T/2 each (carrying the history) equal one call of T.
  Tensor h = prev.clone(), y1 = Tensor::zeros_f32({B, cout, T / stride / 2}), y2 = y1.clone();
  Tensor x1 = Tensor::zeros_f32({B, cin, T / 2}), x2 = x1.clone();
  for (int bb = 0; bb < B; ++bb)
    for (int c = 0; c < cin; ++c)
      for (int t = 0; t < T / 2; ++t) {
        x1.f32()[(bb * cin + c) * (T / 2) + t] = x.f32()[(bb * cin + c) * T + t];
        x2.f32()[(bb * cin + c) * (T / 2) + t] = x.f32()[(bb * cin + c) * T + T / 2 + t];
      }
  Tensor wp = be.prepare_conv(w, groups);
  be.conv1d(h, x1, wp, &b, cin, cout, K, stride, dil, groups, y1);
  be.conv_history_update(h, x1);
  be.conv1d(h, x2, wp, &b, cin, cout, K, stride, dil, groups, y2);
  const int64_t To = T / stride, Th = To / 2;
  float m = 0;
  for (int bb = 0; bb < B; ++bb)
    for (int c = 0; c < cout; ++c)
      for (int t = 0; t < To; ++t) {
        const float got = t < Th ? y1.f32()[(bb * cout + c) * Th + t] : y2.f32()[(bb * cout + c) * Th + t - Th];
        m = std::max(m, std::fabs(got - y.f32()[(bb * cout + c) * To + t]));
      }
  // Calls of different lengths may take different kernels (streamed panels vs sgemm), which
  // round differently: agreement to ~1e-6 relative on values of magnitude ~10.
  EXPECT_LT(m, 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvTest,
                         testing::Values(std::make_tuple(1, 8, 7, 1, 1, 1), std::make_tuple(8, 4, 3, 1, 1, 1),
                                         std::make_tuple(8, 4, 3, 1, 2, 1), std::make_tuple(4, 8, 8, 4, 1, 1),
                                         std::make_tuple(8, 16, 10, 5, 1, 1), std::make_tuple(16, 32, 12, 6, 1, 1),
                                         std::make_tuple(32, 64, 16, 8, 1, 1), std::make_tuple(6, 6, 4, 2, 1, 3),
                                         std::make_tuple(24, 12, 1, 1, 1, 1)));

class ConvTrTest : public testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(ConvTrTest, StreamingEqualsFullTransposedConv) {
  auto [cin, cout, stride, groups] = GetParam();
  const int K = 2 * stride, B = 2, T = 5;
  CpuBackend be(2);
  Tensor x = rand_t({B, cin, T}, 8), w = rand_t({cin, cout / groups, K}, 9), b = rand_t({cout}, 10);
  // Reference: full transposed conv with bias everywhere, trimmed to T·stride.
  const int full = (T - 1) * stride + K;
  Tensor ref = Tensor::zeros_f32({B, cout, full});
  const int cig = cin / groups, cog = cout / groups;
  for (int bb = 0; bb < B; ++bb)
    for (int ci = 0; ci < cin; ++ci)
      for (int o = 0; o < cog; ++o)
        for (int t = 0; t < T; ++t)
          for (int j = 0; j < K; ++j) {
            const int co = (ci / cig) * cog + o;
            ref.f32()[(bb * cout + co) * full + t * stride + j] +=
                x.f32()[(bb * cin + ci) * T + t] * w.f32()[(ci * cog + o) * K + j];
          }
  Tensor wp = be.prepare_conv_transpose(w, groups);
  Tensor partial = Tensor::zeros_f32({B, cout, K - stride});
  float m = 0;
  for (int t = 0; t < T; ++t) {  // one step per call
    Tensor xt = Tensor::zeros_f32({B, cin, 1}), yt = Tensor::zeros_f32({B, cout, stride});
    for (int bb = 0; bb < B; ++bb)
      for (int ci = 0; ci < cin; ++ci) xt.f32()[bb * cin + ci] = x.f32()[(bb * cin + ci) * T + t];
    be.conv_transpose1d(xt, wp, &b, cin, cout, K, stride, groups, partial, yt);
    for (int bb = 0; bb < B; ++bb)
      for (int co = 0; co < cout; ++co)
        for (int j = 0; j < stride; ++j)
          m = std::max(m, std::fabs(yt.f32()[(bb * cout + co) * stride + j] -
                                    (ref.f32()[(bb * cout + co) * full + t * stride + j] + b.f32()[co])));
  }
  EXPECT_LT(m, 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvTrTest,
                         testing::Values(std::make_tuple(8, 4, 8, 1), std::make_tuple(6, 3, 6, 1),
                                         std::make_tuple(10, 5, 5, 1), std::make_tuple(4, 2, 4, 1),
                                         std::make_tuple(8, 8, 2, 8)));

class AttentionTest : public testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(AttentionTest, MatchesNaiveWindow) {
  auto [H, KVH] = GetParam();
  CpuBackend be(2);
  const int B = 2, T = 3, D = 8, cap = 10;
  const AttnShape sh{H, KVH, D};
  const int64_t R = sh.row(), QD = H * D, KD = KVH * D;
  KvCache c{be.empty(DType::F32, {B, cap, KVH, D}), be.empty(DType::F32, {B, cap, KVH, D}), cap};
  // Fill positions 0..8 for both streams, then query the last 3 with a window lower bound.
  Tensor all = rand_t({B * 9, R}, 11);
  std::vector<int64_t> pos(B * 9);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < 9; ++t) pos[b * 9 + t] = t;
  be.kv_write(c, all, sh, B, pos);
  Tensor q = Tensor::zeros_f32({B * T, R});
  std::vector<int64_t> qp(B * T), lo(B * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      std::memcpy(q.f32() + (b * T + t) * R, all.f32() + (b * 9 + 6 + t) * R, R * 4);
      qp[b * T + t] = 6 + t;
      lo[b * T + t] = 6 + t - 4;  // window of 5
    }
  Tensor out = Tensor::zeros_f32({B * T, QD});
  be.attention(q, c, sh, B, qp, lo, out);
  float m = 0;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const int kvh = h / (H / KVH);
        const float* qq = q.f32() + (b * T + t) * R + h * D;
        std::vector<double> s;
        double mx = -1e30;
        for (int j = lo[b * T + t]; j <= qp[b * T + t]; ++j) {
          const float* k = all.f32() + (b * 9 + j) * R + QD + kvh * D;
          double d = 0;
          for (int e = 0; e < D; ++e) d += qq[e] * k[e];
          s.push_back(d / std::sqrt(double(D)));
          mx = std::max(mx, s.back());
        }
        double z = 0;
        for (double& v : s) z += (v = std::exp(v - mx));
        for (int e = 0; e < D; ++e) {
          double o = 0;
          for (size_t j = 0; j < s.size(); ++j)
            o += s[j] / z * all.f32()[(b * 9 + lo[b * T + t] + j) * R + QD + KD + kvh * D + e];
          m = std::max(m, static_cast<float>(std::fabs(o - out.f32()[(b * T + t) * QD + h * D + e])));
        }
      }
  EXPECT_LT(m, 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Heads, AttentionTest,
                         testing::Values(std::make_tuple(2, 2), std::make_tuple(4, 2), std::make_tuple(4, 1)));

// Marks on a backend whose ops run as they are called time the host's clock; a slot out of
// range is an error.
TEST(CpuOps, MarksTimeTheHostClock) {
  CpuBackend be(1);
  be.mark(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  be.mark(3);
  EXPECT_GE(be.marks_ms(0, 3), 4.0);
  EXPECT_LT(be.marks_ms(0, 3), 5000.0);
  EXPECT_THROW(be.mark(Backend::kMarks), Error);
  EXPECT_THROW(be.marks_ms(-1, 0), Error);
}

TEST(CpuOps, RopeRotatesInterleavedPairs) {
  CpuBackend be(1);
  const int H = 1, D = 4;
  Tensor qkv = Tensor::zeros_f32({1, 3 * H * D});
  for (int i = 0; i < 12; ++i) qkv.f32()[i] = 1.f;
  be.rope(qkv, AttnShape{H, H, D}, 10000.f, true, {3});
  // pair 0 rotates by 3 rad, pair 1 by 3/100 rad; v is untouched.
  EXPECT_NEAR(qkv.f32()[0], std::cos(3.f) - std::sin(3.f), 1e-6);
  EXPECT_NEAR(qkv.f32()[1], std::sin(3.f) + std::cos(3.f), 1e-6);
  EXPECT_NEAR(qkv.f32()[2], std::cos(0.03f) - std::sin(0.03f), 1e-6);
  EXPECT_NEAR(qkv.f32()[4], std::cos(3.f) - std::sin(3.f), 1e-6);
  EXPECT_EQ(qkv.f32()[8], 1.f);
  // rope_concat pairs (i, i + D/2).
  for (int i = 0; i < 12; ++i) qkv.f32()[i] = 1.f;
  be.rope(qkv, AttnShape{H, H, D}, 10000.f, false, {3});
  EXPECT_NEAR(qkv.f32()[0], std::cos(3.f) - std::sin(3.f), 1e-6);
  EXPECT_NEAR(qkv.f32()[2], std::sin(3.f) + std::cos(3.f), 1e-6);
  EXPECT_NEAR(qkv.f32()[1], std::cos(0.03f) - std::sin(0.03f), 1e-6);
}

TEST(CpuOps, RmsNormGatedEmbeddingSin) {
  CpuBackend be(1);
  Tensor x = rand_t({3, 16}, 20), a = rand_t({16}, 21), y = Tensor::zeros_f32({3, 16});
  be.rms_norm(x, a, 1e-8f, y);
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int c = 0; c < 16; ++c) ms += x.f32()[r * 16 + c] * x.f32()[r * 16 + c];
    ms /= 16;
    for (int c = 0; c < 16; ++c)
      EXPECT_NEAR(y.f32()[r * 16 + c], x.f32()[r * 16 + c] * a.f32()[c] / std::sqrt(ms + 1e-8), 1e-5);
  }
  Tensor g = Tensor::zeros_f32({3, 8});
  be.gated_activation(x, Act::Silu, g);
  for (int r = 0; r < 3; ++r)
    for (int h = 0; h < 8; ++h) {
      const float u = x.f32()[r * 16 + h], v = x.f32()[r * 16 + 8 + h];
      EXPECT_NEAR(g.f32()[r * 8 + h], u / (1 + std::exp(-u)) * v, 1e-6);
    }
  // Embeddings: -1 gives zeros, other negatives read row 0, bf16 tables widen exactly.
  Tensor tab = rand_t({5, 4}, 22), e = Tensor::zeros_f32({3, 4});
  be.embedding(tab, {2, -1, -2}, e, false);
  for (int d = 0; d < 4; ++d) {
    EXPECT_EQ(e.f32()[d], tab.f32()[8 + d]);
    EXPECT_EQ(e.f32()[4 + d], 0.f);
    EXPECT_EQ(e.f32()[8 + d], tab.f32()[d]);
  }
  be.embedding(tab, {2, -1, -2}, e, true);
  EXPECT_EQ(e.f32()[0], 2 * tab.f32()[8]);
  Tensor e1 = e.slice0(0, 1);
  EXPECT_THROW(be.embedding(tab, {5}, e1, false), Error);
  Tensor s = Tensor::zeros_f32({2, 8});
  be.sin_embedding_add(s, {0, 3}, 10000.f, 1.f);
  EXPECT_EQ(s.f32()[0], 1.f);  // cos(0)
  EXPECT_NEAR(s.f32()[8 + 0], std::cos(3.f), 1e-6);
  EXPECT_NEAR(s.f32()[8 + 4], std::sin(3.f), 1e-6);
  EXPECT_NEAR(s.f32()[8 + 3], std::cos(3.f / 10000.f), 1e-6);  // i = C/2 - 1: max_period
}

TEST(CpuOps, Bf16WeightsMatchWidenedF32) {
  CpuBackend be(2);
  for (int N : {1, 3, 40}) {
    Tensor w = rand_t({70, 300}, 23), x = rand_t({N, 300}, 24);
    Tensor wb = Tensor::zeros(DType::BF16, {70, 300}), wr = Tensor::zeros_f32({70, 300});
    for (int i = 0; i < w.numel(); ++i) {
      const uint16_t h = f32_to_bf16(w.f32()[i]);
      wb.ptr<uint16_t>()[i] = h;
      wr.f32()[i] = bf16_to_f32(h);
    }
    Tensor y1 = Tensor::zeros_f32({N, 70}), y2 = y1.clone();
    be.linear(x, be.prepare_linear(wb), nullptr, y1);
    be.linear(x, be.prepare_linear(wr), nullptr, y2);
    EXPECT_LT(max_diff(y1, y2), 1e-4f) << N;
  }
}

TEST(CpuOps, EluLayerNormGelu) {
  CpuBackend be(1);
  Tensor x = rand_t({3, 37}, 12, 3.f), y = Tensor::zeros_f32({3, 37});
  be.elu(x, y);
  for (int i = 0; i < x.numel(); ++i) {
    const float v = x.f32()[i];
    EXPECT_NEAR(y.f32()[i], v > 0 ? v : std::expm1(v), 1e-6f);
  }
  Tensor w = rand_t({37}, 13), b = rand_t({37}, 14), ln = Tensor::zeros_f32({3, 37});
  be.layer_norm(x, w, b, 1e-5f, ln);
  for (int r = 0; r < 3; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < 37; ++c) mean += x.f32()[r * 37 + c];
    mean /= 37;
    for (int c = 0; c < 37; ++c) var += std::pow(x.f32()[r * 37 + c] - mean, 2);
    var /= 37;
    for (int c = 0; c < 37; ++c)
      EXPECT_NEAR(ln.f32()[r * 37 + c], (x.f32()[r * 37 + c] - mean) / std::sqrt(var + 1e-5) * w.f32()[c] + b.f32()[c],
                  1e-5);
  }
  Tensor g = x.clone();
  be.activation(g, Act::Gelu);
  for (int i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(g.f32()[i], 0.5 * x.f32()[i] * (1 + std::erf(x.f32()[i] / std::sqrt(2.0))), 1e-6);
}

TEST(CpuOps, VqPicksNearestAndFirstOnTies) {
  CpuBackend be(1);
  Tensor cb = Tensor::zeros_f32({4, 2}), nrm = Tensor::zeros_f32({4});
  const float e[8] = {0, 0, 1, 0, 1, 0, 0, 2};  // rows 1 and 2 identical
  std::memcpy(cb.f32(), e, sizeof e);
  for (int j = 0; j < 4; ++j) nrm.f32()[j] = e[2 * j] * e[2 * j] + e[2 * j + 1] * e[2 * j + 1];
  Tensor r = Tensor::zeros_f32({3, 2});
  const float xs[6] = {0.9f, 0.1f, 0.1f, 1.6f, -0.1f, 0.f};
  std::memcpy(r.f32(), xs, sizeof xs);
  Tensor codes = Tensor::zeros(DType::I64, {3});
  const Tensor cbp = be.prepare_linear(cb);
  be.vq_encode(r, cbp, nrm, codes, 0);
  EXPECT_EQ(codes.i64()[0], 1);
  EXPECT_EQ(codes.i64()[1], 3);
  EXPECT_EQ(codes.i64()[2], 0);
  EXPECT_NEAR(r.f32()[0], -0.1f, 1e-6);  // residual updated
  Tensor acc = Tensor::zeros_f32({3, 2});
  be.vq_decode_add(acc, cbp, nrm, codes, 0);
  EXPECT_EQ(acc.f32()[3], 2.f);
  codes.i64()[0] = 4;
  EXPECT_THROW(be.vq_decode_add(acc, cbp, nrm, codes, 0), Error);
}
