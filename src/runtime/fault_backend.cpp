#include "runtime/fault_backend.h"

#include <vector>

#include "core/error.h"

namespace moshi {

bool parse_fault_spec(const std::string& spec, std::string* device, std::string* op, int64_t* call) {
  const std::string key = "!fault:";
  const auto p = spec.find(key);
  if (p == std::string::npos) return false;
  *device = spec.substr(0, p);
  const std::string f = spec.substr(p + key.size());
  const auto at = f.find('@');
  MOSHI_CHECK(at != std::string::npos && at > 0, "fault spec '", f, "' is not OP@N or OP@*");
  *op = f.substr(0, at);
  const std::string n = f.substr(at + 1);
  if (n == "*") {
    *call = -1;
  } else {
    char* end = nullptr;
    *call = std::strtoll(n.c_str(), &end, 10);
    MOSHI_CHECK(!n.empty() && *end == '\0' && *call >= 0, "fault spec '", f, "': bad call index '", n, "'");
  }
  return true;
}

namespace {

class FaultyBackend final : public Backend {
 public:
  FaultyBackend(std::shared_ptr<Backend> inner, std::string op, int64_t call)
      : in_(std::move(inner)), op_(std::move(op)), call_(call) {}

  std::string name() const override { return in_->name() + "!fault:" + op_; }
  Device device() const override { return in_->device(); }
  int threads() const override { return in_->threads(); }
  Tensor empty(DType d, const Shape& s) override { return in_->empty(d, s); }
  void zero(Tensor& t) override { in_->zero(t); }
  void upload(Tensor& d, const void* h) override { in_->upload(d, h); }
  void download(const Tensor& s, void* h) override { in_->download(s, h); }
  void copy(Tensor& d, const Tensor& s) override { in_->copy(d, s); }
  Tensor prepare_linear(const Tensor& w) override { return in_->prepare_linear(w); }
  Tensor prepare_embedding(const Tensor& w) override { return in_->prepare_embedding(w); }
  Tensor prepare_conv(const Tensor& w, int g) override { return in_->prepare_conv(w, g); }
  Tensor prepare_conv_transpose(const Tensor& w, int g) override { return in_->prepare_conv_transpose(w, g); }
  Tensor prepare_vector(const Tensor& w) override { return in_->prepare_vector(w); }

  void linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) override {
    in_->linear(x, w, b, y);
    hit("linear", y);
  }
  void conv1d(const Tensor& p, const Tensor& x, const Tensor& w, const Tensor* b, int ci, int co, int k, int s, int d,
              int g, Tensor& y) override {
    in_->conv1d(p, x, w, b, ci, co, k, s, d, g, y);
    hit("conv1d", y);
  }
  void conv_history_update(Tensor& p, const Tensor& x) override { in_->conv_history_update(p, x); }
  void conv_history_replicate(Tensor& p, const Tensor& x, const std::vector<uint8_t>& f) override {
    in_->conv_history_replicate(p, x, f);
  }
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* b, int ci, int co, int k, int s, int g,
                        Tensor& part, Tensor& y) override {
    in_->conv_transpose1d(x, w, b, ci, co, k, s, g, part, y);
    hit("conv_transpose1d", y);
  }
  void elu(const Tensor& x, Tensor& y) override {
    in_->elu(x, y);
    hit("elu", y);
  }
  void activation(Tensor& x, Act a) override {
    in_->activation(x, a);
    hit("activation", x);
  }
  void gated_activation(const Tensor& x, Act a, Tensor& y) override {
    in_->gated_activation(x, a, y);
    hit("gated_activation", y);
  }
  void add(const Tensor& a, const Tensor& b, Tensor& y) override {
    in_->add(a, b, y);
    hit("add", y);
  }
  void add_scaled(Tensor& x, const Tensor& u, const Tensor* s) override {
    in_->add_scaled(x, u, s);
    hit("add_scaled", x);
  }
  void transpose_ct(const Tensor& x, Tensor& y) override { in_->transpose_ct(x, y); }
  void transpose_tc(const Tensor& x, Tensor& y) override { in_->transpose_tc(x, y); }
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float e, Tensor& y) override {
    in_->layer_norm(x, w, b, e, y);
    hit("layer_norm", y);
  }
  void rms_norm(const Tensor& x, const Tensor& a, float e, Tensor& y) override {
    in_->rms_norm(x, a, e, y);
    hit("rms_norm", y);
  }
  void embedding(const Tensor& t, const std::vector<int64_t>& ids, Tensor& out, bool acc) override {
    in_->embedding(t, ids, out, acc);
    hit("embedding", out);
  }
  void embedding_from(const Tensor& t, const Tensor& ids, int64_t col, Tensor& out, bool acc) override {
    in_->embedding_from(t, ids, col, out, acc);
    hit("embedding", out);
  }
  void sample(const Tensor& l, const SamplingParams& p, uint64_t seed, const std::vector<int64_t>& steps,
              uint64_t site, Tensor& tokens, int64_t col) override {
    in_->sample(l, p, seed, steps, site, tokens, col);
  }
  KvCache new_kv_cache(DType dt, int b, int64_t cap, int h, int d) override { return in_->new_kv_cache(dt, b, cap, h, d); }
  // Stages are not forwarded: a fault reads results back inside them, so ops run as they come.
  void synchronize() override { in_->synchronize(); }
  double measure_read_bandwidth_gbps() override { return in_->measure_read_bandwidth_gbps(); }
  void sin_embedding_add(Tensor& x, const std::vector<int64_t>& pos, float mp, float s) override {
    in_->sin_embedding_add(x, pos, mp, s);
    hit("sin_embedding_add", x);
  }
  void rope(Tensor& qkv, const AttnShape& s, float mp, bool il, const std::vector<int64_t>& pos) override {
    in_->rope(qkv, s, mp, il, pos);
    hit("rope", qkv);
  }
  void kv_write(KvCache& c, const Tensor& qkv, const AttnShape& s, int b, const std::vector<int64_t>& pos) override {
    in_->kv_write(c, qkv, s, b, pos);
  }
  void attention(const Tensor& qkv, const KvCache& c, const AttnShape& s, int b, const std::vector<int64_t>& pos,
                 const std::vector<int64_t>& lo, Tensor& out) override {
    in_->attention(qkv, c, s, b, pos, lo, out);
    hit("attention", out);
  }
  void vq_encode(Tensor& r, const Tensor& cb, const Tensor& n, Tensor& codes, int64_t col) override {
    in_->vq_encode(r, cb, n, codes, col);
    hit("vq_encode", r);
  }
  void vq_decode_add(Tensor& acc, const Tensor& cb, const Tensor& n, const Tensor& codes, int64_t col) override {
    in_->vq_decode_add(acc, cb, n, codes, col);
    hit("vq_decode_add", acc);
  }

 private:
  // Adds 1 to every element of the op's output on the chosen call(s).
  void hit(const char* op, Tensor& y) {
    if (op_ != op) return;
    const int64_t n = count_++;
    if (call_ >= 0 && n != call_) return;
    if (y.dtype() != DType::F32 || y.numel() == 0) return;
    std::vector<float> h(static_cast<size_t>(y.numel()));
    in_->download(y, h.data());
    for (float& v : h) v += 1.f;
    in_->upload(y, h.data());
  }
  std::shared_ptr<Backend> in_;
  std::string op_;
  int64_t call_, count_ = 0;
};

}  // namespace

std::shared_ptr<Backend> make_faulty_backend(std::shared_ptr<Backend> inner, const std::string& op, int64_t call) {
  return std::make_shared<FaultyBackend>(std::move(inner), op, call);
}

}  // namespace moshi
