// moshi-rt public API: the LM's text tokens (SentencePiece), rendered the way the reference
// prints them: padding tokens are silent and "▁" word starts become spaces.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moshi/error.h"

namespace moshi {

class TextTokenizer {
 public:
  // Loads a SentencePiece model (e.g. tokenizer_spm_32k_3.model). Throws moshi::Error on a
  // missing or corrupt file.
  static TextTokenizer load(const std::string& path);

  int vocab_size() const;
  std::string piece(int64_t id) const;  // the raw piece; throws on an id outside the vocabulary
  // What a generated token adds to the transcript: "" for the padding ids (pad_id, the
  // end-of-padding/word-start id end_pad_id), otherwise the piece with "▁" turned into " ".
  std::string token_text(int64_t id, int64_t pad_id = 3, int64_t end_pad_id = 0) const;
  // Concatenated token_text over a sequence, with the leading space of the first word dropped.
  std::string transcript(const std::vector<int64_t>& ids, int64_t pad_id = 3, int64_t end_pad_id = 0) const;
  std::vector<int> encode(const std::string& text) const;  // for tests and tools

  TextTokenizer(TextTokenizer&&) noexcept;
  TextTokenizer& operator=(TextTokenizer&&) noexcept;
  ~TextTokenizer();

 private:
  TextTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moshi
