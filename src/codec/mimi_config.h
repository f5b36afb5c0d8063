// Mimi's configuration in the reference's schema (`mimi_config` with `seanet`, `transformer`,
// `quantizer`), with the released model's values as defaults.
#pragma once
#include <string>
#include <vector>

namespace moshi {

struct SeanetConfig {
  int channels = 1;
  int dimension = 512;
  int n_filters = 64;
  int n_residual_layers = 1;
  std::vector<int> ratios = {8, 6, 5, 4};  // decoder order; the encoder runs them reversed
  int kernel_size = 7;
  int residual_kernel_size = 3;
  int last_kernel_size = 3;
  int dilation_base = 2;
  int compress = 2;
  bool true_skip = true;
};

struct CodecTransformerConfig {
  int d_model = 512;
  int num_heads = 8;
  int num_layers = 8;
  int dim_feedforward = 2048;
  int context = 250;  // attention window in steps; 0 = unlimited
  bool has_layer_scale = true;
  float max_period = 10000.f;
  int input_dimension = 512;
  int output_dimension = 512;
};

struct QuantizerConfig {
  int dimension = 256;
  int n_q = 32;
  int bins = 2048;
  int input_dimension = 512;
  int output_dimension = 512;
};

struct MimiConfig {
  int sample_rate = 24000;
  int channels = 1;
  double frame_rate = 12.5;
  SeanetConfig seanet;
  CodecTransformerConfig transformer;
  QuantizerConfig quantizer;

  int hop() const;             // samples per encoder (SEANet) frame
  int frame_size() const;      // samples per code frame
  int resample_stride() const; // encoder frames per code frame (1 = no resampling convs)
};

// Parses the JSON text of a `mimi_config` object. Unknown keys are ignored; unsupported values
// (another activation, norm, pad mode or positional embedding) fail with a one-line message.
MimiConfig parse_mimi_config(const std::string& json_text, const std::string& what);

}  // namespace moshi

namespace moshi {
// Floating-point operations (2 per multiply-add) one code frame costs, counted from the
// architecture: convolutions, transformer matmuls and attention at a full window, quantizer.
double mimi_encode_flops_per_frame(const MimiConfig& c, int num_codebooks);
double mimi_decode_flops_per_frame(const MimiConfig& c, int num_codebooks);
}  // namespace moshi
