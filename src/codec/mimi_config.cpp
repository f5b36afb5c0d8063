#include "codec/mimi_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "weights/json_reader.h"

namespace moshi {

using json = nlohmann::json;

int MimiConfig::hop() const {
  int h = 1;
  for (int r : seanet.ratios) h *= r;
  return h;
}

int MimiConfig::frame_size() const { return static_cast<int>(std::lround(sample_rate / frame_rate)); }

int MimiConfig::resample_stride() const { return frame_size() / hop(); }


MimiConfig parse_mimi_config(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  MOSHI_CHECK(!j.is_discarded() && j.is_object(), what, ": mimi config is not a JSON object");
  if (j.contains("mimi_config")) {  // a case or model config.json wrapping it
    json inner = j["mimi_config"];
    MOSHI_CHECK(inner.is_object(), what, ": mimi_config is not a JSON object");
    j = inner;
  }
  MimiConfig c;
  JsonReader top{j, what + ": "};
  c.sample_rate = top.get_int("sample_rate", c.sample_rate, 1000, 384000);
  c.channels = top.get_int("channels", c.channels, 1, 1);
  c.frame_rate = top.get_num("frame_rate", c.frame_rate);
  MOSHI_CHECK(c.frame_rate > 0 && c.frame_rate < c.sample_rate, what, ": frame_rate ", c.frame_rate, " is invalid");

  if (j.contains("seanet")) {
    MOSHI_CHECK(j["seanet"].is_object(), what, ": seanet must be an object");
    JsonReader r{j["seanet"], what + ": seanet."};
    auto& s = c.seanet;
    s.channels = r.get_int("channels", s.channels, 1, 1);
    s.dimension = r.get_int("dimension", s.dimension, 1);
    s.n_filters = r.get_int("n_filters", s.n_filters, 1);
    s.n_residual_layers = r.get_int("n_residual_layers", s.n_residual_layers, 0, 16);
    s.kernel_size = r.get_int("kernel_size", s.kernel_size, 1, 64);
    s.residual_kernel_size = r.get_int("residual_kernel_size", s.residual_kernel_size, 1, 64);
    s.last_kernel_size = r.get_int("last_kernel_size", s.last_kernel_size, 1, 64);
    s.dilation_base = r.get_int("dilation_base", s.dilation_base, 1, 16);
    s.compress = r.get_int("compress", s.compress, 1, 64);
    s.true_skip = r.get_bool("true_skip", s.true_skip);
    MOSHI_CHECK(r.get_bool("causal", true), what, ": seanet.causal = false is not supported (streaming needs causal)");
    r.expect("activation", "ELU", {"ELU"});
    r.expect("norm", "none", {"none"});
    r.expect("pad_mode", "constant", {"constant"});
    if (r.has("activation_params")) {
      const json& ap = j["seanet"]["activation_params"];
      MOSHI_CHECK(!ap.contains("alpha") || (ap["alpha"].is_number() && ap["alpha"].get<double>() == 1.0), what,
                  ": seanet ELU alpha other than 1.0 is not supported");
    }
    if (r.has("ratios")) {
      MOSHI_CHECK(j["seanet"]["ratios"].is_array() && !j["seanet"]["ratios"].empty(), what,
                  ": seanet.ratios must be a non-empty array");
      s.ratios.clear();
      for (const auto& v : j["seanet"]["ratios"]) {
        MOSHI_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= 64, what,
                    ": seanet.ratios must hold integers in [1, 64]");
        s.ratios.push_back(v.get<int>());
      }
    }
    MOSHI_CHECK(s.n_filters % s.compress == 0 && s.dimension >= 1, what, ": seanet.n_filters must be divisible by compress");
  }
  if (j.contains("transformer")) {
    MOSHI_CHECK(j["transformer"].is_object(), what, ": transformer must be an object");
    JsonReader r{j["transformer"], what + ": transformer."};
    auto& t = c.transformer;
    t.d_model = r.get_int("d_model", t.d_model, 1);
    t.num_heads = r.get_int("num_heads", t.num_heads, 1);
    t.num_layers = r.get_int("num_layers", t.num_layers, 0, 256);
    t.dim_feedforward = r.get_int("dim_feedforward", t.dim_feedforward, 1);
    t.context = r.has("context") ? r.get_int("context", 0, 1) : 0;
    t.has_layer_scale = r.has("layer_scale");
    t.max_period = static_cast<float>(r.get_num("max_period", t.max_period));
    t.input_dimension = r.get_int("input_dimension", c.seanet.dimension, 1);
    t.output_dimension = t.input_dimension;
    if (r.has("output_dimensions")) {
      const json& od = j["transformer"]["output_dimensions"];
      MOSHI_CHECK(od.is_array() && od.size() == 1 && od[0].is_number_integer(), what,
                  ": transformer.output_dimensions must hold exactly one integer");
      t.output_dimension = od[0].get<int>();
    }
    MOSHI_CHECK(r.get_bool("causal", true), what, ": transformer.causal = false is not supported");
    MOSHI_CHECK(r.get_bool("conv_layout", true), what, ": transformer.conv_layout = false is not supported");
    r.expect("gating", "none", {"none"});
    r.expect("norm", "layer_norm", {"layer_norm"});
    r.expect("positional_embedding", "rope", {"rope"});
    MOSHI_CHECK(t.d_model % t.num_heads == 0 && (t.d_model / t.num_heads) % 2 == 0, what,
                ": transformer.d_model must split into heads of even size");
  } else {
    c.transformer.input_dimension = c.transformer.output_dimension = c.seanet.dimension;
  }
  if (j.contains("quantizer")) {
    MOSHI_CHECK(j["quantizer"].is_object(), what, ": quantizer must be an object");
    JsonReader r{j["quantizer"], what + ": quantizer."};
    auto& q = c.quantizer;
    q.dimension = r.get_int("dimension", q.dimension, 1);
    q.n_q = r.get_int("n_q", q.n_q, 2, 1024);
    q.bins = r.get_int("bins", q.bins, 1, 1 << 20);
    q.input_dimension = r.get_int("input_dimension", c.seanet.dimension, 1);
    q.output_dimension = r.get_int("output_dimension", c.seanet.dimension, 1);
  } else {
    c.quantizer.input_dimension = c.quantizer.output_dimension = c.seanet.dimension;
  }
  MOSHI_CHECK(c.transformer.input_dimension == c.seanet.dimension &&
                  c.transformer.output_dimension == c.seanet.dimension,
              what, ": transformer input/output dimensions must equal seanet.dimension");
  MOSHI_CHECK(c.quantizer.input_dimension == c.seanet.dimension && c.quantizer.output_dimension == c.seanet.dimension,
              what, ": quantizer input/output dimensions must equal seanet.dimension");
  const double fs = c.sample_rate / c.frame_rate;
  MOSHI_CHECK(std::fabs(fs - std::round(fs)) < 1e-9, what, ": sample_rate / frame_rate must be an integer");
  MOSHI_CHECK(c.frame_size() % c.hop() == 0, what, ": the frame size ", c.frame_size(),
              " must be a multiple of the SEANet hop ", c.hop());
  return c;
}

}  // namespace moshi

namespace moshi {

namespace {
double seanet_flops(const MimiConfig& c) {
  const SeanetConfig& s = c.seanet;
  double t = c.frame_size(), f = 0;
  auto res = [&](double dim, double steps) {
    const double hidden = dim / s.compress;
    f += 2 * steps * (hidden * dim * s.residual_kernel_size + dim * hidden) * s.n_residual_layers;
    if (!s.true_skip) f += 2 * steps * dim * dim * s.n_residual_layers;
  };
  f += 2 * t * s.n_filters * s.channels * s.kernel_size;
  double dim = s.n_filters;
  for (auto it = s.ratios.rbegin(); it != s.ratios.rend(); ++it) {
    res(dim, t);
    t /= *it;
    f += 2 * t * (2 * dim) * dim * (2 * *it);
    dim *= 2;
  }
  f += 2 * t * s.dimension * dim * s.last_kernel_size;
  return f;  // the decoder mirrors the encoder layer for layer
}

double transformer_flops(const MimiConfig& c) {
  const auto& t = c.transformer;
  const double C = t.d_model, F = t.dim_feedforward, steps = c.resample_stride();
  const double window = t.context > 0 ? t.context : 1;
  return t.num_layers * steps * (2 * (3 * C * C + C * C + 2 * C * F) + 4 * C * window);
}
}  // namespace

double mimi_encode_flops_per_frame(const MimiConfig& c, int K) {
  const double C = c.seanet.dimension, s = c.resample_stride(), D = c.quantizer.dimension;
  const double resample = s > 1 ? 2 * C * C * 2 * s : 0;
  const double rvq = 2 * (2 * D * C) + 2.0 * K * c.quantizer.bins * D;
  return seanet_flops(c) + transformer_flops(c) + resample + rvq;
}

double mimi_decode_flops_per_frame(const MimiConfig& c, int K) {
  const double C = c.seanet.dimension, s = c.resample_stride(), D = c.quantizer.dimension;
  const double resample = s > 1 ? 2 * C * 2 * s : 0;  // depthwise
  return seanet_flops(c) + transformer_flops(c) + resample + 2 * (2 * C * D);
}

}  // namespace moshi
