// A CUDA injection library (load it with CUDA_INJECTION64_PATH) that writes the GPU start, the
// duration, the grid size and the name of every kernel the process runs, graph nodes included,
// to $KTRACE_OUT (csv, default ktrace.csv). Used by scripts/trace-gpu.sh: a step recorded as a
// CUDA graph shows up in no per-launch profiler, and ncu times each kernel alone.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace {

FILE* out = nullptr;
std::mutex mu;

void CUPTIAPI give_buffer(uint8_t** buf, size_t* size, size_t* max_records) {
  *size = size_t{16} << 20;
  *buf = static_cast<uint8_t*>(std::aligned_alloc(64, *size));
  *max_records = 0;
}

void CUPTIAPI take_buffer(CUcontext, uint32_t, uint8_t* buf, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(mu);
  CUpti_Activity* rec = nullptr;
  while (out && cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    int status = 0;
    char* plain = abi::__cxa_demangle(k->name, nullptr, nullptr, &status);
    std::string name = status == 0 && plain ? plain : k->name;
    std::free(plain);
    for (char& c : name)
      if (c == '"') c = '\'';
    std::fprintf(out, "%llu,%llu,%u,\"%s\"\n", static_cast<unsigned long long>(k->start),
                 static_cast<unsigned long long>(k->end - k->start), k->gridX * k->gridY * k->gridZ, name.c_str());
  }
  std::free(buf);
}

void finish() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(mu);
  if (out) std::fclose(out);
  out = nullptr;
}

}  // namespace

extern "C" int InitializeInjection(void) {
  const char* path = std::getenv("KTRACE_OUT");
  out = std::fopen(path ? path : "ktrace.csv", "w");
  if (!out) return 0;
  std::fprintf(out, "start_ns,duration_ns,blocks,name\n");
  if (cuptiActivityRegisterCallbacks(give_buffer, take_buffer) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "ktrace: CUPTI refused the kernel activity\n");
    return 0;
  }
  cuptiActivityFlushPeriod(200);
  std::atexit(finish);
  return 1;
}
