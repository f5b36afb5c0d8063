#include <algorithm>
#include <cstring>

#include "api/mimi_impl.h"
#include "moshi/system.h"
#include "core/error.h"
#include "weights/weight_source.h"

namespace moshi {

Mimi Mimi::load(const std::string& spec, const MimiOptions& opts) {
  MimiConfig cfg = opts.config_json.empty() ? MimiConfig{} : parse_mimi_config(opts.config_json, "mimi config");
  auto backend = make_backend(BackendOptions{opts.device, opts.threads});
  auto impl = std::make_shared<Impl>();
  if (spec == "synthetic") {
    SyntheticSource src(opts.seed);
    impl->model = MimiModel::load(src, cfg, backend);
    impl->synthetic = true;
    impl->source = "synthetic weights (seed " + std::to_string(opts.seed) + ")";
  } else {
    SafetensorsSource src(SafetensorsFile::open(spec));
    impl->model = MimiModel::load(src, cfg, backend);
    impl->source = spec;
  }
  const int total = cfg.quantizer.n_q;
  MOSHI_CHECK(opts.num_codebooks >= 0 && opts.num_codebooks <= total, "number of codebooks ", opts.num_codebooks,
              " is out of range [1, ", total, "]");
  impl->num_codebooks = opts.num_codebooks > 0 ? opts.num_codebooks : std::min(8, total);
  Mimi m;
  m.impl_ = impl;
  return m;
}

int Mimi::sample_rate() const { return impl_->model->config().sample_rate; }
int Mimi::frame_size() const { return impl_->model->frame_size(); }
double Mimi::frame_rate() const { return impl_->model->config().frame_rate; }
int Mimi::num_codebooks() const { return impl_->num_codebooks; }
int Mimi::total_codebooks() const { return impl_->model->config().quantizer.n_q; }
int Mimi::cardinality() const { return impl_->model->config().quantizer.bins; }
bool Mimi::synthetic() const { return impl_->synthetic; }
std::string Mimi::describe() const {
  const Backend& be = impl_->model->backend();
  return impl_->source + " on " + be.name() + " (" + std::to_string(be.threads()) + " thread" +
         (be.threads() == 1 ? "" : "s") + ")";
}

double Mimi::encode_flops_per_frame() const {
  return mimi_encode_flops_per_frame(impl_->model->config(), impl_->num_codebooks);
}
double Mimi::weight_bytes() const { return impl_->model->weight_bytes(); }

double Mimi::measure_read_bandwidth_gbps() const {
  Backend& be = impl_->model->backend();
  if (be.device() == Device::CPU) return moshi::measure_read_bandwidth_gbps(std::max(1, be.threads()));
  return be.measure_read_bandwidth_gbps();
}

double Mimi::decode_flops_per_frame() const {
  return mimi_decode_flops_per_frame(impl_->model->config(), impl_->num_codebooks);
}

struct MimiEncoder::State {
  std::shared_ptr<const Mimi::Impl> impl;
  std::unique_ptr<MimiModel::EncoderState> st;
};
struct MimiDecoder::State {
  std::shared_ptr<const Mimi::Impl> impl;
  std::unique_ptr<MimiModel::DecoderState> st;
};

MimiEncoder::MimiEncoder(std::unique_ptr<State> s) : s_(std::move(s)) {}
MimiEncoder::~MimiEncoder() = default;
MimiEncoder::MimiEncoder(MimiEncoder&&) noexcept = default;
MimiEncoder& MimiEncoder::operator=(MimiEncoder&&) noexcept = default;
MimiDecoder::MimiDecoder(std::unique_ptr<State> s) : s_(std::move(s)) {}
MimiDecoder::~MimiDecoder() = default;
MimiDecoder::MimiDecoder(MimiDecoder&&) noexcept = default;
MimiDecoder& MimiDecoder::operator=(MimiDecoder&&) noexcept = default;

MimiEncoder Mimi::encoder(int batch) const {
  auto s = std::make_unique<MimiEncoder::State>();
  s->impl = impl_;
  s->st = impl_->model->new_encoder(batch, 1);
  return MimiEncoder(std::move(s));
}

MimiDecoder Mimi::decoder(int batch) const {
  auto s = std::make_unique<MimiDecoder::State>();
  s->impl = impl_;
  s->st = impl_->model->new_decoder(batch, 1);
  return MimiDecoder(std::move(s));
}

int MimiEncoder::batch() const { return s_->st->batch; }
int MimiDecoder::batch() const { return s_->st->batch; }

std::vector<int64_t> MimiEncoder::encode(const float* pcm, int64_t n) {
  const MimiModel& m = *s_->impl->model;
  const int B = s_->st->batch, K = s_->impl->num_codebooks;
  MOSHI_CHECK(n > 0 && n % m.frame_size() == 0, "mimi encode: ", n, " samples is not a positive multiple of the ",
              m.frame_size(), "-sample frame");
  Tensor x = Tensor::zeros_f32({B, 1, n});
  std::memcpy(x.f32(), pcm, sizeof(float) * B * n);
  const int64_t T = n / m.frame_size();
  Tensor codes = Tensor::zeros(DType::I64, {B, K, T});
  m.encode(*s_->st, x, nullptr, K, &codes);
  return std::vector<int64_t>(codes.i64(), codes.i64() + codes.numel());
}

void MimiEncoder::reset() {
  for (int b = 0; b < s_->st->batch; ++b) reset(b);
}
void MimiEncoder::reset(int stream) {
  MOSHI_CHECK(stream >= 0 && stream < s_->st->batch, "stream ", stream, " is out of range");
  s_->impl->model->reset(*s_->st, stream);
}

std::vector<float> MimiDecoder::decode(const int64_t* codes, int K, int64_t T) {
  const MimiModel& m = *s_->impl->model;
  const int B = s_->st->batch;
  MOSHI_CHECK(T > 0, "mimi decode: no frames to decode");
  Tensor c = Tensor::zeros(DType::I64, {B, K, T});
  std::memcpy(c.i64(), codes, sizeof(int64_t) * B * K * T);
  Tensor pcm = Tensor::zeros_f32({B, 1, T * m.frame_size()});
  m.decode(*s_->st, c, pcm);
  return std::vector<float>(pcm.f32(), pcm.f32() + pcm.numel());
}

void MimiDecoder::reset() {
  for (int b = 0; b < s_->st->batch; ++b) reset(b);
}
void MimiDecoder::reset(int stream) {
  MOSHI_CHECK(stream >= 0 && stream < s_->st->batch, "stream ", stream, " is out of range");
  s_->impl->model->reset(*s_->st, stream);
}

std::vector<int64_t> Mimi::encode(const std::vector<float>& pcm, int64_t* frames) const {
  MOSHI_CHECK(!pcm.empty(), "mimi encode: no audio samples");
  const int64_t fs = frame_size(), T = (static_cast<int64_t>(pcm.size()) + fs - 1) / fs;
  std::vector<float> padded(pcm);
  padded.resize(T * fs, 0.f);
  MimiEncoder enc = encoder(1);
  if (frames) *frames = T;
  return enc.encode(padded.data(), T * fs);
}

std::vector<float> Mimi::decode(const std::vector<int64_t>& codes, int K, int64_t T) const {
  MOSHI_CHECK(static_cast<int64_t>(codes.size()) == K * T, "mimi decode: ", codes.size(), " codes for [", K, ", ",
              T, "]");
  MimiDecoder dec = decoder(1);
  return dec.decode(codes.data(), K, T);
}

}  // namespace moshi
