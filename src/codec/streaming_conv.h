// Causal streaming convolutions (model-spec §1.2, §1.3): the layer's weights plus the state a
// stream carries between calls.
#pragma once
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "weights/weight_source.h"

namespace moshi {

struct ConvSpec {
  int cin = 0, cout = 0, kernel = 1, stride = 1, dilation = 1, groups = 1;
  bool bias = true;
  bool replicate = false;  // pad with the first frame instead of zeros
};

class StreamingConv1d {
 public:
  // Binds `name`.weight [Cout, Cin/groups, K] (and `name`.bias [Cout]).
  void load(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec);
  const ConvSpec& spec() const { return spec_; }
  int history() const { return (spec_.kernel - 1) * spec_.dilation + 1 - spec_.stride; }

  struct State {
    Tensor prev;                 // [B, Cin, history]
    std::vector<uint8_t> first;  // per stream: no frame seen since reset (replicate padding)
  };
  State new_state(Backend& be, int batch) const;
  void reset(Backend& be, State& st, int stream) const;
  // x [B, Cin, T] -> y [B, Cout, T/stride]; T must be a multiple of the stride. With `act`, the
  // conv runs over act(x) (replicate-padded convs take no activation); `scratch` [B, Cin, T]
  // holds act(x) where the backend does not fuse it.
  void forward(Backend& be, const Tensor& x, Tensor& y, State& st, Act act = Act::Identity,
               Tensor* scratch = nullptr) const;
  // y += the conv over act(x) (no replicate padding); `tmp` [B, Cout, T/stride] holds the conv's
  // output where the backend does not add it in place.
  void forward_add(Backend& be, const Tensor& x, Tensor& y, State& st, Act act, Tensor& scratch, Tensor& tmp) const;

 private:
  ConvSpec spec_;
  Tensor w_, b_;
};

class StreamingConvTranspose1d {
 public:
  // Binds `name`.weight [Cin, Cout/groups, K] (and `name`.bias [Cout]).
  void load(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec);
  const ConvSpec& spec() const { return spec_; }

  struct State {
    Tensor partial;  // [B, Cout, K - stride]
  };
  State new_state(Backend& be, int batch) const;
  void reset(Backend& be, State& st, int stream) const;
  // x [B, Cin, T] -> y [B, Cout, T·stride]
  void forward(Backend& be, const Tensor& x, Tensor& y, State& st) const;

 private:
  ConvSpec spec_;
  Tensor w_, b_;
};

}  // namespace moshi
