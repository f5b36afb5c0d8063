#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include "core/error.h"
#include "moshi/text.h"

namespace moshi {

struct TextTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

TextTokenizer::TextTokenizer() : impl_(std::make_unique<Impl>()) {}
TextTokenizer::~TextTokenizer() = default;
TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;

TextTokenizer TextTokenizer::load(const std::string& path) {
  struct stat st {};
  MOSHI_CHECK(stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode), path, ": text tokenizer not found");
  TextTokenizer t;
  const auto status = t.impl_->sp.Load(path);
  MOSHI_CHECK(status.ok(), path, ": not a SentencePiece model (", status.ToString(), ")");
  return t;
}

int TextTokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

std::string TextTokenizer::piece(int64_t id) const {
  MOSHI_CHECK(id >= 0 && id < vocab_size(), "text token ", id, " is outside the tokenizer's vocabulary of ",
              vocab_size());
  return impl_->sp.IdToPiece(static_cast<int>(id));
}

std::string TextTokenizer::token_text(int64_t id, int64_t pad_id, int64_t end_pad_id) const {
  if (id == pad_id || id == end_pad_id) return "";
  std::string p = piece(id);
  static const std::string kWordStart = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kWordStart.size(), kWordStart) == 0) {
      out.push_back(' ');
      i += kWordStart.size();
    } else {
      out.push_back(p[i++]);
    }
  }
  return out;
}

std::string TextTokenizer::transcript(const std::vector<int64_t>& ids, int64_t pad_id, int64_t end_pad_id) const {
  std::string out;
  for (int64_t id : ids) out += token_text(id, pad_id, end_pad_id);
  if (!out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::vector<int> TextTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = impl_->sp.Encode(text, &ids);
  MOSHI_CHECK(status.ok(), "text encoding failed (", status.ToString(), ")");
  return ids;
}

}  // namespace moshi
