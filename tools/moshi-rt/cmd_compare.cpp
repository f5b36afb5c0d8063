// moshi-rt compare: the same input through two device:dtype configurations, stage by stage.
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "moshi/compare.h"

int cmd_compare(int argc, char** argv) {
  cli::Args a("moshi-rt compare --input IN [--model M] [--a cpu:f32] [--b cuda:bf16] [options]",
              "Runs the same input through two DEVICE:DTYPE configurations (dtype of the LM matrices: f32,\n"
              "bf16 or auto) and reports, per stage (Mimi codes, LM text logits, text and audio tokens,\n"
              "decoded audio), the first step where they part beyond the tolerance, the largest errors, the\n"
              "token agreement and the sha256 of both outputs. --dump DIR also writes every layer's\n"
              "activations of both runs and names the first one that differs. Exit status 0 when they agree,\n"
              "3 when they diverge.",
              {{"model", "SPEC", "model directory, repo id or synthetic:*", "synthetic:tiny"},
               {"input", "PATH", "input audio (required)", ""},
               {"a", "DEVICE:DTYPE", "first configuration", "cpu:f32"},
               {"b", "DEVICE:DTYPE", "second configuration", "cpu:f32"},
               {"steps", "N", "frames to run (0 = the whole input)", "0"},
               {"seed", "N", "sampling seed (the same for both)", "0"},
               {"greedy", "", "argmax decoding", ""},
               {"temp", "T", "audio temperature", "0.8"},
               {"temp-text", "T", "text temperature", "0.7"},
               {"top-k", "K", "audio top-k", "250"},
               {"top-k-text", "K", "text top-k", "25"},
               {"threads", "N", "CPU threads (0 = all cores)", "0"},
               {"dump", "DIR", "write a.safetensors and b.safetensors of per-layer activations", ""}},
              0, 0);
  if (!a.parse(argc, argv, 1)) return 0;
  if (!a.given("input")) throw moshi::Error("--input is required");
  moshi::CompareOptions o;
  o.model = a.str("model");
  o.input = a.str("input");
  o.a = a.str("a");
  o.b = a.str("b");
  o.steps = a.integer("steps", 0, 1 << 30);
  o.seed = static_cast<uint64_t>(a.integer("seed", 0, 2147483647));
  o.sampling.greedy = a.flag("greedy");
  o.sampling.temp = static_cast<float>(a.number("temp", 0, 100));
  o.sampling.temp_text = static_cast<float>(a.number("temp-text", 0, 100));
  o.sampling.top_k = a.integer("top-k", 0, 1 << 20);
  o.sampling.top_k_text = a.integer("top-k-text", 0, 1 << 20);
  o.threads = a.integer("threads", 0, 1024);
  o.dump_dir = a.str("dump");
  const moshi::CompareReport r = moshi::compare_runs(o);
  std::printf("compare %s vs %s on %s, %lld steps\n", o.a.c_str(), o.b.c_str(), o.model.c_str(),
              static_cast<long long>(r.steps));
  for (const auto& s : r.stages) {
    char first[32] = "-";
    if (s.first_divergence >= 0) std::snprintf(first, sizeof first, "%lld", static_cast<long long>(s.first_divergence));
    char agree[32] = "";
    if (s.stage.find("tokens") != std::string::npos || s.stage.find("codes") != std::string::npos)
      std::snprintf(agree, sizeof agree, "agreement %6.2f%%  ", 100 * s.agreement);
    std::printf("  %-5s %-15s first divergence at step %-5s max abs %-10.3g max rel %-10.3g %s[%s]\n",
                s.agree ? "ok" : "DIFF", s.stage.c_str(), first, s.max_abs, s.max_rel, agree, s.rule.c_str());
  }
  std::printf("  sha256 a %s\n  sha256 b %s\n", r.sha256_a.c_str(), r.sha256_b.c_str());
  if (!o.dump_dir.empty()) {
    std::printf("  activations written to %s/a.safetensors and %s/b.safetensors\n", o.dump_dir.c_str(),
                o.dump_dir.c_str());
    std::printf("  first differing activation: %s\n", r.first_activation.empty() ? "none" : r.first_activation.c_str());
  }
  std::printf("%s\n", r.agree() ? "AGREE" : "DIVERGE");
  return r.agree() ? 0 : 3;
}
