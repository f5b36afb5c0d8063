#include "lm/lm_model.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace moshi {

namespace {
// Workspace slots of an LmState.
enum Slot { kX, kLowRank, kZ, kTextLogits, kDepIn, kDepTmp, kDepNorm, kLogits, kLowRank2 };
}

void LmModel::load_embedding(WeightBinder& wb, const std::string& name, int64_t rows, int64_t dim, int low_rank,
                             Embedding& e, DType dt) {
  if (low_rank > 0) {
    e.table = be_->prepare_embedding(wb.take(name + ".weight", {rows, low_rank}, dt));
    e.low_rank = be_->prepare_linear(wb.take(name + ".low_rank.weight", {dim, low_rank}, dt));
  } else {
    e.table = be_->prepare_embedding(wb.take(name + ".weight", {rows, dim}, dt));
  }
}

std::shared_ptr<const LmModel> LmModel::load(const WeightSource& src, const LmConfig& cfg,
                                             std::shared_ptr<Backend> backend, const LmLoadOptions& opts) {
  auto m = std::shared_ptr<LmModel>(new LmModel());
  m->cfg_ = cfg;
  m->be_ = std::move(backend);
  Backend& be = *m->be_;
  MatrixPolicy policy;
  if (opts.weights_dtype == "bf16") {
    policy.convert = MatrixPolicy::Convert::ToBf16;
    policy.synth = DType::BF16;
  } else if (opts.weights_dtype == "f32") {
    policy.convert = MatrixPolicy::Convert::ToF32;
  } else {
    MOSHI_CHECK(opts.weights_dtype == "auto", "weights dtype '", opts.weights_dtype, "' is not one of auto, bf16, f32");
  }
  const DType dt = policy.synth;
  const bool bf16_weights = opts.weights_dtype == "bf16";
  if (opts.kv_dtype == "bf16" || (opts.kv_dtype == "auto" && bf16_weights && be.device() == Device::CUDA))
    m->kv_dtype_ = DType::BF16;
  else
    MOSHI_CHECK(opts.kv_dtype == "auto" || opts.kv_dtype == "f32", "kv cache dtype '", opts.kv_dtype,
                "' is not one of auto, bf16, f32");
  WeightBinder wb(src);
  auto matrix = [&](const std::string& name, const Shape& shape) {
    return be.prepare_linear(apply_policy(wb.take(name, shape, dt), policy));
  };
  const int64_t D = cfg.dim, Dd = cfg.depformer_dim;
  for (int k = 0; k < cfg.n_q; ++k) {
    Embedding e;
    m->load_embedding(wb, "emb." + std::to_string(k), cfg.card + 1, D, 0, e, dt);
    m->emb_.push_back(std::move(e));
  }
  m->load_embedding(wb, "text_emb", cfg.text_card + 1, D, 0, m->text_emb_, dt);
  m->temporal_.load(wb, be, "transformer.", cfg.temporal, policy);
  if (cfg.out_norm == NormKind::RmsNorm) {
    m->out_norm_w_ = be.prepare_vector(wb.take("out_norm.alpha", {1, 1, D}).reshape({D}));
  } else {
    m->out_norm_w_ = be.prepare_vector(wb.take("out_norm.weight", {D}));
    m->out_norm_b_ = be.prepare_vector(wb.take("out_norm.bias", {D}));
  }
  m->text_linear_ = matrix("text_linear.weight", {cfg.text_card_out, D});
  if (cfg.bias_proj) m->text_bias_ = be.prepare_vector(wb.take("text_linear.bias", {cfg.text_card_out}));
  if (cfg.dep_q > 0) {
    for (int i = 0; i < cfg.depformer_in_count(); ++i)
      m->depformer_in_.push_back(matrix("depformer_in." + std::to_string(i) + ".weight", {Dd, D}));
    Embedding te;
    m->load_embedding(wb, "depformer_text_emb", cfg.text_card + 1, Dd, cfg.depformer_low_rank, te, dt);
    m->dep_emb_.push_back(std::move(te));
    for (int k = 0; k + 1 < cfg.dep_q; ++k) {
      Embedding e;
      m->load_embedding(wb, "depformer_emb." + std::to_string(k), cfg.card + 1, Dd, cfg.depformer_low_rank, e, dt);
      m->dep_emb_.push_back(std::move(e));
    }
    m->depformer_.load(wb, be, "depformer.", cfg.depformer, policy);
    for (int k = 0; k < cfg.dep_q; ++k) {
      const std::string ks = std::to_string(k);
      if (cfg.depformer_has_norm) {
        if (cfg.depformer_norm == NormKind::RmsNorm) {
          m->dep_norm_w_.push_back(
              be.prepare_vector(wb.take("depformer_norms." + ks + ".alpha", {1, 1, Dd}).reshape({Dd})));
          m->dep_norm_b_.emplace_back();
        } else {
          m->dep_norm_w_.push_back(be.prepare_vector(wb.take("depformer_norms." + ks + ".weight", {Dd})));
          m->dep_norm_b_.push_back(be.prepare_vector(wb.take("depformer_norms." + ks + ".bias", {Dd})));
        }
      }
      m->linears_.push_back(matrix("linears." + ks + ".weight", {cfg.card, Dd}));
      if (cfg.bias_proj) m->linear_bias_.push_back(be.prepare_vector(wb.take("linears." + ks + ".bias", {cfg.card})));
    }
  }
  return m;
}

std::vector<int64_t> LmModel::initial_tokens() const {
  std::vector<int64_t> v(cfg_.num_codebooks(), cfg_.card);
  v[0] = cfg_.text_card;
  return v;
}

double LmModel::weight_bytes_per_step() const {
  double bytes = temporal_.weight_bytes(-1) + text_linear_.nbytes();
  for (int k = 0; k < cfg_.dep_q; ++k) {
    const int set = cfg_.depformer.weights_per_step > 0
                        ? (cfg_.depformer.schedule.empty() ? k : cfg_.depformer.schedule[k])
                        : 0;
    bytes += depformer_in_[cfg_.depformer_in_index(k)].nbytes() + depformer_.weight_bytes(set) + linears_[k].nbytes();
  }
  return bytes;
}

std::unique_ptr<LmState> LmModel::new_state(int batch, int max_steps) const {
  MOSHI_CHECK(batch >= 1 && max_steps >= 1, "lm: batch and steps per call must be positive");
  auto st = std::make_unique<LmState>();
  st->batch = batch;
  // An unlimited temporal context still needs a bound for its ring; a stream longer than it
  // fails loudly in the attention op rather than forgetting silently.
  constexpr int kUnlimitedContextSteps = 4096;
  st->temporal = temporal_.new_state(*be_, batch, max_steps,
                                     cfg_.temporal.context > 0 ? 0 : std::max(max_steps, kUnlimitedContextSteps),
                                     kv_dtype_);
  if (cfg_.dep_q > 0) st->depformer = depformer_.new_state(*be_, batch * max_steps, 1, cfg_.dep_q);
  st->tokens = be_->empty(DType::I64, {batch, 1 + cfg_.dep_q});
  st->temporal_stage = StageHandle(*be_);
  st->depformer_stage = StageHandle(*be_);
  return st;
}

void LmModel::embed_with(LmState& st, const Embedding& e, int64_t N, const std::function<void(Tensor&, bool)>& lookup,
                         Tensor& out, bool accumulate, int slot) const {
  if (!e.low_rank.defined()) {
    lookup(out, accumulate);
    return;
  }
  Tensor& r = st.ws.f32(*be_, slot, {N, e.table.dim(1)});
  lookup(r, false);  // zero rows stay zero through the projection
  if (!accumulate) {
    be_->linear(r, e.low_rank, nullptr, out);
    return;
  }
  Tensor& y = st.ws.f32(*be_, slot + 100, {N, out.dim(-1)});
  be_->linear(r, e.low_rank, nullptr, y);
  be_->add_scaled(out, y, nullptr);
}

void LmModel::embed(LmState& st, const Embedding& e, const std::vector<int64_t>& ids, Tensor& out, bool accumulate,
                    int slot) const {
  embed_with(
      st, e, static_cast<int64_t>(ids.size()),
      [&](Tensor& o, bool acc) { be_->embedding(e.table, ids, o, acc); }, out, accumulate, slot);
}

void LmModel::embed_from(LmState& st, const Embedding& e, const Tensor& ids, int64_t col, Tensor& out,
                         bool accumulate, int slot) const {
  embed_with(
      st, e, ids.dim(0), [&](Tensor& o, bool acc) { be_->embedding_from(e.table, ids, col, o, acc); }, out,
      accumulate, slot);
}

void LmModel::out_norm(const Tensor& x, Tensor& y) const {
  if (cfg_.out_norm == NormKind::RmsNorm)
    be_->rms_norm(x, out_norm_w_, cfg_.out_norm_eps, y);
  else
    be_->layer_norm(x, out_norm_w_, out_norm_b_, cfg_.out_norm_eps, y);
}

const Tensor& LmModel::temporal_step(LmState& st, const std::vector<int64_t>& tokens) const {
  Backend& be = *be_;
  const int B = st.batch, K = cfg_.num_codebooks();
  MOSHI_CHECK(static_cast<int>(tokens.size()) == B * K, "lm step: ", tokens.size(), " tokens for ", B, " x ", K);
  const int64_t D = cfg_.dim;
  Tensor& x = st.ws.f32(be, kX, {B, D});
  // Audio codebooks in order, then text: the reference's summation order.
  bool low_rank = text_emb_.low_rank.defined();
  for (int k = 0; k < cfg_.n_q; ++k) low_rank = low_rank || emb_[k].low_rank.defined();
  if (!low_rank) {  // one lookup-and-sum over all the tables
    std::vector<const Tensor*> tables;
    std::vector<int64_t> ids;
    ids.reserve(static_cast<size_t>(B) * (cfg_.n_q + 1));
    for (int k = 0; k <= cfg_.n_q; ++k) {
      tables.push_back(k < cfg_.n_q ? &emb_[k].table : &text_emb_.table);
      for (int b = 0; b < B; ++b) ids.push_back(tokens[b * K + (k < cfg_.n_q ? 1 + k : 0)]);
    }
    be.embedding_sum(tables, ids, x);
  } else {
    std::vector<int64_t> ids(B);
    for (int k = 0; k < cfg_.n_q; ++k) {
      for (int b = 0; b < B; ++b) ids[b] = tokens[b * K + 1 + k];
      embed(st, emb_[k], ids, x, k > 0, kLowRank);
    }
    for (int b = 0; b < B; ++b) ids[b] = tokens[b * K];
    embed(st, text_emb_, ids, x, cfg_.n_q > 0, kLowRank);
  }
  if (st.tap) (*st.tap)("lm.embed", x);
  temporal_.forward(be, x, 1, st.temporal, 1);
  Tensor& z = st.ws.f32(be, kZ, {B, D});
  out_norm(x, z);
  if (st.tap) (*st.tap)("lm.z", z);
  Tensor& tl = st.ws.f32(be, kTextLogits, {B, cfg_.text_card_out});
  be.linear(z, text_linear_, text_bias_.defined() ? &text_bias_ : nullptr, tl);
  if (st.tap) (*st.tap)("lm.text_logits", tl);
  return tl;
}

void LmModel::temporal_step(LmState& st, const std::vector<int64_t>& tokens, std::vector<float>& text_logits) const {
  const Tensor& tl = temporal_step(st, tokens);
  text_logits.resize(static_cast<size_t>(tl.numel()));
  be_->download(tl, text_logits.data());
}

void LmModel::run_depformer(LmState& st, const Tensor& z, int64_t rows,
                            const std::function<void(int k, Tensor& in)>& feed,
                            const std::function<void(int k, const Tensor& logits)>& emit) const {
  Backend& be = *be_;
  const int64_t Dd = cfg_.depformer_dim;
  Transformer::State& ds = st.depformer;
  MOSHI_CHECK(ds.batch == rows, "lm depformer: state for ", ds.batch, " rows, called with ", rows);
  for (int b = 0; b < ds.batch; ++b) depformer_.reset(ds, b);  // a fresh depth sequence per frame
  Tensor& in = st.ws.f32(be, kDepIn, {rows, Dd});
  Tensor& normed = st.ws.f32(be, kDepNorm, {rows, Dd});
  Tensor& logits = st.ws.f32(be, kLogits, {rows, cfg_.card});
  for (int k = 0; k < cfg_.dep_q; ++k) {
    be.linear(z, depformer_in_[cfg_.depformer_in_index(k)], nullptr, in);
    feed(k, in);
    ds.tap_prefix = "lm.dep" + std::to_string(k) + ".";
    depformer_.forward(be, in, 1, ds, 1);
    const Tensor* h = &in;
    if (cfg_.depformer_has_norm) {
      if (cfg_.depformer_norm == NormKind::RmsNorm)
        be.rms_norm(in, dep_norm_w_[k], cfg_.depformer_norm_eps, normed);
      else
        be.layer_norm(in, dep_norm_w_[k], dep_norm_b_[k], cfg_.depformer_norm_eps, normed);
      h = &normed;
    }
    be.linear(*h, linears_[k], cfg_.bias_proj ? &linear_bias_[k] : nullptr, logits);
    if (st.tap) (*st.tap)("lm.dep" + std::to_string(k) + ".logits", logits);
    emit(k, logits);
  }
}

void LmModel::depformer_frame(LmState& st, const Sampler& sample) const {
  if (cfg_.dep_q == 0) return;
  Tensor& z = st.ws.f32(*be_, kZ, {st.batch, cfg_.dim});
  run_depformer(
      st, z, st.batch, [&](int k, Tensor& in) { embed_from(st, dep_emb_[k], st.tokens, k, in, true, kLowRank2); },
      sample);
}

LmModel::ForwardOut LmModel::forward(const std::vector<int64_t>& codes, int B, int T) const {
  Backend& be = *be_;
  const int K = cfg_.num_codebooks();
  MOSHI_CHECK(B >= 1 && T >= 1 && static_cast<int64_t>(codes.size()) == static_cast<int64_t>(B) * K * T,
              "lm forward: codes must be [B, ", K, ", T]");
  for (int64_t c : codes) MOSHI_CHECK(c >= -1, "lm forward: token ", c, " is not a valid id (>= -1)");
  const std::vector<int64_t> init = initial_tokens();
  // S = [initial | delayed codes], length T + 1: inputs are S[..T-1], depformer targets S[1..].
  std::vector<int64_t> S(static_cast<size_t>(B) * K * (T + 1));
  auto s_at = [&](int b, int k, int t) -> int64_t& { return S[(static_cast<size_t>(b) * K + k) * (T + 1) + t]; };
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < K; ++k) {
      s_at(b, k, 0) = init[k];
      for (int t = 0; t < T; ++t) {
        const int d = cfg_.delays[k];
        s_at(b, k, t + 1) = t >= d ? codes[(static_cast<size_t>(b) * K + k) * T + (t - d)] : init[k];
      }
    }
  auto st = new_state(B, T);
  const int64_t D = cfg_.dim, N = static_cast<int64_t>(B) * T;
  Tensor& x = st->ws.f32(be, kX, {N, D});
  std::vector<int64_t> ids(N);
  auto gather = [&](int k, int shift) {
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) ids[static_cast<size_t>(b) * T + t] = s_at(b, k, t + shift);
    return ids;
  };
  for (int k = 0; k < cfg_.n_q; ++k) embed(*st, emb_[k], gather(1 + k, 0), x, k > 0, kLowRank);
  embed(*st, text_emb_, gather(0, 0), x, cfg_.n_q > 0, kLowRank);
  temporal_.forward(be, x, T, st->temporal, 1);
  Tensor& z = st->ws.f32(be, kZ, {N, D});
  out_norm(x, z);
  Tensor& tl = st->ws.f32(be, kTextLogits, {N, cfg_.text_card_out});
  be.linear(z, text_linear_, text_bias_.defined() ? &text_bias_ : nullptr, tl);
  std::vector<float> raw_text(static_cast<size_t>(N) * cfg_.text_card_out);
  be.download(tl, raw_text.data());

  ForwardOut out;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t V = cfg_.text_card_out, C = cfg_.card;
  out.text_logits.assign(static_cast<size_t>(N) * V, nan);
  out.text_mask.assign(N, 0);
  out.logits.assign(static_cast<size_t>(B) * cfg_.dep_q * T * C, nan);
  out.mask.assign(static_cast<size_t>(B) * cfg_.dep_q * T, 0);
  // Undelay: position t scores codes[..., t], predicted at step t + delay.
  const int dt = cfg_.delays[0];
  for (int b = 0; b < B; ++b)
    for (int t = 0; t + dt < T; ++t) {
      std::memcpy(&out.text_logits[(static_cast<size_t>(b) * T + t) * V],
                  &raw_text[(static_cast<size_t>(b) * T + t + dt) * V], V * sizeof(float));
      out.text_mask[static_cast<size_t>(b) * T + t] = codes[(static_cast<size_t>(b) * K) * T + t] != -1;
    }
  if (cfg_.dep_q > 0) {
    std::vector<float> host(static_cast<size_t>(N) * C);
    run_depformer(
        *st, z, N,
        [&](int k, Tensor& in) {
          // Step k reads the target row k of S: text for k = 0, Moshi codebook k-1 after.
          embed(*st, dep_emb_[k], gather(k, 1), in, true, kLowRank2);
        },
        [&](int k, const Tensor& logits) {
          be.download(logits, host.data());
          const int d = cfg_.delays[1 + k];
          for (int b = 0; b < B; ++b)
            for (int t = 0; t + d < T; ++t) {
              const size_t o = ((static_cast<size_t>(b) * cfg_.dep_q + k) * T + t);
              std::memcpy(&out.logits[o * C], &host[(static_cast<size_t>(b) * T + t + d) * C], C * sizeof(float));
              out.mask[o] = codes[(static_cast<size_t>(b) * K + 1 + k) * T + t] != -1;
            }
        });
  }
  return out;
}

}  // namespace moshi
