// Mimi (model-spec §1): SEANet encoder -> transformer -> downsample -> split RVQ, and back.
// The loaded model is immutable and shared; each stream batch owns an Encoder/Decoder state.
#pragma once
#include <memory>

#include "codec/mimi_config.h"
#include "codec/quantizer.h"
#include "codec/seanet.h"
#include "codec/streaming_conv.h"
#include "nn/transformer.h"

namespace moshi {

class MimiModel {
 public:
  static std::shared_ptr<const MimiModel> load(const WeightSource& src, const MimiConfig& cfg,
                                               std::shared_ptr<Backend> backend);
  const MimiConfig& config() const { return cfg_; }
  // Bytes of all its weights as the backends keep them (f32): what encoding and decoding one
  // frame read at most (codebooks past the ones used are not read).
  double weight_bytes() const { return weight_bytes_; }
  Backend& backend() const { return *be_; }
  int frame_size() const { return cfg_.frame_size(); }

  // `offline` states use the plain sliding window (the reference's whole-signal path); streaming
  // states reproduce frame-by-frame streaming whatever the chunking.
  struct EncoderState {
    int batch = 0, max_frames = 0;
    bool offline = false;
    Seanet::State seanet;
    Transformer::State transformer;
    StreamingConv1d::State down;
    Workspace ws;
    StageHandle stage;  // one whole chunk of max_frames frames, recorded by backends that can
    const Tap* tap = nullptr;  // "mimi.enc.seanet", "mimi.enc.transformer.layer<i>", "mimi.enc.latent"
  };
  struct DecoderState {
    int batch = 0, max_frames = 0;
    bool offline = false;
    Seanet::State seanet;
    Transformer::State transformer;
    StreamingConvTranspose1d::State up;
    Workspace ws;
    StageHandle stage;
    const Tap* tap = nullptr;  // "mimi.dec.latent", "mimi.dec.transformer.layer<i>", "mimi.dec.pcm"
  };
  std::unique_ptr<EncoderState> new_encoder(int batch, int max_frames = 1, bool offline = false) const;
  std::unique_ptr<DecoderState> new_decoder(int batch, int max_frames = 1, bool offline = false) const;
  void reset(EncoderState& st, int stream) const;
  void reset(DecoderState& st, int stream) const;

  // pcm [B, 1, N] host f32, N a positive multiple of frame_size(). Writes (if given) the latent
  // before quantisation [B, C, N/frame] f32 and codes [B, K, N/frame] i64, both host.
  void encode(EncoderState& st, const Tensor& pcm, Tensor* latent, int K, Tensor* codes) const;
  // codes [B, K, T] host i64 -> pcm [B, 1, T·frame] host f32.
  void decode(DecoderState& st, const Tensor& codes, Tensor& pcm) const;

 private:
  // The reference's ProjectedTransformer: optional linear maps in and out when d_model differs
  // from the SEANet dimension. Runs on rows [B·T, C] in place.
  struct Projected {
    Tensor in_proj, out_proj;  // undefined when d_model == C
    Transformer tr;
    void load(WeightBinder& wb, Backend& be, const std::string& prefix, const MimiConfig& c);
    void forward(Backend& be, Tensor& rows, int T, Transformer::State& st, int group, Workspace& ws) const;
  };
  MimiConfig cfg_;
  double weight_bytes_ = 0;
  std::shared_ptr<Backend> be_;
  Seanet encoder_, decoder_;
  Projected enc_tr_, dec_tr_;
  StreamingConv1d downsample_;
  StreamingConvTranspose1d upsample_;
  SplitRvq quantizer_;
};

}  // namespace moshi
