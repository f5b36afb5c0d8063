// moshi-rt public API: check every op family of a device against plain reference code
// (`moshi-rt doctor`), so a broken backend is caught before anyone hears it.
#pragma once
#include <string>
#include <vector>

namespace moshi {

struct DoctorCheck {
  std::string device, family;
  bool pass = false;
  double max_err = 0, tolerance = 0;
  std::string detail;  // shape used, or the error a failing op raised
};

// Devices this build and machine can run: "cpu", and "cuda" when a GPU is usable.
std::vector<std::string> available_devices();

// Runs every op family (matrix products in f32 and bf16, convolutions, norms, activations,
// RoPE, attention, embeddings, vector quantisation) at Moshi's shapes on each device and
// compares with straightforward reference code; then the tiny synthetic model end to end
// against the CPU.
std::vector<DoctorCheck> run_doctor(const std::vector<std::string>& devices, int threads = 0);

}  // namespace moshi
