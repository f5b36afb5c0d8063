#include "codec/mimi_model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace moshi {

namespace {
enum Buf { kPcm, kTime, kChan, kLatent, kRows, kCodes, kOut, kInner };
}

void MimiModel::Projected::load(WeightBinder& wb, Backend& be, const std::string& prefix, const MimiConfig& c) {
  const auto& t = c.transformer;
  const int C = c.seanet.dimension;
  if (t.d_model != C) {
    in_proj = be.prepare_linear(wb.take(prefix + "input_proj.weight", {t.d_model, C}));
    out_proj = be.prepare_linear(wb.take(prefix + "output_projs.0.weight", {C, t.d_model}));
  }
  TransformerSpec spec;
  spec.d_model = t.d_model;
  spec.num_heads = t.num_heads;
  spec.num_layers = t.num_layers;
  spec.dim_feedforward = t.dim_feedforward;
  spec.context = t.context;
  spec.layer_scale = t.has_layer_scale;
  spec.max_period = t.max_period;
  spec.norm = NormKind::LayerNorm;
  spec.norm_eps = 1e-5f;
  spec.activation = Act::Gelu;  // exact erf
  spec.pos_emb = PosEmb::Rope;
  tr.load(wb, be, prefix + "transformer.", spec);
}

void MimiModel::Projected::forward(Backend& be, Tensor& rows, int T, Transformer::State& st, int group,
                                   Workspace& ws) const {
  if (!in_proj.defined()) {
    tr.forward(be, rows, T, st, group);
    return;
  }
  Tensor& inner = ws.f32(be, kInner, {rows.dim(0), tr.spec().d_model});
  be.linear(rows, in_proj, nullptr, inner);
  tr.forward(be, inner, T, st, group);
  be.linear(inner, out_proj, nullptr, rows);
}

std::shared_ptr<const MimiModel> MimiModel::load(const WeightSource& src, const MimiConfig& cfg,
                                                 std::shared_ptr<Backend> backend) {
  auto m = std::shared_ptr<MimiModel>(new MimiModel());
  m->cfg_ = cfg;
  m->be_ = std::move(backend);
  Backend& be = *m->be_;
  WeightBinder wb(src);
  m->encoder_.load_encoder(wb, be, cfg.seanet);
  m->decoder_.load_decoder(wb, be, cfg.seanet);
  m->enc_tr_.load(wb, be, "encoder_transformer.", cfg);
  m->dec_tr_.load(wb, be, "decoder_transformer.", cfg);
  const int C = cfg.seanet.dimension, s = cfg.resample_stride();
  if (s > 1) {
    m->downsample_.load(wb, be, "downsample.conv.conv.conv", ConvSpec{C, C, 2 * s, s, 1, 1, false, true});
    m->upsample_.load(wb, be, "upsample.convtr.convtr.convtr", ConvSpec{C, C, 2 * s, s, 1, C, false, false});
  }
  m->quantizer_.load(wb, be, cfg.quantizer);
  m->weight_bytes_ = static_cast<double>(wb.elements_taken()) * sizeof(float);
  return m;
}

std::unique_ptr<MimiModel::EncoderState> MimiModel::new_encoder(int batch, int max_frames, bool offline) const {
  MOSHI_CHECK(batch >= 1 && max_frames >= 1, "mimi: batch and frames per call must be positive");
  auto st = std::make_unique<EncoderState>();
  st->batch = batch;
  st->max_frames = max_frames;
  st->offline = offline;
  st->seanet = encoder_.new_state(*be_, batch);
  st->transformer = enc_tr_.tr.new_state(*be_, batch, max_frames * cfg_.resample_stride());
  if (cfg_.resample_stride() > 1) st->down = downsample_.new_state(*be_, batch);
  st->stage = StageHandle(*be_);
  return st;
}

std::unique_ptr<MimiModel::DecoderState> MimiModel::new_decoder(int batch, int max_frames, bool offline) const {
  MOSHI_CHECK(batch >= 1 && max_frames >= 1, "mimi: batch and frames per call must be positive");
  auto st = std::make_unique<DecoderState>();
  st->batch = batch;
  st->max_frames = max_frames;
  st->offline = offline;
  st->seanet = decoder_.new_state(*be_, batch);
  st->transformer = dec_tr_.tr.new_state(*be_, batch, max_frames * cfg_.resample_stride());
  if (cfg_.resample_stride() > 1) st->up = upsample_.new_state(*be_, batch);
  st->stage = StageHandle(*be_);
  return st;
}

void MimiModel::reset(EncoderState& st, int stream) const {
  encoder_.reset(*be_, st.seanet, stream);
  enc_tr_.tr.reset(st.transformer, stream);
  if (cfg_.resample_stride() > 1) downsample_.reset(*be_, st.down, stream);
}

void MimiModel::reset(DecoderState& st, int stream) const {
  decoder_.reset(*be_, st.seanet, stream);
  dec_tr_.tr.reset(st.transformer, stream);
  if (cfg_.resample_stride() > 1) upsample_.reset(*be_, st.up, stream);
}

void MimiModel::encode(EncoderState& st, const Tensor& pcm, Tensor* latent, int K, Tensor* codes) const {
  Backend& be = *be_;
  const int64_t B = st.batch, N = pcm.dim(2), fs = frame_size(), C = cfg_.seanet.dimension;
  const int s = cfg_.resample_stride();
  MOSHI_CHECK(pcm.ndim() == 3 && pcm.dim(0) == B && pcm.dim(1) == 1, "mimi encode: pcm must be [", B, ", 1, N], got ",
              shape_str(pcm.shape()));
  MOSHI_CHECK(N > 0 && N % fs == 0, "mimi encode: ", N, " samples is not a positive multiple of the frame size ", fs);
  const int64_t T = N / fs;
  if (latent) MOSHI_CHECK(latent->numel() == B * C * T, "mimi encode: latent output has the wrong size");
  if (codes) MOSHI_CHECK(codes->numel() == B * K * T, "mimi encode: codes output has the wrong size");
  std::vector<float> host;
  std::vector<int64_t> chost;
  for (int64_t f0 = 0; f0 < T; f0 += st.max_frames) {
    const int64_t F = std::min<int64_t>(st.max_frames, T - f0), n = F * fs, steps = F * s;
    host.resize(B * n);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&host[b * n], pcm.f32() + b * N + f0 * fs, n * sizeof(float));
    Tensor& x = st.ws.f32(be, kPcm, {B, 1, n});
    be.upload(x, host.data());
    // A whole chunk without intermediate read-backs is one stage (a recorded graph on the GPU).
    StageHandle::Scope stage = st.stage.run(!st.tap && !latent && codes && F == st.max_frames);
    Tensor& e = encoder_.forward(be, x, st.seanet);  // [B, C, steps]
    if (st.tap) (*st.tap)("mimi.enc.seanet", e);
    st.transformer.tap = st.tap;
    st.transformer.tap_prefix = "mimi.enc.transformer.";
    Tensor& rows = st.ws.f32(be, kTime, {B * steps, C});
    be.transpose_ct(e, rows);
    enc_tr_.forward(be, rows, static_cast<int>(steps), st.transformer, st.offline ? 1 : s, st.ws);
    Tensor* lat = &st.ws.f32(be, kChan, {B, C, steps});
    be.transpose_tc(rows.reshape({B, steps, C}), *lat);
    if (s > 1) {
      Tensor& d = st.ws.f32(be, kLatent, {B, C, F});
      downsample_.forward(be, *lat, d, st.down);
      lat = &d;
    }
    if (st.tap) (*st.tap)("mimi.enc.latent", *lat);
    if (latent) {
      host.resize(B * C * F);
      be.download(*lat, host.data());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c)
          std::memcpy(latent->f32() + (b * C + c) * T + f0, &host[(b * C + c) * F], F * sizeof(float));
    }
    if (codes) {
      Tensor& z = st.ws.f32(be, kRows, {B * F, C});
      be.transpose_ct(*lat, z);
      Tensor& cd = st.ws.get(be, kCodes, DType::I64, {B * F, K});
      quantizer_.encode(be, z, K, cd, st.ws);
      stage.finish();
      chost.resize(B * F * K);
      be.download(cd, chost.data());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t k = 0; k < K; ++k)
          for (int64_t t = 0; t < F; ++t) codes->i64()[(b * K + k) * T + f0 + t] = chost[(b * F + t) * K + k];
    }
  }
}

void MimiModel::decode(DecoderState& st, const Tensor& codes, Tensor& pcm) const {
  Backend& be = *be_;
  const int64_t B = st.batch, fs = frame_size(), C = cfg_.seanet.dimension;
  const int s = cfg_.resample_stride();
  MOSHI_CHECK(codes.ndim() == 3 && codes.dim(0) == B && codes.dtype() == DType::I64,
              "mimi decode: codes must be i64 [", B, ", K, T], got ", shape_str(codes.shape()));
  const int64_t K = codes.dim(1), T = codes.dim(2);
  MOSHI_CHECK(K >= 1 && K <= quantizer_.total_codebooks(), "mimi decode: ", K, " codebooks given, the model has ",
              quantizer_.total_codebooks());
  MOSHI_CHECK(T > 0, "mimi decode: no frames to decode");
  MOSHI_CHECK(pcm.numel() == B * T * fs, "mimi decode: output has the wrong size");
  for (int64_t i = 0; i < codes.numel(); ++i)
    MOSHI_CHECK(codes.i64()[i] >= 0 && codes.i64()[i] < cfg_.quantizer.bins, "mimi decode: code ", codes.i64()[i],
                " is out of range [0, ", cfg_.quantizer.bins, ")");
  std::vector<int64_t> chost;
  std::vector<float> host;
  for (int64_t f0 = 0; f0 < T; f0 += st.max_frames) {
    const int64_t F = std::min<int64_t>(st.max_frames, T - f0), steps = F * s;
    chost.resize(B * F * K);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t t = 0; t < F; ++t) chost[(b * F + t) * K + k] = codes.i64()[(b * K + k) * T + f0 + t];
    Tensor& cd = st.ws.get(be, kCodes, DType::I64, {B * F, K});
    be.upload(cd, chost.data());
    StageHandle::Scope stage = st.stage.run(!st.tap && F == st.max_frames);
    Tensor& z = st.ws.f32(be, kRows, {B * F, C});
    quantizer_.decode(be, cd, static_cast<int>(K), z, st.ws);
    Tensor* lat = &st.ws.f32(be, kLatent, {B, C, F});
    be.transpose_tc(z.reshape({B, F, C}), *lat);
    if (st.tap) (*st.tap)("mimi.dec.latent", *lat);
    st.transformer.tap = st.tap;
    st.transformer.tap_prefix = "mimi.dec.transformer.";
    if (s > 1) {
      Tensor& u = st.ws.f32(be, kChan, {B, C, steps});
      upsample_.forward(be, *lat, u, st.up);
      lat = &u;
    }
    Tensor& rows = st.ws.f32(be, kTime, {B * steps, C});
    be.transpose_ct(*lat, rows);
    dec_tr_.forward(be, rows, static_cast<int>(steps), st.transformer, st.offline ? 1 : s, st.ws);
    Tensor& back = st.ws.f32(be, kOut, {B, C, steps});
    be.transpose_tc(rows.reshape({B, steps, C}), back);
    Tensor& y = decoder_.forward(be, back, st.seanet);  // [B, 1, F·fs]
    stage.finish();
    if (st.tap) (*st.tap)("mimi.dec.pcm", y);
    const int64_t n = F * fs;
    host.resize(B * n);
    be.download(y, host.data());
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(pcm.f32() + b * T * fs + f0 * fs, &host[b * n], n * sizeof(float));
  }
}

}  // namespace moshi
