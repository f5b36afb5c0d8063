// moshi-rt public API: the Mimi audio codec (24 kHz mono audio <-> 12.5 Hz integer codes).
// No CUDA or third-party headers; every failure throws moshi::Error with a one-line message.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moshi/error.h"

namespace moshi {

struct MimiOptions {
  std::string device = "cpu";
  int threads = 0;         // CPU worker threads; 0 = all cores
  int num_codebooks = 0;   // codebooks emitted by encode; 0 = 8 (Moshi's), capped at the model's total
  uint64_t seed = 0;       // synthetic weights only
  std::string config_json; // mimi_config JSON text; empty = the released Mimi's configuration
};

class MimiEncoder;
class MimiDecoder;

class Mimi {
 public:
  // `spec` is a path to a Mimi safetensors checkpoint, or "synthetic" for the real shapes with
  // seeded random weights (for offline use and benchmarks: it makes no meaningful audio).
  static Mimi load(const std::string& spec, const MimiOptions& opts = {});

  int sample_rate() const;
  int frame_size() const;       // samples per code frame (1920)
  double frame_rate() const;    // code frames per second (12.5)
  int num_codebooks() const;    // codebooks encode() emits
  int total_codebooks() const;  // codebooks the checkpoint has
  int cardinality() const;      // entries per codebook
  bool synthetic() const;
  std::string describe() const; // one line: source, device, threads
  // Arithmetic one code frame costs (2 flops per multiply-add), from the architecture.
  double encode_flops_per_frame() const;
  double decode_flops_per_frame() const;
  // Bytes of all weights (f32 as held); encode + decode of a frame read at most this much.
  double weight_bytes() const;
  // Read bandwidth of the memory the weights live in (GB/s), measured now: the device's for a
  // GPU, main memory (with the codec's threads) for the CPU.
  double measure_read_bandwidth_gbps() const;

  // Streaming coders over `batch` independent streams.
  MimiEncoder encoder(int batch = 1) const;
  MimiDecoder decoder(int batch = 1) const;

  // Whole-signal helpers: right-pad to whole frames with zeros and stream frame by frame.
  // encode: mono pcm -> codes [num_codebooks, T] row-major. decode: codes [K, T] -> pcm (1920·T).
  std::vector<int64_t> encode(const std::vector<float>& pcm, int64_t* frames = nullptr) const;
  std::vector<float> decode(const std::vector<int64_t>& codes, int K, int64_t T) const;

  struct Impl;
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Streaming encoder: feed whole frames (any number per call); state persists across calls.
class MimiEncoder {
 public:
  // pcm: `batch` streams of n samples each, laid out [batch, n]; n a positive multiple of
  // frame_size(). Returns codes [batch, K, n / frame_size()].
  std::vector<int64_t> encode(const float* pcm, int64_t n);
  void reset();            // all streams back to their initial state
  void reset(int stream);  // one stream
  int batch() const;
  ~MimiEncoder();
  MimiEncoder(MimiEncoder&&) noexcept;
  MimiEncoder& operator=(MimiEncoder&&) noexcept;

 private:
  friend class Mimi;
  struct State;
  explicit MimiEncoder(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

class MimiDecoder {
 public:
  // codes [batch, K, T] with 1 <= K <= total_codebooks(). Returns pcm [batch, T·frame_size()].
  std::vector<float> decode(const int64_t* codes, int K, int64_t T);
  void reset();
  void reset(int stream);
  int batch() const;
  ~MimiDecoder();
  MimiDecoder(MimiDecoder&&) noexcept;
  MimiDecoder& operator=(MimiDecoder&&) noexcept;

 private:
  friend class Mimi;
  struct State;
  explicit MimiDecoder(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace moshi
