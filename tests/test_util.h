// Helpers shared by the tests: golden-case discovery and running the CLI.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moshi/verify.h"

namespace testutil {

inline std::string golden_dir() { return MOSHI_GOLDEN_DIR; }
inline bool have_golden() { return std::filesystem::is_directory(golden_dir()); }

// Case folders of the given kind ("mimi", "lm") under the golden directory, sorted.
inline std::vector<std::string> golden_cases(const std::string& kind) {
  std::vector<std::string> out;
  if (!have_golden()) return out;
  for (const auto& e : std::filesystem::directory_iterator(golden_dir())) {
    const auto cfg = e.path() / "config.json";
    if (!std::filesystem::exists(cfg)) continue;
    std::ifstream f(cfg);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.find("\"kind\": \"" + kind + "\"") != std::string::npos ||
        text.find("\"kind\":\"" + kind + "\"") != std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Verifies one golden case folder and fails the test on every check outside its rule.
inline void expect_case_passes(const std::string& dir, const moshi::VerifyOptions& opts = {}) {
  const moshi::VerifyReport r = moshi::verify_case(dir, opts);
  for (const moshi::VerifyCheck& c : r.checks)
    EXPECT_TRUE(c.pass) << dir << ": " << c.tensor << " (" << c.rule << "): " << c.mismatches << " of " << c.compared
                        << " outside, max abs " << c.max_abs << " " << c.note;
  EXPECT_TRUE(r.passed()) << dir;
  std::printf("[ golden   ] %s on %s: %s\n", dir.c_str(), opts.device.c_str(), r.passed() ? "passed" : "FAILED");
}

struct RunResult {
  int status = -1;
  std::string out, err;
};

// Runs the moshi-rt binary with `args` (a shell-quoted string), capturing stdout and stderr;
// `env` ("NAME=value ...") is set for that run only.
inline RunResult run_cli(const std::string& args, const std::string& env = "") {
  static int n = 0;
  const std::string base = testing::TempDir() + "moshi_cli_" + std::to_string(getpid()) + "_" + std::to_string(n++);
  const std::string cmd =
      (env.empty() ? "" : "env " + env + " ") + std::string(MOSHI_RT_BIN) + " " + args + " >" + base + ".out 2>" + base + ".err";
  RunResult r;
  const int rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  return r;
}

// Runs a shell command, returning its exit status (so no result is silently ignored).
inline int sh(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace testutil
