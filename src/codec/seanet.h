// SEANet encoder and decoder (model-spec §1.4, §1.5), built from the config in the reference's
// module order so that `model.{i}` names line up with checkpoints.
#pragma once
#include <string>
#include <vector>

#include "codec/mimi_config.h"
#include "codec/streaming_conv.h"
#include "runtime/workspace.h"

namespace moshi {

class Seanet {
 public:
  // prefix: "encoder.model." or "decoder.model."
  void load_encoder(WeightBinder& wb, Backend& be, const SeanetConfig& c);
  void load_decoder(WeightBinder& wb, Backend& be, const SeanetConfig& c);
  int in_channels() const { return in_channels_; }
  int out_channels() const { return out_channels_; }
  // Output frames per input frame, as a ratio num/den.
  int upsample() const { return up_; }
  int downsample() const { return down_; }

  struct State {
    std::vector<StreamingConv1d::State> convs;
    std::vector<StreamingConvTranspose1d::State> convtrs;
    Workspace ws;
  };
  State new_state(Backend& be, int batch) const;
  void reset(Backend& be, State& st, int stream) const;
  // x [B, in_channels, T] -> returns [B, out_channels, T·up/down] (a workspace view).
  Tensor& forward(Backend& be, const Tensor& x, State& st) const;

 private:
  enum class Kind { Conv, ConvTr, Elu, Residual };
  struct Step {
    Kind kind;
    int a = -1, b = -1, skip = -1;  // indices into convs_/convtrs_ (Residual: block convs a, b, shortcut skip)
  };
  void add_residual(WeightBinder& wb, Backend& be, const SeanetConfig& c, const std::string& name, int dim,
                    int dilation);
  int add_conv(WeightBinder& wb, Backend& be, const std::string& name, const ConvSpec& spec);

  std::vector<Step> steps_;
  std::vector<StreamingConv1d> convs_;
  std::vector<StreamingConvTranspose1d> convtrs_;
  int in_channels_ = 0, out_channels_ = 0, up_ = 1, down_ = 1;
};

}  // namespace moshi
