// `doctor`: every op family on every device against plain reference loops written here.
#include "moshi/doctor.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "api/model_impl.h"
#include "core/dtype.h"
#include "core/error.h"
#include "runtime/backend.h"

namespace moshi {

namespace {

std::vector<float> rnd(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(g);
  return v;
}

// Host <-> device helpers.
Tensor dev(Backend& be, const std::vector<float>& v, const Shape& s) {
  Tensor t = be.empty(DType::F32, s);
  be.upload(t, v.data());
  return t;
}
std::vector<float> host(Backend& be, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  be.download(t, v.data());
  return v;
}
Tensor host_tensor(const std::vector<float>& v, const Shape& s) {
  Tensor t = Tensor::zeros_f32(s);
  std::memcpy(t.data(), v.data(), t.nbytes());
  return t;
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  return m;
}

float act(float v, Act a) {
  switch (a) {
    case Act::Gelu: return 0.5f * v * (1.f + std::erf(v / std::sqrt(2.f)));
    case Act::Silu: return v / (1.f + std::exp(-v));
    default: return v;
  }
}

using Check = std::function<double(Backend&, std::string*)>;  // returns the max error

std::vector<std::pair<std::string, std::pair<double, Check>>> checks() {
  std::vector<std::pair<std::string, std::pair<double, Check>>> c;
  // y = x·wᵀ at the 7B's FFN shape (scaled down) and the depformer's, f32 then bf16 weights.
  for (const bool bf16 : {false, true}) {
    c.push_back({bf16 ? "linear (bf16 weights)" : "linear (f32)", {2e-3, [bf16](Backend& be, std::string* d) {
      const int64_t N = 2, in = 1024, out = 2816;
      *d = "x [2, 1024] · w [2816, 1024]ᵀ";
      auto x = rnd(N * in, 1), w = rnd(out * in, 2, 0.05f);
      Tensor wt = host_tensor(w, {out, in});
      if (bf16) {
        Tensor b = Tensor::zeros(DType::BF16, {out, in});
        for (int64_t i = 0; i < out * in; ++i) {
          b.ptr<uint16_t>()[i] = f32_to_bf16(w[i]);
          w[i] = bf16_to_f32(b.ptr<uint16_t>()[i]);
        }
        wt = b;
      }
      Tensor y = be.empty(DType::F32, {N, out});
      be.linear(dev(be, x, {N, in}), be.prepare_linear(wt), nullptr, y);
      std::vector<float> ref(N * out);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < out; ++o) {
          double s = 0;
          for (int64_t i = 0; i < in; ++i) s += static_cast<double>(x[n * in + i]) * w[o * in + i];
          ref[n * out + o] = static_cast<float>(s);
        }
      return max_diff(host(be, y), ref);
    }}});
  }
  c.push_back({"conv1d", {1e-3, [](Backend& be, std::string* d) {
    const int B = 1, cin = 16, cout = 32, K = 8, S = 4, P = K - S, T = 64;
    *d = "16 -> 32 channels, kernel 8, stride 4";
    auto prev = rnd(B * cin * P, 3), x = rnd(B * cin * T, 4), w = rnd(cout * cin * K, 5, 0.2f), b = rnd(cout, 6);
    Tensor y = be.empty(DType::F32, {B, cout, T / S});
    Tensor bias = be.prepare_vector(host_tensor(b, {cout}));
    be.conv1d(dev(be, prev, {B, cin, P}), dev(be, x, {B, cin, T}), be.prepare_conv(host_tensor(w, {cout, cin, K}), 1),
              &bias, cin, cout, K, S, 1, 1, y);
    std::vector<float> ref(cout * (T / S));
    for (int co = 0; co < cout; ++co)
      for (int t = 0; t < T / S; ++t) {
        double s = b[co];
        for (int ci = 0; ci < cin; ++ci)
          for (int k = 0; k < K; ++k) {
            const int u = t * S + k;
            s += static_cast<double>(w[(co * cin + ci) * K + k]) * (u < P ? prev[ci * P + u] : x[ci * T + u - P]);
          }
        ref[co * (T / S) + t] = static_cast<float>(s);
      }
    return max_diff(host(be, y), ref);
  }}});
  c.push_back({"conv_transpose1d", {1e-3, [](Backend& be, std::string* d) {
    const int cin = 16, cout = 8, S = 5, K = 10, T = 4;
    *d = "16 -> 8 channels, kernel 10, stride 5";
    auto x = rnd(cin * T, 7), w = rnd(cin * cout * K, 8, 0.2f);
    Tensor partial = be.empty(DType::F32, {1, cout, K - S}), y = be.empty(DType::F32, {1, cout, T * S});
    be.conv_transpose1d(dev(be, x, {1, cin, T}), be.prepare_conv_transpose(host_tensor(w, {cin, cout, K}), 1), nullptr,
                        cin, cout, K, S, 1, partial, y);
    std::vector<float> full(cout * ((T - 1) * S + K), 0.f);
    for (int ci = 0; ci < cin; ++ci)
      for (int co = 0; co < cout; ++co)
        for (int t = 0; t < T; ++t)
          for (int j = 0; j < K; ++j)
            full[co * ((T - 1) * S + K) + t * S + j] += x[ci * T + t] * w[(ci * cout + co) * K + j];
    std::vector<float> ref(cout * T * S);
    for (int co = 0; co < cout; ++co)
      for (int j = 0; j < T * S; ++j) ref[co * T * S + j] = full[co * ((T - 1) * S + K) + j];
    return max_diff(host(be, y), ref);
  }}});
  c.push_back({"layer_norm / rms_norm", {1e-4, [](Backend& be, std::string* d) {
    const int64_t N = 3, C = 512;
    *d = "[3, 512], eps 1e-5 / 1e-8";
    auto x = rnd(N * C, 9), w = rnd(C, 10), b = rnd(C, 11);
    Tensor y1 = be.empty(DType::F32, {N, C}), y2 = be.empty(DType::F32, {N, C});
    Tensor xd = dev(be, x, {N, C});
    be.layer_norm(xd, be.prepare_vector(host_tensor(w, {C})), be.prepare_vector(host_tensor(b, {C})), 1e-5f, y1);
    be.rms_norm(xd, be.prepare_vector(host_tensor(w, {C})), 1e-8f, y2);
    std::vector<float> r1(N * C), r2(N * C);
    for (int64_t n = 0; n < N; ++n) {
      double m = 0, v = 0, ss = 0;
      for (int64_t i = 0; i < C; ++i) m += x[n * C + i];
      m /= C;
      for (int64_t i = 0; i < C; ++i) v += (x[n * C + i] - m) * (x[n * C + i] - m), ss += x[n * C + i] * x[n * C + i];
      v /= C;
      for (int64_t i = 0; i < C; ++i) {
        r1[n * C + i] = static_cast<float>((x[n * C + i] - m) / std::sqrt(v + 1e-5) * w[i] + b[i]);
        r2[n * C + i] = static_cast<float>(x[n * C + i] * w[i] / std::sqrt(ss / C + 1e-8));
      }
    }
    return std::max(max_diff(host(be, y1), r1), max_diff(host(be, y2), r2));
  }}});
  c.push_back({"activations (gelu, silu gate, elu)", {1e-5, [](Backend& be, std::string* d) {
    const int64_t N = 4, H = 64;
    *d = "[4, 128]";
    auto x = rnd(N * 2 * H, 12, 4.f);
    Tensor g = dev(be, x, {N, 2 * H}), gated = be.empty(DType::F32, {N, H}), e = be.empty(DType::F32, {N, 2 * H});
    be.gated_activation(g, Act::Silu, gated);
    be.elu(g, e);
    be.activation(g, Act::Gelu);
    std::vector<float> rg(N * H), re(N * 2 * H), rgelu(N * 2 * H);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h) rg[n * H + h] = act(x[n * 2 * H + h], Act::Silu) * x[n * 2 * H + H + h];
    for (size_t i = 0; i < x.size(); ++i) {
      re[i] = x[i] > 0 ? x[i] : std::expm1(x[i]);
      rgelu[i] = act(x[i], Act::Gelu);
    }
    return std::max({max_diff(host(be, gated), rg), max_diff(host(be, e), re), max_diff(host(be, g), rgelu)});
  }}});
  c.push_back({"rope + attention", {1e-4, [](Backend& be, std::string* d) {
    const int H = 4, D = 64, cap = 12, T = 9;
    const AttnShape sh{H, H, D};
    *d = "4 heads of 64, window 6 over a ring of 12";
    auto qkv = rnd(T * sh.row(), 13);
    std::vector<int64_t> pos(T), lo(T);
    for (int t = 0; t < T; ++t) pos[t] = 100 + t, lo[t] = std::max(100, 100 + t - 5);  // only written keys
    KvCache kc = be.new_kv_cache(DType::F32, 1, cap, H, D);
    Tensor q = dev(be, qkv, {T, sh.row()}), out = be.empty(DType::F32, {T, H * D});
    be.rope(q, sh, 10000.f, true, pos);
    be.kv_write(kc, q, sh, 1, pos);
    be.attention(q, kc, sh, 1, pos, lo, out);
    // Reference: rotate, then windowed softmax attention over rows.
    std::vector<float> r = qkv;
    for (int t = 0; t < T; ++t)
      for (int part = 0; part < 2; ++part)
        for (int h = 0; h < H; ++h)
          for (int i = 0; i < D / 2; ++i) {
            const float f = std::exp(static_cast<float>(i) * static_cast<float>(-std::log(10000.0) * 2.0 / D));
            const float a = f * static_cast<float>(pos[t]);
            float* v = &r[t * sh.row() + part * H * D + h * D + 2 * i];
            const float re = v[0], im = v[1];
            v[0] = re * std::cos(a) - im * std::sin(a);
            v[1] = re * std::sin(a) + im * std::cos(a);
          }
    std::vector<float> ref(T * H * D, 0.f);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        std::vector<double> s;
        double mx = -1e30;
        for (int j = std::max(0, t - 5); j <= t; ++j) {
          double dd = 0;
          for (int e = 0; e < D; ++e) dd += r[t * sh.row() + h * D + e] * r[j * sh.row() + H * D + h * D + e];
          s.push_back(dd / std::sqrt(static_cast<double>(D)));
          mx = std::max(mx, s.back());
        }
        double z = 0;
        for (double& v : s) z += (v = std::exp(v - mx));
        for (int e = 0; e < D; ++e) {
          double o = 0;
          for (size_t k = 0; k < s.size(); ++k)
            o += s[k] / z * r[(std::max(0, t - 5) + k) * sh.row() + 2 * H * D + h * D + e];
          ref[t * H * D + h * D + e] = static_cast<float>(o);
        }
      }
    return max_diff(host(be, out), ref);
  }}});
  c.push_back({"embedding", {0, [](Backend& be, std::string* d) {
    *d = "ids 5, -1, 2 of a [8, 64] table";
    auto tab = rnd(8 * 64, 14);
    Tensor out = be.empty(DType::F32, {3, 64});
    be.embedding(be.prepare_embedding(host_tensor(tab, {8, 64})), {5, -1, 2}, out, false);
    std::vector<float> ref(3 * 64, 0.f);
    for (int i = 0; i < 64; ++i) ref[i] = tab[5 * 64 + i], ref[128 + i] = tab[2 * 64 + i];
    return max_diff(host(be, out), ref);
  }}});
  c.push_back({"vector quantisation", {1e-5, [](Backend& be, std::string* d) {
    const int64_t bins = 64, D = 16;
    *d = "3 rows against 64 entries of 16";
    auto cb = rnd(bins * D, 15), x = rnd(3 * D, 16);
    std::vector<float> norms(bins, 0.f);
    for (int64_t j = 0; j < bins; ++j)
      for (int64_t i = 0; i < D; ++i) norms[j] += cb[j * D + i] * cb[j * D + i];
    Tensor r = dev(be, x, {3, D}), codes = be.empty(DType::I64, {3});
    be.vq_encode(r, be.prepare_linear(host_tensor(cb, {bins, D})), be.prepare_vector(host_tensor(norms, {bins})), codes, 0);
    std::vector<int64_t> got(3);
    be.download(codes, got.data());
    double err = 0;
    std::vector<float> res = x;
    for (int n = 0; n < 3; ++n) {
      int64_t best = 0;
      double bd = INFINITY;
      for (int64_t j = 0; j < bins; ++j) {
        double s = 0;
        for (int64_t i = 0; i < D; ++i) s += (x[n * D + i] - cb[j * D + i]) * (x[n * D + i] - cb[j * D + i]);
        if (s < bd) bd = s, best = j;
      }
      if (got[n] != best) err = INFINITY;
      for (int64_t i = 0; i < D; ++i) res[n * D + i] -= cb[best * D + i];
    }
    return std::max(err, max_diff(host(be, r), res));
  }}});
  c.push_back({"sampling (greedy, top-k)", {0, [](Backend& be, std::string* d) {
    const int64_t B = 3, V = 2048;
    *d = "3 rows of 2048 logits, greedy and top-250 at temperature 0.8, fraction of tokens unlike the host's";
    auto l = rnd(B * V, 17, 4.f);
    const Tensor logits = dev(be, l, {B, V});
    Tensor tok = be.empty(DType::I64, {B, 2});
    int64_t differ = 0, draws = 0;
    for (const SamplingParams& p : {SamplingParams{false, 0.8f, 250}, SamplingParams{true, 0.8f, 250}})
      for (int step = 0; step < 4; ++step) {
        const std::vector<int64_t> steps(B, step);
        be.sample(logits, p, 7, steps, 2, tok, 1);
        std::vector<int64_t> got(B * 2);
        be.download(tok, got.data());
        for (int64_t b = 0; b < B; ++b, ++draws)
          differ += got[b * 2 + 1] != sample_token(l.data() + b * V, V, p, 7, b, step, 2);
      }
    return static_cast<double>(differ) / draws;
  }}});
  c.push_back({"embedding of device ids", {0, [](Backend& be, std::string* d) {
    const int64_t V = 50, D = 64;
    *d = "column 1 of a [3, 2] id tensor against host ids";
    const Tensor table = be.prepare_embedding(host_tensor(rnd(V * D, 18), {V, D}));
    const std::vector<int64_t> ids = {0, 7, 1, -1, 2, 49};
    Tensor dids = be.empty(DType::I64, {3, 2});
    be.upload(dids, ids.data());
    Tensor a = be.empty(DType::F32, {3, D}), b = be.empty(DType::F32, {3, D});
    be.embedding_from(table, dids, 1, a, false);
    be.embedding(table, {7, -1, 49}, b, false);
    return max_diff(host(be, a), host(be, b));
  }}});
  c.push_back({"fused rope+cache, add/norm, GLU", {1e-5, [](Backend& be, std::string* d) {
    const int H = 4, D = 64, cap = 8, T = 3;
    const AttnShape sh{H, H, D};
    *d = "each fused op against the ops it stands for, on the same device";
    const auto qkv = rnd(T * sh.row(), 19);
    std::vector<int64_t> pos = {5, 6, 7}, lo = {0, 0, 0};
    double err = 0;
    std::vector<float> outs[2];
    for (int fused = 0; fused < 2; ++fused) {
      KvCache kc = be.new_kv_cache(DType::F32, 1, cap, H, D);
      Tensor q = dev(be, qkv, {T, sh.row()}), out = be.empty(DType::F32, {T, H * D});
      if (fused) {
        be.rope_kv_write(q, kc, sh, true, 10000.f, false, 1, pos);
      } else {
        be.rope(q, sh, 10000.f, false, pos);
        be.kv_write(kc, q, sh, 1, pos);
      }
      be.attention(q, kc, sh, 1, pos, lo, out);
      outs[fused] = host(be, out);
    }
    err = max_diff(outs[0], outs[1]);
    // A decoding step (one row) with the RoPE and cache write inside the attention, two steps.
    std::vector<float> dec[2];
    for (int fused = 0; fused < 2; ++fused) {
      KvCache kc = be.new_kv_cache(DType::F32, 1, cap, H, D);
      for (int64_t p = 0; p < 2; ++p) {
        Tensor q = dev(be, rnd(sh.row(), 30 + p), {1, sh.row()}), out = be.empty(DType::F32, {1, H * D});
        if (fused) {
          be.rope_kv_attention(q, kc, sh, true, 10000.f, false, 1, {p}, {0}, out);
        } else {
          be.rope_kv_write(q, kc, sh, true, 10000.f, false, 1, {p});
          be.attention(q, kc, sh, 1, {p}, {0}, out);
        }
        const std::vector<float> o = host(be, out);
        dec[fused].insert(dec[fused].end(), o.begin(), o.end());
      }
    }
    err = std::max(err, max_diff(dec[0], dec[1]));
    // Residual add + norm; norm + product and product + residual add (f32 and bf16 weights, one
    // and two rows).
    const int64_t C = 256, O = 96;
    const Tensor tw = be.prepare_vector(host_tensor(rnd(C, 22), {C})), tb = be.prepare_vector(host_tensor(rnd(C, 23), {C}));
    const std::vector<float> lw = rnd(O * C, 26, 0.1f);
    Tensor lb = Tensor::zeros(DType::BF16, {O, C});
    for (int64_t i = 0; i < O * C; ++i) lb.ptr<uint16_t>()[i] = f32_to_bf16(lw[i]);
    const Tensor lin[2] = {be.prepare_linear(host_tensor(lw, {O, C})), be.prepare_linear(lb)};
    const Tensor scale = be.prepare_vector(host_tensor(rnd(C, 27), {C}));
    for (const bool rms : {true, false}) {  // residual add + the next norm
      Tensor x1 = dev(be, rnd(2 * C, 20), {2, C}), x2 = dev(be, rnd(2 * C, 20), {2, C}), uu = dev(be, rnd(2 * C, 21), {2, C});
      Tensor y1 = be.empty(DType::F32, {2, C}), y2 = be.empty(DType::F32, {2, C});
      if (rms) {
        be.add_rms_norm(x1, uu, &tw, tw, 1e-6f, y1);
        be.add_scaled(x2, uu, &tw);
        be.rms_norm(x2, tw, 1e-6f, y2);
      } else {
        be.add_layer_norm(x1, uu, nullptr, tw, tb, 1e-5f, y1);
        be.add_scaled(x2, uu, nullptr);
        be.layer_norm(x2, tw, tb, 1e-5f, y2);
      }
      err = std::max({err, max_diff(host(be, x1), host(be, x2)), max_diff(host(be, y1), host(be, y2))});
    }
    for (const Tensor& w : lin)
      for (const int64_t N : {int64_t{1}, int64_t{2}}) {
        const Tensor x = dev(be, rnd(N * C, 20), {N, C}), a = dev(be, rnd(N * O, 21), {N, O});
        Tensor h = be.empty(DType::F32, {N, C}), y1 = be.empty(DType::F32, {N, O}), y2 = be.empty(DType::F32, {N, O});
        for (const bool layer : {false, true}) {
          const InputNorm n{layer, &tw, &tb, 1e-5f};
          be.norm_linear(x, n, h, w, nullptr, y1);
          be.apply_norm(x, n, h);
          be.linear(h, w, nullptr, y2);
          err = std::max(err, max_diff(host(be, y1), host(be, y2)));
        }
        const Tensor wt = be.prepare_linear(host_tensor(rnd(C * O, 28, 0.1f), {C, O}));
        Tensor r1 = dev(be, rnd(N * C, 29), {N, C}), r2 = dev(be, rnd(N * C, 29), {N, C});
        Tensor t = be.empty(DType::F32, {N, C});
        be.linear_add(a, wt, nullptr, &scale, t, r1);
        be.linear(a, wt, nullptr, t);
        be.add_scaled(r2, t, &scale);
        err = std::max(err, max_diff(host(be, r1), host(be, r2)));
      }
    // A gated feed-forward's first product, bf16 weights as the LM's, one and three rows.
    const int64_t Hg = 48, In = 128;
    const auto wv = rnd(2 * Hg * In, 24);
    Tensor wb = Tensor::zeros(DType::BF16, {2 * Hg, In});
    for (int64_t i = 0; i < 2 * Hg * In; ++i) wb.ptr<uint16_t>()[i] = f32_to_bf16(wv[i] * 0.1f);
    const Tensor pw = be.prepare_linear(wb);
    for (const int64_t N : {int64_t{1}, int64_t{3}}) {
      const Tensor xg = dev(be, rnd(N * In, 25), {N, In});
      Tensor t1 = be.empty(DType::F32, {N, 2 * Hg}), t2 = be.empty(DType::F32, {N, 2 * Hg});
      Tensor y1 = be.empty(DType::F32, {N, Hg}), y2 = be.empty(DType::F32, {N, Hg});
      be.linear_glu(xg, pw, Act::Silu, t1, y1);
      be.linear(xg, pw, nullptr, t2);
      be.gated_activation(t2, Act::Silu, y2);
      err = std::max(err, max_diff(host(be, y1), host(be, y2)));
    }
    return err;
  }}});
  return c;
}

}  // namespace

std::vector<std::string> available_devices() {
  std::vector<std::string> d = {"cpu"};
  try {
    make_backend(BackendOptions{"cuda", 0});
    d.push_back("cuda");
  } catch (const Error&) {
  }
  return d;
}

std::vector<DoctorCheck> run_doctor(const std::vector<std::string>& devices, int threads) {
  std::vector<DoctorCheck> out;
  for (const std::string& device : devices) {
    std::shared_ptr<Backend> be;
    try {
      be = make_backend(BackendOptions{device, threads});
    } catch (const Error& e) {
      out.push_back({device, "device", false, 0, 0, e.what()});
      continue;
    }
    for (auto& [family, tc] : checks()) {
      DoctorCheck c{device, family, false, 0, tc.first, ""};
      try {
        c.max_err = tc.second(*be, &c.detail);
        c.pass = c.max_err <= tc.first;
      } catch (const std::exception& e) {
        c.detail = e.what();
      }
      out.push_back(c);
    }
    // End to end: the tiny synthetic model's teacher-forced logits against the CPU.
    DoctorCheck e2e{device, "tiny model end to end (LM logits vs cpu)", false, 0, 1e-3, ""};
    try {
      ModelOptions mo;
      mo.device = device;
      mo.threads = threads;
      Model m = Model::load("synthetic:tiny", mo);
      ModelOptions ref_opts;
      ref_opts.threads = threads;
      Model ref = Model::load("synthetic:tiny", ref_opts);
      const LmConfig& lc = m.impl()->lm->config();
      const int T = 6;
      std::vector<int64_t> codes(static_cast<size_t>(lc.num_codebooks()) * T);
      for (size_t i = 0; i < codes.size(); ++i)  // row 0 is text, the rest audio
        codes[i] = static_cast<int64_t>((i * 37) % (i < static_cast<size_t>(T) ? lc.text_card : lc.card));
      auto a = m.impl()->lm->forward(codes, 1, T), b = ref.impl()->lm->forward(codes, 1, T);
      std::vector<float> la, lb;
      for (size_t i = 0; i < a.logits.size(); ++i)
        if (!std::isnan(b.logits[i])) la.push_back(a.logits[i]), lb.push_back(b.logits[i]);
      e2e.max_err = max_diff(la, lb);
      e2e.pass = e2e.max_err <= e2e.tolerance;
      e2e.detail = "synthetic:tiny, 6 teacher-forced steps";
    } catch (const std::exception& e) {
      e2e.detail = e.what();
    }
    out.push_back(e2e);
  }
  return out;
}

}  // namespace moshi
