// Stages recorded as CUDA graphs (Backend::stage_begin). A stage's first run is eager and
// measures what one run stages and launches; the second is captured into a graph whose first
// node copies the stage's page-locked host arena (positions, ids, steps) to the device; later
// runs execute no op at all: each op only writes its host arrays into the arena, and stage_end
// launches the graph. A run that launches or stages anything different from the recorded one
// fails loudly (the signature compares kernels, launch shapes and host-array sizes), so a
// recording never replays stale work. MOSHI_CUDA_GRAPHS=0 runs every stage eagerly.
#include <cstring>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {

void Impl::forbid_in_stage(const char* what, bool recording_only) const {
  if (mode == Mode::Eager || (recording_only && mode == Mode::Warm)) return;
  fail("cuda: ", what, " inside a stage (its ops must not read results back, wait or allocate between "
       "stage_begin and stage_end)");
}

void Impl::release_stage(Stage& st) {
  if (st.exec) cudaGraphExecDestroy(st.exec);
  if (st.done) cudaEventDestroy(st.done);
  if (st.arena_host) cudaFreeHost(st.arena_host);
  if (st.arena_dev) cudaFree(st.arena_dev);
  st = Stage{};
}

namespace {

// Leaves a stage that an exception interrupted: ends a capture in progress and keeps the stage
// eager from then on.
void abandon(Impl& im) {
  if (im.mode == Mode::Capture) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(im.stream, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
  }
  if (im.active) im.active->eager_only = true;
  im.mode = Mode::Eager;
  im.active = nullptr;
}

}  // namespace
}  // namespace cuda

using cuda::Mode;

int CudaBackend::stage_create() {
  cuda::Impl& im = *impl_;
  const int id = im.next_stage++;
  im.stages[id].eager_only = !im.graphs;
  return id;
}

void CudaBackend::stage_destroy(int id) {
  cuda::Impl& im = *impl_;
  auto it = im.stages.find(id);
  if (it == im.stages.end()) return;
  if (im.active == &it->second) cuda::abandon(im);
  cudaSetDevice(im.dev);
  if (it->second.done) cudaEventSynchronize(it->second.done);
  im.release_stage(it->second);
  im.stages.erase(it);
}

void CudaBackend::stage_abort(int id) {
  cuda::Impl& im = *impl_;
  auto it = im.stages.find(id);
  if (it == im.stages.end() || im.active != &it->second) return;
  cudaSetDevice(im.dev);
  cuda::abandon(im);
}

void CudaBackend::stage_begin(int id) {
  impl_->enter(__func__);
  cuda::Impl& im = *impl_;
  if (im.mode != Mode::Eager) cuda::abandon(im);  // the previous stage never ended (an error)
  auto it = im.stages.find(id);
  MOSHI_CHECK(it != im.stages.end(), "cuda: stage ", id, " does not exist");
  cuda::Stage& st = it->second;
  if (st.eager_only) return;
  im.active = &st;
  im.cursor = 0;
  im.signature = 0xcbf29ce484222325ull;
  const char* op = "stage";
  if (st.runs == 0) {
    im.mode = Mode::Warm;
    return;
  }
  if (!st.exec) {
    // Second run: record it. The arena is sized by the first run.
    const size_t bytes = st.arena_bytes < 256 ? 256 : st.arena_bytes;
    MOSHI_CUDA_CHECK(op, cudaHostAlloc(reinterpret_cast<void**>(&st.arena_host), bytes, cudaHostAllocDefault));
    MOSHI_CUDA_CHECK(op, cudaMalloc(reinterpret_cast<void**>(&st.arena_dev), bytes));
    MOSHI_CUDA_CHECK(op, cudaEventCreateWithFlags(&st.done, cudaEventDisableTiming));
    MOSHI_CUDA_CHECK(op, cudaStreamBeginCapture(im.stream, cudaStreamCaptureModeThreadLocal));
    im.mode = Mode::Capture;
    MOSHI_CUDA_CHECK(op, cudaMemcpyAsync(st.arena_dev, st.arena_host, st.arena_bytes, cudaMemcpyHostToDevice,
                                         im.stream));
    return;
  }
  // Later runs: the previous launch must have read the arena before it is rewritten.
  MOSHI_CUDA_CHECK(op, cudaEventSynchronize(st.done));
  im.mode = Mode::Replay;
}

void CudaBackend::stage_end(int id) {
  impl_->enter(__func__);
  cuda::Impl& im = *impl_;
  auto it = im.stages.find(id);
  MOSHI_CHECK(it != im.stages.end(), "cuda: stage ", id, " does not exist");
  cuda::Stage& st = it->second;
  if (im.mode == Mode::Eager) return;
  MOSHI_CHECK(im.active == &st, "cuda: stage_end(", id, ") does not close the stage begun last");
  const char* op = "stage";
  const Mode mode = im.mode;
  const bool same = im.cursor == st.arena_bytes && im.signature == st.signature;
  if (mode == Mode::Warm) {
    st.arena_bytes = im.cursor;
    st.signature = im.signature;
    ++st.runs;
    im.mode = Mode::Eager;
    im.active = nullptr;
    return;
  }
  if (mode == Mode::Capture) {
    cudaGraph_t g = nullptr;
    const cudaError_t e = cudaStreamEndCapture(im.stream, &g);
    im.mode = Mode::Eager;
    im.active = nullptr;
    if (e != cudaSuccess || !same) {
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      st.eager_only = true;
      if (e != cudaSuccess) MOSHI_CUDA_CHECK(op, e);
      fail("cuda: a stage's second run differs from its first (", im.cursor, " vs ", st.arena_bytes,
           " bytes of host arrays, or other launches); it cannot be recorded");
    }
    const cudaError_t ie = cudaGraphInstantiate(&st.exec, g, 0);
    cudaGraphDestroy(g);
    if (ie != cudaSuccess) {
      st.exec = nullptr;
      st.eager_only = true;
      MOSHI_CUDA_CHECK(op, ie);
    }
  } else {  // Replay
    im.mode = Mode::Eager;
    im.active = nullptr;
    MOSHI_CHECK(same, "cuda: a recorded stage ran a different op sequence (", im.cursor, " vs ", st.arena_bytes,
                " bytes of host arrays, or other launches); nothing of it was executed");
  }
  ++st.runs;
  MOSHI_CUDA_CHECK(op, cudaGraphLaunch(st.exec, im.stream));
  MOSHI_CUDA_CHECK(op, cudaEventRecord(st.done, im.stream));
  if (im.sync_each) MOSHI_CUDA_CHECK(op, cudaStreamSynchronize(im.stream));
}

}  // namespace moshi
