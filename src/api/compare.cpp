// Runs one input through two device:dtype configurations side by side and reports, per
// stage, where they first part; optionally dumps every tapped activation of both runs.
#include "moshi/compare.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>

#include "api/model_impl.h"
#include "core/error.h"
#include "core/sha256.h"
#include "lm/lm_gen.h"
#include "moshi/audio.h"
#include "weights/safetensors.h"

namespace moshi {

namespace {

struct Side {
  std::string device, dtype;
  Model model;
  std::vector<std::vector<int64_t>> codes, tokens;  // per step
  std::vector<std::vector<float>> text_logits, pcm;
  std::vector<std::vector<std::pair<std::string, std::vector<float>>>> taps;  // per step, in call order
  std::vector<float> all_pcm;
};

void parse_side(const std::string& spec, Side* s) {
  const auto p = spec.rfind(':');
  MOSHI_CHECK(p != std::string::npos && p > 0 && p + 1 < spec.size(), "'", spec,
              "' is not DEVICE:DTYPE (e.g. cpu:f32, cpu:bf16, cuda:bf16)");
  s->device = spec.substr(0, p);
  s->dtype = spec.substr(p + 1);
  MOSHI_CHECK(s->dtype == "f32" || s->dtype == "bf16" || s->dtype == "auto", "'", spec,
              "': dtype must be f32, bf16 or auto");
}

void run_side(Side& s, const CompareOptions& o, const std::vector<float>& pcm, int64_t frames) {
  const auto& impl = *s.model.impl();
  const LmConfig& lc = impl.lm->config();
  const int fs = impl.mimi->frame_size(), nu = lc.n_q - lc.dep_q, K = std::max(lc.dep_q, nu);
  GenParams gp;
  gp.seed = o.seed;
  gp.text = SamplingParams{!o.sampling.greedy, o.sampling.temp_text, o.sampling.top_k_text};
  gp.audio = SamplingParams{!o.sampling.greedy, o.sampling.temp, o.sampling.top_k};
  auto enc = impl.mimi->new_encoder(1);
  auto dec = impl.mimi->new_decoder(1);
  LmGen gen(impl.lm, 1, gp);
  std::vector<std::pair<std::string, std::vector<float>>>* sink = nullptr;
  Tap tap = [&](const std::string& name, const Tensor& t) {
    if (!sink) return;
    std::vector<float> h(static_cast<size_t>(t.numel()));
    impl.lm->backend().download(t, h.data());
    sink->emplace_back(name, std::move(h));
  };
  const Tap* tp = o.dump_dir.empty() ? nullptr : &tap;
  enc->tap = tp;
  dec->tap = tp;
  gen.set_tap(tp);
  std::vector<int64_t> out;
  std::vector<uint8_t> ready;
  std::vector<float> tl;
  // The reference's file loop: the first frame is stepped twice (see Session).
  for (int64_t f = 0; f < frames; ++f) {
    for (int rep = 0; rep < (f == 0 ? 2 : 1); ++rep) {
      s.taps.emplace_back();
      sink = &s.taps.back();
      Tensor x = Tensor::zeros_f32({1, 1, fs});
      std::memcpy(x.f32(), pcm.data() + f * fs, fs * sizeof(float));
      Tensor c = Tensor::zeros(DType::I64, {1, K, 1});
      impl.mimi->encode(*enc, x, nullptr, K, &c);
      s.codes.emplace_back(c.i64(), c.i64() + K);
      std::vector<int64_t> user(c.i64(), c.i64() + nu);
      gen.step(user, nu, out, ready, &tl);
      s.text_logits.push_back(tl);
      s.tokens.push_back(ready[0] ? out : std::vector<int64_t>());
      std::vector<float> y;
      if (ready[0] && lc.dep_q > 0) {
        Tensor ac = Tensor::zeros(DType::I64, {1, lc.dep_q, 1});
        for (int k = 0; k < lc.dep_q; ++k) ac.i64()[k] = out[1 + k];
        Tensor yt = Tensor::zeros_f32({1, 1, fs});
        impl.mimi->decode(*dec, ac, yt);
        y.assign(yt.f32(), yt.f32() + fs);
        s.all_pcm.insert(s.all_pcm.end(), y.begin(), y.end());
      }
      s.pcm.push_back(std::move(y));
    }
  }
  sink = nullptr;
}

struct Diff {
  double max_abs = 0, max_ref = 0, dot = 0, na = 0, nb = 0;
  void add(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(a[i] - b[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(a[i])));
      dot += static_cast<double>(a[i]) * b[i];
      na += static_cast<double>(a[i]) * a[i];
      nb += static_cast<double>(b[i]) * b[i];
    }
    if (a.size() != b.size()) max_abs = INFINITY;
  }
  double cosine() const { return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : (na == nb ? 1.0 : 0.0); }
};

std::string sha_of(const std::vector<float>& v) { return sha256_hex(v.data(), v.size() * sizeof(float)); }

}  // namespace

CompareReport compare_runs(const CompareOptions& o) {
  MOSHI_CHECK(!o.input.empty(), "compare: an input audio file is required");
  Side A, B;
  parse_side(o.a, &A);
  parse_side(o.b, &B);
  for (Side* s : {&A, &B}) {
    ModelOptions mo;
    mo.device = s->device;
    mo.weights_dtype = s->dtype;
    mo.threads = o.threads;
    s->model = Model::load(o.model, mo);
  }
  AudioData in = read_audio(o.input, A.model.sample_rate());
  const int fs = A.model.frame_size();
  int64_t frames = (static_cast<int64_t>(in.samples.size()) + fs - 1) / fs;
  if (o.steps > 0) frames = std::min(frames, o.steps);
  MOSHI_CHECK(frames > 0, "compare: no frames to run");
  in.samples.resize(static_cast<size_t>(frames) * fs, 0.f);
  run_side(A, o, in.samples, frames);
  run_side(B, o, in.samples, frames);

  // Both sides f32: the golden tolerance; otherwise bf16 rounding is expected, so logits are
  // judged by cosine and audio by the agreement of what the tokens make.
  const bool exact = A.dtype != "bf16" && B.dtype != "bf16";
  const double logit_tol = 1e-4, cos_min = 0.999, pcm_tol = 1e-4;
  CompareReport r;
  r.steps = static_cast<int64_t>(A.codes.size());
  auto stage = [&](const std::string& name, const std::string& rule) {
    StageReport s;
    s.stage = name;
    s.rule = rule;
    return s;
  };
  StageReport codes = stage("mimi codes", "equal"), logits = stage("lm text logits", exact ? "max |diff| <= 1e-4" : "cosine >= 0.999"),
              text = stage("text tokens", "equal"), audio = stage("audio tokens", "equal"),
              pcm = stage("decoded pcm", "max |diff| <= 1e-4");
  int64_t n_codes = 0, eq_codes = 0, n_text = 0, eq_text = 0, n_audio = 0, eq_audio = 0;
  for (int64_t s = 0; s < r.steps; ++s) {
    auto diverge = [&](StageReport& st) {
      if (st.first_divergence < 0) st.first_divergence = s;
      st.agree = false;
    };
    for (size_t k = 0; k < A.codes[s].size(); ++k, ++n_codes) eq_codes += A.codes[s][k] == B.codes[s][k];
    if (A.codes[s] != B.codes[s]) diverge(codes);
    Diff d;
    d.add(A.text_logits[s], B.text_logits[s]);
    logits.max_abs = std::max(logits.max_abs, d.max_abs);
    if (d.max_ref > 0) logits.max_rel = std::max(logits.max_rel, d.max_abs / d.max_ref);
    if (exact ? !(d.max_abs <= logit_tol) : !(d.cosine() >= cos_min)) diverge(logits);
    if (!A.tokens[s].empty() || !B.tokens[s].empty()) {
      ++n_text;
      const bool t_eq = !A.tokens[s].empty() && !B.tokens[s].empty() && A.tokens[s][0] == B.tokens[s][0];
      eq_text += t_eq;
      if (!t_eq) diverge(text);
      for (size_t k = 1; k < std::max(A.tokens[s].size(), B.tokens[s].size()); ++k, ++n_audio) {
        const bool eq = k < A.tokens[s].size() && k < B.tokens[s].size() && A.tokens[s][k] == B.tokens[s][k];
        eq_audio += eq;
        if (!eq) diverge(audio);
      }
    }
    Diff p;
    p.add(A.pcm[s], B.pcm[s]);
    pcm.max_abs = std::max(pcm.max_abs, p.max_abs);
    if (p.max_ref > 0) pcm.max_rel = std::max(pcm.max_rel, p.max_abs / p.max_ref);
    if (!(p.max_abs <= pcm_tol)) diverge(pcm);
  }
  codes.agreement = n_codes ? static_cast<double>(eq_codes) / n_codes : 1;
  text.agreement = n_text ? static_cast<double>(eq_text) / n_text : 1;
  audio.agreement = n_audio ? static_cast<double>(eq_audio) / n_audio : 1;
  r.stages = {codes, logits, text, audio, pcm};
  r.sha256_a = sha_of(A.all_pcm);
  r.sha256_b = sha_of(B.all_pcm);

  if (!o.dump_dir.empty()) {
    mkdir(o.dump_dir.c_str(), 0755);
    for (Side* s : {&A, &B}) {
      std::vector<std::pair<std::string, Tensor>> ts;
      for (size_t st = 0; st < s->taps.size(); ++st) {
        std::map<std::string, int> seen;  // depformer layers repeat per codebook: number them
        for (const auto& [name, v] : s->taps[st]) {
          const int n = seen[name]++;
          Tensor t = Tensor::zeros_f32({static_cast<int64_t>(v.size())});
          std::memcpy(t.data(), v.data(), t.nbytes());
          ts.emplace_back("step" + std::to_string(st) + "/" + name + (n ? "#" + std::to_string(n) : ""), t);
        }
      }
      write_safetensors(o.dump_dir + "/" + (s == &A ? "a" : "b") + ".safetensors", ts,
                        {{"config", s == &A ? o.a : o.b}, {"model", o.model}, {"input", o.input}});
    }
    // The first activation, in execution order, where the two runs part.
    for (size_t st = 0; st < std::min(A.taps.size(), B.taps.size()) && r.first_activation.empty(); ++st)
      for (size_t i = 0; i < std::min(A.taps[st].size(), B.taps[st].size()); ++i) {
        Diff d;
        d.add(A.taps[st][i].second, B.taps[st][i].second);
        const bool part = exact ? !(d.max_abs <= 1e-4 * std::max(1.0, d.max_ref)) : !(d.cosine() >= cos_min);
        if (part) {
          StageReport act;
          act.stage = "activations";
          act.rule = exact ? "max |diff| <= 1e-4 relative" : "cosine >= 0.999";
          act.agree = false;
          act.first_divergence = static_cast<int64_t>(st);
          act.max_abs = d.max_abs;
          act.max_rel = d.max_ref > 0 ? d.max_abs / d.max_ref : 0;
          r.stages.push_back(act);
          std::ostringstream os;
          os << "step " << st << ", " << A.taps[st][i].first << " (max abs " << d.max_abs << ", cosine "
             << d.cosine() << ")";
          r.first_activation = os.str();
          break;
        }
      }
  }
  return r;
}

}  // namespace moshi
