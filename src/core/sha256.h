// SHA-256 (FIPS 180-4). Used to verify downloaded Hugging Face LFS blobs, whose etag is the
// SHA-256 of the content, and to fingerprint weight files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace moshi {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // Finishes the hash and returns it as 64 lowercase hex characters. The object is reset
  // afterwards, so it can hash a new message.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);
  void reset();

  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Hash of a whole file, read in chunks; throws moshi::Error if it cannot be opened or read.
std::string sha256_file(const std::string& path);
std::string sha256_hex(const void* data, size_t size);

}  // namespace moshi
