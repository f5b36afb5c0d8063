// moshi-rt bench mimi: streaming encode + decode timing per 80 ms frame.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "commands.h"
#include "moshi/lm.h"
#include "moshi/mimi.h"
#include "moshi/system.h"

namespace {

struct Stats {
  double median = 0, p90 = 0, first = 0;
};

Stats summarize(std::vector<double> v, double first) {
  Stats s;
  s.first = first;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p90 = v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(0.9 * v.size())) - 1)];
  return s;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int bench_mimi(int argc, char** argv) {
  cli::Args a("moshi-rt bench mimi [options]",
              "Times streaming Mimi encode and decode, one 80 ms frame per call, on a fixed pseudo-random\n"
              "signal: first call, then median and p90 over the measured frames after warm-up.",
              {{"mimi", "PATH|synthetic", "Mimi checkpoint, or 'synthetic' (real shapes, random weights)", "synthetic"},
               {"device", "NAME", "compute device", "cpu"},
               {"threads", "N", "CPU threads (0 = all cores)", "0"},
               {"batch", "N", "independent streams coded together", "1"},
               {"codebooks", "N", "codebooks encoded and decoded", "8"},
               {"frames", "N", "measured frames", "40"},
               {"warmup", "N", "frames run before measuring", "4"},
               {"json", "", "print one JSON line instead of a table", ""}},
              0, 0);
  if (!a.parse(argc, argv, 2)) return 0;
  moshi::MimiOptions o;
  o.device = a.str("device");
  o.threads = a.integer("threads", 0, 1024);
  o.num_codebooks = a.integer("codebooks", 1, 1024);
  const int B = a.integer("batch", 1, 4096), frames = a.integer("frames", 1, 100000),
            warmup = a.integer("warmup", 0, 100000);
  moshi::Mimi m = moshi::Mimi::load(a.str("mimi"), o);
  const int fs = m.frame_size(), K = m.num_codebooks();
  const double frame_ms = 1000.0 / m.frame_rate();

  // A speech-like test signal: a few harmonics with noise, different per stream.
  const int total = 1 + warmup + frames;
  std::vector<float> pcm(static_cast<size_t>(B) * fs);
  uint64_t rng = 12345;
  auto noise = [&] {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((rng >> 40) * (1.0 / (1ull << 24)) - 0.5);
  };
  moshi::MimiEncoder enc = m.encoder(B);
  moshi::MimiDecoder dec = m.decoder(B);
  std::vector<double> te, td;
  double first_e = 0, first_d = 0;
  for (int f = 0; f < total; ++f) {
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < fs; ++i) {
        const double t = (static_cast<double>(f) * fs + i) / m.sample_rate();
        pcm[b * fs + i] = static_cast<float>(0.3 * std::sin(2 * M_PI * (140 + 20 * b) * t) +
                                             0.1 * std::sin(2 * M_PI * 560 * t) + 0.05 * noise());
      }
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> codes = enc.encode(pcm.data(), fs);
    const double e = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    std::vector<float> out = dec.decode(codes.data(), K, 1);
    const double d = ms_since(t0);
    if (f == 0) {
      first_e = e;
      first_d = d;
    } else if (f > warmup) {
      te.push_back(e);
      td.push_back(d);
    }
  }
  const Stats se = summarize(te, first_e), sd = summarize(td, first_d);
  // Weight streaming bounds this codec on CPU: report the memory bandwidth of this very run (the
  // GPU's on a GPU) and the weight bytes a frame reads per second against it.
  const double bw = m.measure_read_bandwidth_gbps();
  const double per_frame = se.median + sd.median;
  const double weight_gb = m.weight_bytes() / 1e9, weights_gbps = weight_gb / (per_frame / 1000);
  const double rtf = B * frame_ms / per_frame;
  const double gflops = B * (m.encode_flops_per_frame() + m.decode_flops_per_frame()) / (per_frame * 1e6);
  if (a.flag("json")) {
    std::printf(
        "{\"bench\":\"mimi\",\"machine\":\"%s\",\"source\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"batch\":%d,\"codebooks\":%d,"
        "\"frames\":%d,\"frame_ms\":%.1f,"
        "\"mimi_encode_ms\":{\"median\":%.3f,\"p90\":%.3f,\"first\":%.3f},"
        "\"mimi_decode_ms\":{\"median\":%.3f,\"p90\":%.3f,\"first\":%.3f},"
        "\"real_time_factor\":%.2f,\"gflop_per_frame\":%.3f,\"gflops\":%.1f,\"weight_gb_per_frame\":%.3f,"
        "\"weights_gbps\":%.1f,\"mem_read_gbps\":%.1f,\"bandwidth_fraction\":%.2f}\n",
        moshi::machine_description().c_str(), a.str("mimi").c_str(), o.device.c_str(), o.threads, B, K, frames, frame_ms, se.median, se.p90, se.first,
        sd.median, sd.p90, sd.first, rtf, (m.encode_flops_per_frame() + m.decode_flops_per_frame()) / 1e9, gflops,
        weight_gb, weights_gbps, bw, bw > 0 ? weights_gbps / bw : 0.0);
  } else {
    std::printf("mimi bench on %s: %s, batch %d, %d codebooks, %d frames after %d warm-up\n", moshi::machine_description().c_str(),
                m.describe().c_str(), B, K, frames, warmup);
    std::printf("  %-8s %9s %9s %9s   (ms per %.0f ms frame)\n", "stage", "median", "p90", "first", frame_ms);
    std::printf("  %-8s %9.3f %9.3f %9.3f\n", "encode", se.median, se.p90, se.first);
    std::printf("  %-8s %9.3f %9.3f %9.3f\n", "decode", sd.median, sd.p90, sd.first);
    std::printf("  real-time factor %.2fx (encode + decode), %.1f GFLOP/s\n", rtf, gflops);
    std::printf("  weights: %.3f GB per frame (at most) -> %.1f GB/s; memory read bandwidth in this run %.1f GB/s\n",
                weight_gb, weights_gbps, bw);
  }
  return 0;
}

std::string stats_json(const Stats& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"median\":%.3f,\"p90\":%.3f,\"first\":%.3f}", s.median, s.p90, s.first);
  return buf;
}

// "a,b,c" -> {"a", "b", "c"} (empty items kept, so that "1," is refused by the caller).
std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= list.size()) {
    const size_t q = std::min(list.find(',', p), list.size());
    out.push_back(list.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

// "1,8,32" -> {1, 8, 32}; each in [1, 4096].
std::vector<int> parse_batches(const std::string& list) {
  std::vector<int> out;
  for (const std::string& item : split_list(list)) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 4096)
      throw moshi::Error("--batch: '" + item + "' is not a batch size in [1, 4096] (a list such as 1,8,32)");
    out.push_back(static_cast<int>(v));
  }
  return out;
}

struct LmRun {
  int batch = 0;
  std::string context;
  int64_t context_steps = 0;
  Stats temporal, depformer, step, issue;
};

int bench_lm(int argc, char** argv) {
  cli::Args a("moshi-rt bench lm [options]",
              "Times streaming LM steps (temporal transformer + depformer + sampling) on pseudo-random user\n"
              "tokens, for each batch size and context: first step, then median and p90 over the measured\n"
              "steps after warm-up, per stage, and the bytes a step reads (weights + KV cache) per second\n"
              "against the memory read bandwidth measured in the same run. The depformer stage is timed on\n"
              "the device; the temporal figure is the rest of the step (host work included).",
              {{"model", "SPEC", "synthetic:moshi-7b, synthetic:tiny, or a model.safetensors path", "synthetic:moshi-7b"},
               {"lm-config", "JSON", "config.json for a model.safetensors path (default: Moshi 7B)", ""},
               {"device", "NAME", "compute device", "cpu"},
               {"threads", "N", "CPU threads (0 = all cores)", "0"},
               {"batch", "LIST", "independent streams stepped together, e.g. 1 or 1,8,32", "1"},
               {"context", "LIST", "fresh (steps from position 0) and/or full (after the model's whole "
                                   "context, e.g. 3000 steps, skipped as zeros), e.g. fresh,full", "fresh"},
               {"dtype", "TYPE", "matrix weights: auto, bf16 or f32", "auto"},
               {"steps", "N", "measured steps", "10"},
               {"warmup", "N", "steps run before measuring (after the first)", "2"},
               {"json", "", "print one JSON line instead of tables", ""}},
              0, 0);
  if (!a.parse(argc, argv, 2)) return 0;
  moshi::LmOptions o;
  o.device = a.str("device");
  o.threads = a.integer("threads", 0, 1024);
  o.weights_dtype = a.str("dtype");
  if (a.given("lm-config")) {
    FILE* f = std::fopen(a.str("lm-config").c_str(), "rb");
    if (!f) throw moshi::Error(a.str("lm-config") + ": cannot open");
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) o.config_json.append(buf, n);
    std::fclose(f);
  }
  const std::vector<int> batches = parse_batches(a.str("batch"));
  const std::vector<std::string> contexts = split_list(a.str("context"));
  for (const std::string& c : contexts)
    if (c != "fresh" && c != "full") throw moshi::Error("--context: '" + c + "' is not fresh or full");
  const int steps = a.integer("steps", 1, 100000), warmup = a.integer("warmup", 0, 100000);
  std::fprintf(stderr, "loading %s ...\n", a.str("model").c_str());
  auto t0 = std::chrono::steady_clock::now();
  moshi::Lm lm = moshi::Lm::load(a.str("model"), o);
  const double load_s = ms_since(t0) / 1000;
  std::fprintf(stderr, "loaded in %.1f s: %s\n", load_s, lm.describe().c_str());
  for (const std::string& c : contexts)
    if (c == "full" && lm.context() <= 0)
      throw moshi::Error("--context full: the model's temporal context is unlimited; use fresh");
  const double bw = lm.measure_read_bandwidth_gbps();
  const double weight_gb = lm.weight_bytes_per_step() / 1e9;
  moshi::SamplingOptions so;  // the reference's defaults: top-k sampling for text and audio
  const int nu = lm.user_codebooks();
  std::vector<LmRun> runs;
  for (int B : batches)
    for (const std::string& ctx : contexts) {
      LmRun r;
      r.batch = B;
      r.context = ctx;
      r.context_steps = ctx == "full" ? lm.context() : 0;
      std::fprintf(stderr, "batch %d, %s context ...\n", B, ctx.c_str());
      moshi::LmGenerator gen = lm.generator(B, so, 1);
      if (r.context_steps > 0) gen.skip_context(r.context_steps);
      std::vector<int64_t> user(static_cast<size_t>(B) * nu), out;
      std::vector<uint8_t> ready;
      std::vector<double> tt, td, ta, ti;
      moshi::LmStepTimings first;
      for (int s = 0; s < 1 + warmup + steps; ++s) {
        for (size_t i = 0; i < user.size(); ++i) user[i] = static_cast<int64_t>((s * 7919 + i * 104729) % lm.card());
        gen.step(user, &out, &ready);
        const moshi::LmStepTimings t = gen.last_timings();
        if (s == 0) {
          first = t;
        } else if (s > warmup) {
          tt.push_back(t.temporal_ms);
          td.push_back(t.depformer_ms);
          ta.push_back(t.total_ms);
          ti.push_back(t.issue_ms);
        }
      }
      r.issue = summarize(ti, first.issue_ms);
      r.temporal = summarize(tt, first.temporal_ms);
      r.depformer = summarize(td, first.depformer_ms);
      r.step = summarize(ta, first.total_ms);
      runs.push_back(r);
    }
  // What a step must read: every weight once, plus each stream's KV cache over its window.
  auto read_gb = [&](const LmRun& r) {
    const double window = static_cast<double>(r.context_steps > 0 ? r.context_steps : 1);
    return weight_gb + r.batch * window * lm.kv_bytes_per_position() / 1e9;
  };
  const int bw_threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (a.flag("json")) {
    std::string js;
    for (const LmRun& r : runs) {
      const double gb = read_gb(r), gbps = gb / (r.step.median / 1000);
      char buf[768];
      std::snprintf(buf, sizeof buf,
                    "%s{\"batch\":%d,\"context\":\"%s\",\"context_steps\":%lld,\"temporal_ms\":%s,"
                    "\"depformer_ms\":%s,\"step_ms\":%s,\"issue_ms\":%s,\"read_gb_per_step\":%.3f,\"read_gbps\":%.1f,"
                    "\"bandwidth_fraction\":%.2f,\"floor_ms\":%.3f}",
                    js.empty() ? "" : ",", r.batch, r.context.c_str(), static_cast<long long>(r.context_steps),
                    stats_json(r.temporal).c_str(), stats_json(r.depformer).c_str(), stats_json(r.step).c_str(),
                    stats_json(r.issue).c_str(), gb,
                    gbps, bw > 0 ? gbps / bw : 0.0, bw > 0 ? gb / bw * 1000 : 0.0);
      js += buf;
    }
    std::printf(
        "{\"bench\":\"lm\",\"machine\":\"%s\",\"model\":\"%s\",\"device\":\"%s\",\"backend\":\"%s\","
        "\"threads\":%d,\"steps\":%d,\"load_s\":%.1f,\"weight_gb_per_step\":%.3f,\"mem_read_gbps\":%.1f,"
        "\"runs\":[%s]}\n",
        moshi::machine_description().c_str(), a.str("model").c_str(), o.device.c_str(), lm.describe().c_str(),
        bw_threads, steps, load_s, weight_gb, bw, js.c_str());
    return 0;
  }
  std::printf("lm bench on %s: %s, %d steps after %d warm-up; memory read bandwidth in this run %.1f GB/s\n",
              moshi::machine_description().c_str(), lm.describe().c_str(), steps, warmup, bw);
  for (const LmRun& r : runs) {
    const double gb = read_gb(r), gbps = gb / (r.step.median / 1000);
    std::printf("batch %d, %s context (%lld steps):\n", r.batch, r.context.c_str(),
                static_cast<long long>(r.context_steps));
    std::printf("  %-10s %10s %10s %10s   (ms per step)\n", "stage", "median", "p90", "first");
    std::printf("  %-10s %10.2f %10.2f %10.2f\n", "temporal", r.temporal.median, r.temporal.p90, r.temporal.first);
    std::printf("  %-10s %10.2f %10.2f %10.2f\n", "depformer", r.depformer.median, r.depformer.p90,
                r.depformer.first);
    std::printf("  %-10s %10.2f %10.2f %10.2f\n", "total", r.step.median, r.step.p90, r.step.first);
    std::printf("  %-10s %10.2f %10.2f %10.2f   (host time issuing the work, part of the total)\n", "issue",
                r.issue.median, r.issue.p90, r.issue.first);
    std::printf("  reads %.2f GB per step -> %.1f GB/s (%.0f%% of the measured bandwidth; floor %.2f ms)\n", gb, gbps,
                bw > 0 ? 100 * gbps / bw : 0.0, bw > 0 ? gb / bw * 1000 : 0.0);
  }
  return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  const std::string what = argc >= 2 ? argv[1] : "";
  if (what == "mimi") return bench_mimi(argc, argv);
  if (what == "lm") return bench_lm(argc, argv);
  if (what.empty() || what == "--help" || what == "-h") {
    std::printf("usage: moshi-rt bench <mimi|lm> [options]   (moshi-rt bench mimi --help, bench lm --help)\n");
    return what.empty() ? 2 : 0;
  }
  throw moshi::Error("unknown benchmark '" + what + "' (available: mimi, lm)");
}
