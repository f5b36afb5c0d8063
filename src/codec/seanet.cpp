#include "codec/seanet.h"

#include "core/error.h"

namespace moshi {

int Seanet::add_conv(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec) {
  StreamingConv1d c;
  c.load(wb, be, name, spec);
  convs_.push_back(std::move(c));
  return static_cast<int>(convs_.size()) - 1;
}

void Seanet::add_residual(WeightBinder& wb, Backend& be, const SeanetConfig& c, const std::string& name, int dim,
                          int dilation) {
  const int hidden = dim / c.compress;
  Step s{Kind::Residual};
  s.a = add_conv(wb, be, name + ".block.1.conv.conv",
                 ConvSpec{dim, hidden, c.residual_kernel_size, 1, dilation, 1, true, false});
  s.b = add_conv(wb, be, name + ".block.3.conv.conv", ConvSpec{hidden, dim, 1, 1, 1, 1, true, false});
  if (!c.true_skip) s.skip = add_conv(wb, be, name + ".shortcut.conv.conv", ConvSpec{dim, dim, 1, 1, 1, 1, true, false});
  steps_.push_back(s);
}

void Seanet::load_encoder(WeightBinder& wb, Backend& be, const SeanetConfig& c) {
  const std::string p = "encoder.model.";
  int idx = 0, mult = 1;
  in_channels_ = c.channels;
  steps_.push_back({Kind::Conv, add_conv(wb, be, p + std::to_string(idx++) + ".conv.conv",
                                         ConvSpec{c.channels, c.n_filters, c.kernel_size})});
  for (auto it = c.ratios.rbegin(); it != c.ratios.rend(); ++it) {
    const int r = *it, dim = mult * c.n_filters;
    int dil = 1;
    for (int j = 0; j < c.n_residual_layers; ++j, dil *= c.dilation_base)
      add_residual(wb, be, c, p + std::to_string(idx++), dim, dil);
    steps_.push_back({Kind::Elu});
    ++idx;
    steps_.push_back({Kind::Conv, add_conv(wb, be, p + std::to_string(idx++) + ".conv.conv",
                                           ConvSpec{dim, 2 * dim, 2 * r, r})});
    mult *= 2;
    down_ *= r;
  }
  steps_.push_back({Kind::Elu});
  ++idx;
  steps_.push_back({Kind::Conv, add_conv(wb, be, p + std::to_string(idx++) + ".conv.conv",
                                         ConvSpec{mult * c.n_filters, c.dimension, c.last_kernel_size})});
  out_channels_ = c.dimension;
}

void Seanet::load_decoder(WeightBinder& wb, Backend& be, const SeanetConfig& c) {
  const std::string p = "decoder.model.";
  int idx = 0, mult = 1 << c.ratios.size();
  in_channels_ = c.dimension;
  steps_.push_back({Kind::Conv, add_conv(wb, be, p + std::to_string(idx++) + ".conv.conv",
                                         ConvSpec{c.dimension, mult * c.n_filters, c.kernel_size})});
  for (int r : c.ratios) {
    const int dim = mult * c.n_filters;
    steps_.push_back({Kind::Elu});
    ++idx;
    StreamingConvTranspose1d tr;
    tr.load(wb, be, p + std::to_string(idx++) + ".convtr.convtr", ConvSpec{dim, dim / 2, 2 * r, r});
    convtrs_.push_back(std::move(tr));
    steps_.push_back({Kind::ConvTr, static_cast<int>(convtrs_.size()) - 1});
    int dil = 1;
    for (int j = 0; j < c.n_residual_layers; ++j, dil *= c.dilation_base)
      add_residual(wb, be, c, p + std::to_string(idx++), dim / 2, dil);
    mult /= 2;
    up_ *= r;
  }
  steps_.push_back({Kind::Elu});
  ++idx;
  steps_.push_back({Kind::Conv, add_conv(wb, be, p + std::to_string(idx++) + ".conv.conv",
                                         ConvSpec{c.n_filters, c.channels, c.last_kernel_size})});
  out_channels_ = c.channels;
}

Seanet::State Seanet::new_state(Backend& be, int batch) const {
  State st;
  for (const auto& c : convs_) st.convs.push_back(c.new_state(be, batch));
  for (const auto& c : convtrs_) st.convtrs.push_back(c.new_state(be, batch));
  return st;
}

void Seanet::reset(Backend& be, State& st, int stream) const {
  for (size_t i = 0; i < convs_.size(); ++i) convs_[i].reset(be, st.convs[i], stream);
  for (size_t i = 0; i < convtrs_.size(); ++i) convtrs_[i].reset(be, st.convtrs[i], stream);
}

Tensor& Seanet::forward(Backend& be, const Tensor& x, State& st) const {
  const int64_t B = x.dim(0);
  // Ping-pong between two workspace buffers; residual branches use two more.
  int cur_id = -1;
  const Tensor* cur = &x;
  auto next = [&](int64_t C, int64_t T) -> Tensor& {
    const int id = cur_id == 0 ? 1 : 0;
    Tensor& t = st.ws.f32(be, id, {B, C, T});
    cur_id = id;
    return t;
  };
  // An ELU right before a conv is applied by the conv step on its input (backends that fuse
  // it skip a pass; the others compose it in `scratch`).
  bool elu_pending = false;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    const int64_t C = cur->dim(1), T = cur->dim(2);
    switch (s.kind) {
      case Kind::Conv: {
        const ConvSpec& sp = convs_[s.a].spec();
        Tensor& y = next(sp.cout, T / sp.stride);
        if (elu_pending) {
          Tensor& scratch = st.ws.f32(be, 5, {B, C, T});
          convs_[s.a].forward(be, *cur, y, st.convs[s.a], Act::Elu, &scratch);
          elu_pending = false;
        } else {
          convs_[s.a].forward(be, *cur, y, st.convs[s.a]);
        }
        cur = &y;
        break;
      }
      case Kind::ConvTr: {
        const ConvSpec& sp = convtrs_[s.a].spec();
        Tensor& y = next(sp.cout, T * sp.stride);
        convtrs_[s.a].forward(be, *cur, y, st.convtrs[s.a]);
        cur = &y;
        break;
      }
      case Kind::Elu: {
        if (i + 1 < steps_.size() && steps_[i + 1].kind == Kind::Conv &&
            !convs_[steps_[i + 1].a].spec().replicate) {
          elu_pending = true;
          break;
        }
        if (cur == &x) {  // never write into the caller's input
          Tensor& y = next(C, T);
          be.elu(*cur, y);
          cur = &y;
        } else {
          be.elu(*cur, const_cast<Tensor&>(*cur));
        }
        break;
      }
      case Kind::Residual: {
        const int64_t hidden = convs_[s.a].spec().cout;
        Tensor& act = st.ws.f32(be, 2, {B, C, T});
        Tensor& mid = st.ws.f32(be, 3, {B, hidden, T});
        Tensor& scratch_in = st.ws.f32(be, 5, {B, C, T});
        Tensor& scratch_mid = st.ws.f32(be, 6, {B, hidden, T});
        convs_[s.a].forward(be, *cur, mid, st.convs[s.a], Act::Elu, &scratch_in);  // conv(elu(x))
        if (cur == &x) {
          Tensor& y = next(C, T);
          be.copy(y, x);
          cur = &y;
        }
        Tensor& out = const_cast<Tensor&>(*cur);
        if (s.skip >= 0) {
          convs_[s.b].forward(be, mid, act, st.convs[s.b], Act::Elu, &scratch_mid);  // act: the branch output
          Tensor& sk = st.ws.f32(be, 4, {B, C, T});
          convs_[s.skip].forward(be, out, sk, st.convs[s.skip]);
          be.add(sk, act, out);
        } else {
          convs_[s.b].forward_add(be, mid, out, st.convs[s.b], Act::Elu, scratch_mid, act);  // out += branch
        }
        break;
      }
    }
  }
  MOSHI_CHECK(cur != &x, "seanet: empty network");
  return const_cast<Tensor&>(*cur);
}

}  // namespace moshi
