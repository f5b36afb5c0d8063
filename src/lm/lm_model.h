// The Moshi LM (model-spec §2-§4): summed text + audio embeddings, the temporal transformer,
// the text head, and the depformer over the generated codebooks. Immutable once loaded; the
// per-stream state lives in LmState.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "lm/lm_config.h"
#include "nn/transformer.h"

namespace moshi {

struct LmLoadOptions {
  // "auto": keep the checkpoint's float type; "bf16"/"f32": convert matrix weights at load.
  std::string weights_dtype = "auto";
  // "auto": bf16 KV cache with bf16 weights on a GPU (as the reference runs), f32 otherwise;
  // or "f32" / "bf16".
  std::string kv_dtype = "auto";
};

struct LmState {
  int batch = 0;
  Transformer::State temporal;
  Transformer::State depformer;
  Workspace ws;
  // [B, 1 + dep_q] i64 on the backend: the frame's text token, then one per audio codebook,
  // drawn on the device so that the depformer never waits for the host.
  Tensor tokens;
  // Recordings of the two stages of a step (see Backend::stage_create).
  StageHandle temporal_stage, depformer_stage;
  const Tap* tap = nullptr;  // "lm.embed", "lm.temporal.layer<i>", "lm.z", "lm.text_logits", "lm.dep<k>..."
  void set_tap(const Tap* t) {
    tap = t;
    temporal.tap = depformer.tap = t;
    temporal.tap_prefix = "lm.temporal.";
  }
};

class LmModel {
 public:
  static std::shared_ptr<const LmModel> load(const WeightSource& src, const LmConfig& cfg,
                                             std::shared_ptr<Backend> backend, const LmLoadOptions& opts = {});
  const LmConfig& config() const { return cfg_; }
  Backend& backend() const { return *be_; }
  DType kv_dtype() const { return kv_dtype_; }

  // A state for `batch` streams, each carrying up to max_steps steps per temporal call.
  std::unique_ptr<LmState> new_state(int batch, int max_steps = 1) const;
  void reset(LmState& st, int stream) const { temporal_.reset(st.temporal, stream); }
  // The stream's temporal position moves `steps` on; its cache keeps whatever it holds.
  void skip(LmState& st, int stream, int64_t steps) const { st.temporal.offset[stream] += steps; }

  // One temporal step: tokens [B, K] (host, K = 1 + n_q; text first) -> text logits
  // [B, text_card_out] on the backend (valid until the next step), keeping the out-normed hidden
  // state for the depformer.
  const Tensor& temporal_step(LmState& st, const std::vector<int64_t>& tokens) const;
  // As above, with the logits read back to the host.
  void temporal_step(LmState& st, const std::vector<int64_t>& tokens, std::vector<float>& text_logits) const;
  // The depformer over one frame after temporal_step, once the text token is in st.tokens[:, 0]:
  // for each codebook k, `sample(k, logits [B, card])` must write the drawn tokens into
  // st.tokens[:, 1 + k] (on the backend), from where step k + 1 embeds them.
  using Sampler = std::function<void(int k, const Tensor& logits)>;
  void depformer_frame(LmState& st, const Sampler& sample) const;

  // Teacher-forced forward over whole sequences (model-spec §4): codes [B, K, T] (host) ->
  // audio logits [B, dep_q, T, card] and text logits [B, 1, T, text_card_out], undelayed, with
  // validity masks; positions without a prediction hold NaN.
  struct ForwardOut {
    std::vector<float> logits, text_logits;
    std::vector<uint8_t> mask, text_mask;  // [B, dep_q, T], [B, 1, T]
  };
  ForwardOut forward(const std::vector<int64_t>& codes, int B, int T) const;

  std::vector<int64_t> initial_tokens() const;  // [K]: text_card, then card for audio streams
  // Bytes of matrix weights one generation step reads (temporal + text head + one depformer
  // pass over every codebook), the floor a step's time is measured against.
  double weight_bytes_per_step() const;
  // Bytes of temporal KV cache one stream's step reads per position of context.
  double kv_bytes_per_position() const { return temporal_.kv_bytes_per_position(kv_dtype_); }

 private:
  struct Embedding {
    Tensor table, low_rank;  // low_rank [D, r] when the table is [V, r]
  };
  void embed(LmState& st, const Embedding& e, const std::vector<int64_t>& ids, Tensor& out, bool accumulate,
             int slot) const;
  // The lookup `lookup(out, accumulate)` of N rows, through the low-rank projection if any.
  void embed_with(LmState& st, const Embedding& e, int64_t N, const std::function<void(Tensor&, bool)>& lookup,
                  Tensor& out, bool accumulate, int slot) const;
  // As embed, with the ids in column `col` of the backend tensor `ids`.
  void embed_from(LmState& st, const Embedding& e, const Tensor& ids, int64_t col, Tensor& out, bool accumulate,
                  int slot) const;
  void load_embedding(WeightBinder& wb, const std::string& name, int64_t rows, int64_t dim, int low_rank,
                      Embedding& e, DType dt);
  void out_norm(const Tensor& x, Tensor& y) const;
  // The depformer over `rows` streams whose temporal output is z; feed(k, in) adds the
  // embedding of the tokens fed to step k onto `in`; returns logits for every k through `emit`.
  void run_depformer(LmState& st, const Tensor& z, int64_t rows, const std::function<void(int k, Tensor& in)>& feed,
                     const std::function<void(int k, const Tensor& logits)>& emit) const;

  LmConfig cfg_;
  std::shared_ptr<Backend> be_;
  DType kv_dtype_ = DType::F32;
  std::vector<Embedding> emb_;
  Embedding text_emb_;
  Transformer temporal_;
  Tensor out_norm_w_, out_norm_b_;
  Tensor text_linear_, text_bias_;
  std::vector<Tensor> depformer_in_;
  std::vector<Embedding> dep_emb_;  // [0] text, [k] audio codebook k-1
  Transformer depformer_;
  std::vector<Tensor> dep_norm_w_, dep_norm_b_;
  std::vector<Tensor> linears_, linear_bias_;
};

}  // namespace moshi
