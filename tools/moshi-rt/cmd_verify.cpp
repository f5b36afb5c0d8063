// moshi-rt verify CASE_DIR: golden parity for one case folder.
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "moshi/verify.h"

int cmd_verify(int argc, char** argv) {
  cli::Args a("moshi-rt verify CASE_DIR [options]",
              "Runs a golden case folder (config.json, weights.safetensors, io.safetensors) through the engine\n"
              "and compares every output with the reference under the tolerance table. Exit status 0 only if\n"
              "every comparison holds, 3 if any fails.",
              {{"device", "NAME", "compute device", "cpu"},
               {"threads", "N", "CPU threads (0 = all cores)", "0"},
               {"out", "FILE", "also write what the engine produced (safetensors, io tensor names)", ""}},
              1, 1);
  if (!a.parse(argc, argv, 1)) return 0;
  moshi::VerifyOptions o;
  o.device = a.str("device");
  o.threads = a.integer("threads", 0, 1024);
  o.out_path = a.str("out");
  const std::string dir = a.positional()[0];
  moshi::VerifyReport r = moshi::verify_case(dir, o);
  std::printf("case %s (kind %s, device %s)\n", dir.c_str(), r.kind.c_str(), o.device.c_str());
  for (const auto& c : r.checks) {
    std::printf("  %-4s %-20s max_abs %.3g  mismatches %lld/%lld  [%s]%s%s\n", c.pass ? "ok" : "FAIL",
                c.tensor.c_str(), c.max_abs, static_cast<long long>(c.mismatches),
                static_cast<long long>(c.compared), c.rule.c_str(), c.note.empty() ? "" : "  ", c.note.c_str());
  }
  const bool ok = r.passed();
  std::printf("%s: %zu comparisons, %s\n", ok ? "PASS" : "FAIL", r.checks.size(),
              ok ? "all within tolerance" : "some outside tolerance");
  if (!o.out_path.empty()) std::printf("wrote %s\n", o.out_path.c_str());
  return ok ? 0 : 3;
}
