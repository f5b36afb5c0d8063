// moshi-rt doctor: every op family of every device against reference code.
#include <cstdio>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "moshi/doctor.h"

int cmd_doctor(int argc, char** argv) {
  cli::Args a("moshi-rt doctor [--device D[,D...]] [--threads N]",
              "Checks every op family (matrix products in f32 and bf16, convolutions, norms, activations,\n"
              "RoPE + attention, embeddings, vector quantisation) on each device against plain reference code\n"
              "at Moshi's shapes, then the tiny synthetic model end to end against the CPU. Prints PASS or\n"
              "FAIL per family with the error; exit status 0 only if everything passes.",
              {{"device", "LIST", "devices to check (default: every available one)", ""},
               {"threads", "N", "CPU threads (0 = all cores)", "0"}},
              0, 0);
  if (!a.parse(argc, argv, 1)) return 0;
  std::vector<std::string> devices;
  if (a.given("device")) {
    std::stringstream ss(a.str("device"));
    for (std::string d; std::getline(ss, d, ',');)
      if (!d.empty()) devices.push_back(d);
  } else {
    devices = moshi::available_devices();
  }
  const auto checks = moshi::run_doctor(devices, a.integer("threads", 0, 1024));
  int failed = 0;
  for (const auto& c : checks) {
    failed += !c.pass;
    std::printf("%-4s %-8s %-42s max error %-10.3g tolerance %-8.3g %s\n", c.pass ? "PASS" : "FAIL", c.device.c_str(),
                c.family.c_str(), c.max_err, c.tolerance, c.detail.c_str());
  }
  std::printf("%zu passed, %d failed\n", checks.size() - failed, failed);
  return failed ? 1 : 0;
}
