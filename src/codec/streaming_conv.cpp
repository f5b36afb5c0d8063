#include "codec/streaming_conv.h"

#include "core/error.h"

namespace moshi {

namespace {
// Zeroes one stream's slice [b] of a [B, ...] state tensor.
void zero_stream(Backend& be, Tensor& t, int stream) {
  if (t.numel() == 0) return;
  Tensor s = t.slice0(stream, stream + 1);
  be.zero(s);
}
}  // namespace

void StreamingConv1d::load(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec) {
  spec_ = spec;
  MOSHI_CHECK(spec.stride >= 1 && spec.kernel >= spec.stride, name, ": kernel ", spec.kernel,
              " smaller than stride ", spec.stride);
  w_ = be.prepare_conv(wb.take(name + ".weight", {spec.cout, spec.cin / spec.groups, spec.kernel}), spec.groups);
  if (spec.bias) b_ = be.prepare_vector(wb.take(name + ".bias", {spec.cout}));
}

StreamingConv1d::State StreamingConv1d::new_state(Backend& be, int batch) const {
  State st;
  st.prev = be.empty(DType::F32, {batch, spec_.cin, history()});
  st.first.assign(batch, 1);
  return st;
}

void StreamingConv1d::reset(Backend& be, State& st, int stream) const {
  zero_stream(be, st.prev, stream);
  st.first[stream] = 1;
}

void StreamingConv1d::forward(Backend& be, const Tensor& x, Tensor& y, State& st, Act act, Tensor* scratch) const {
  MOSHI_CHECK(act == Act::Identity || (!spec_.replicate && scratch),
              "streaming conv: an input activation needs scratch and no replicate padding");
  if (act == Act::Identity) {
    if (spec_.replicate) be.conv_history_replicate(st.prev, x, st.first);
    be.conv1d(st.prev, x, w_, spec_.bias ? &b_ : nullptr, spec_.cin, spec_.cout, spec_.kernel, spec_.stride,
              spec_.dilation, spec_.groups, y);
    be.conv_history_update(st.prev, x);
  } else {
    be.conv1d_step(st.prev, x, act, w_, spec_.bias ? &b_ : nullptr, spec_.cin, spec_.cout, spec_.kernel, spec_.stride,
                   spec_.dilation, spec_.groups, *scratch, y);
  }
  std::fill(st.first.begin(), st.first.end(), 0);
}

void StreamingConv1d::forward_add(Backend& be, const Tensor& x, Tensor& y, State& st, Act act, Tensor& scratch,
                                  Tensor& tmp) const {
  MOSHI_CHECK(!spec_.replicate, "streaming conv: a replicate-padded conv cannot add onto its output");
  be.conv1d_step_add(st.prev, x, act, w_, spec_.bias ? &b_ : nullptr, spec_.cin, spec_.cout, spec_.kernel, spec_.stride,
                     spec_.dilation, spec_.groups, scratch, tmp, y);
  std::fill(st.first.begin(), st.first.end(), 0);
}

void StreamingConvTranspose1d::load(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec) {
  spec_ = spec;
  MOSHI_CHECK(spec.kernel >= spec.stride, name, ": kernel smaller than stride is not supported");
  w_ = be.prepare_conv_transpose(wb.take(name + ".weight", {spec.cin, spec.cout / spec.groups, spec.kernel}),
                                 spec.groups);
  if (spec.bias) b_ = be.prepare_vector(wb.take(name + ".bias", {spec.cout}));
}

StreamingConvTranspose1d::State StreamingConvTranspose1d::new_state(Backend& be, int batch) const {
  return State{be.empty(DType::F32, {batch, spec_.cout, spec_.kernel - spec_.stride})};
}

void StreamingConvTranspose1d::reset(Backend& be, State& st, int stream) const { zero_stream(be, st.partial, stream); }

void StreamingConvTranspose1d::forward(Backend& be, const Tensor& x, Tensor& y, State& st) const {
  be.conv_transpose1d(x, w_, spec_.bias ? &b_ : nullptr, spec_.cin, spec_.cout, spec_.kernel, spec_.stride,
                      spec_.groups, st.partial, y);
}

}  // namespace moshi
