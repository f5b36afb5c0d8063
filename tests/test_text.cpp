// Text tokens: a SentencePiece model the test trains itself (spm_train, Debian's sentencepiece).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "moshi/text.h"
#include "test_util.h"

using namespace moshi;

namespace {
// Trains once per run; returns the model path or "" if spm_train is unavailable.
std::string trained_model() {
  static std::string path = [] {
    const std::string dir = testing::TempDir() + "moshi_spm_" + std::to_string(getpid());
    if (testutil::sh("mkdir -p " + dir) != 0) return std::string();
    std::ofstream corpus(dir + "/corpus.txt");
    for (int i = 0; i < 200; ++i)
      corpus << "hello world this is moshi speaking " << i % 7 << "\nthe quick brown fox jumps over the lazy dog\n";
    corpus.close();
    const std::string cmd = "spm_train --input=" + dir + "/corpus.txt --model_prefix=" + dir +
                            "/m --vocab_size=40 --model_type=unigram --hard_vocab_limit=false --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 --minloglevel=2 >/dev/null 2>&1";
    return testutil::sh(cmd) == 0 ? dir + "/m.model" : std::string();
  }();
  return path;
}
}  // namespace

TEST(TextTokenizer, RendersPiecesLikeTheReference) {
  const std::string model = trained_model();
  ASSERT_FALSE(model.empty()) << "spm_train failed (is Debian's sentencepiece installed?)";
  TextTokenizer t = TextTokenizer::load(model);
  EXPECT_GE(t.vocab_size(), 20);
  const std::vector<int> ids = t.encode("hello world the lazy dog");
  ASSERT_FALSE(ids.empty());
  std::vector<int64_t> seq;
  for (int id : ids) {
    seq.push_back(3);  // padding between words is silent
    seq.push_back(id);
  }
  seq.push_back(0);  // so is the end-of-padding id (unk here: never produced by encode)
  EXPECT_EQ(t.transcript(seq), "hello world the lazy dog");
  // A piece that starts a word renders with a leading space.
  bool saw_space = false;
  for (int id : ids) saw_space |= !t.token_text(id).empty() && t.token_text(id)[0] == ' ';
  EXPECT_TRUE(saw_space);
  EXPECT_EQ(t.token_text(3), "");
  EXPECT_EQ(t.token_text(0), "");
  EXPECT_THROW(t.piece(t.vocab_size()), Error);
  EXPECT_THROW(t.piece(-5), Error);
}

TEST(TextTokenizer, BadFilesGiveOneLineErrors) {
  EXPECT_THROW(TextTokenizer::load("/nonexistent/tokenizer.model"), Error);
  const std::string bad = testing::TempDir() + "not_a_model_" + std::to_string(getpid()) + ".model";
  std::ofstream(bad) << "definitely not a protobuf";
  try {
    TextTokenizer::load(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("not a SentencePiece model"), std::string::npos);
  }
}
