// A backend decorator that corrupts one op's output, for testing that `compare --dump` and
// `doctor` pinpoint a broken op. Reached only through a device spec with a "!fault:" suffix,
// e.g. "cpu!fault:rms_norm@5" (the 6th rms_norm call) or "cpu!fault:attention@*" (every call);
// never through the environment.
#pragma once
#include <memory>
#include <string>

#include "runtime/backend.h"

namespace moshi {

// Splits "DEVICE!fault:OP@N" into the device and the fault; returns false if there is none.
bool parse_fault_spec(const std::string& spec, std::string* device, std::string* op, int64_t* call);

std::shared_ptr<Backend> make_faulty_backend(std::shared_ptr<Backend> inner, const std::string& op, int64_t call);

}  // namespace moshi
