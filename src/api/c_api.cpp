// The C API over the C++ API: exceptions become status codes plus a thread-local message.
#include "moshi/moshi.h"

#include <cstring>
#include <new>
#include <string>

#include "moshi/mimi.h"
#include "moshi/model.h"

struct moshi_model {
  moshi::Model m;
};
struct moshi_session {
  moshi::Session s;
  std::vector<float> audio;  // pulled from the session, not yet handed out
  std::string text;
};
struct moshi_mimi {
  moshi::Mimi m;
};

namespace {

thread_local std::string t_error;

moshi_status set_error(moshi_status st, const std::string& msg) {
  t_error = msg;
  return st;
}

// Runs fn, mapping C++ failures to status codes.
template <typename F>
moshi_status guard(F&& fn) {
  try {
    fn();
    return MOSHI_OK;
  } catch (const moshi::Error& e) {
    return set_error(MOSHI_ERROR, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(MOSHI_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(MOSHI_ERROR, e.what());
  }
}

#define MOSHI_REQUIRE(cond, what) \
  if (!(cond)) return set_error(MOSHI_ERROR_INVALID_ARGUMENT, what)

}  // namespace

extern "C" {

const char* moshi_last_error(void) { return t_error.c_str(); }
const char* moshi_version(void) { return MOSHI_RT_VERSION; }

moshi_status moshi_model_load(const char* spec, const char* device, int threads, moshi_model** out) {
  MOSHI_REQUIRE(spec && out, "moshi_model_load: spec and out must not be NULL");
  *out = nullptr;
  return guard([&] {
    moshi::ModelOptions o;
    o.device = device ? device : "cpu";
    o.threads = threads;
    *out = new moshi_model{moshi::Model::load(spec, o)};
  });
}

void moshi_model_free(moshi_model* model) { delete model; }
int moshi_model_sample_rate(const moshi_model* model) { return model ? model->m.sample_rate() : 0; }
int moshi_model_frame_size(const moshi_model* model) { return model ? model->m.frame_size() : 0; }

moshi_status moshi_session_create(const moshi_model* model, uint64_t seed, const moshi_sampling* sampling,
                                  moshi_session** out) {
  MOSHI_REQUIRE(model && out, "moshi_session_create: model and out must not be NULL");
  *out = nullptr;
  return guard([&] {
    moshi::SessionOptions so;
    so.seed = seed;
    so.sampling = model->m.default_sampling();
    if (sampling) {
      so.sampling.greedy = sampling->greedy != 0;
      if (sampling->temp > 0) so.sampling.temp = sampling->temp;
      if (sampling->temp_text > 0) so.sampling.temp_text = sampling->temp_text;
      if (sampling->top_k > 0) so.sampling.top_k = sampling->top_k;
      if (sampling->top_k_text > 0) so.sampling.top_k_text = sampling->top_k_text;
    }
    *out = new moshi_session{model->m.session(so), {}, {}};
  });
}

void moshi_session_free(moshi_session* session) { delete session; }

moshi_status moshi_session_push(moshi_session* session, const float* pcm, size_t n, int* frames) {
  MOSHI_REQUIRE(session && (pcm || n == 0), "moshi_session_push: session and pcm must not be NULL");
  return guard([&] {
    const int f = session->s.push_audio(pcm, n);
    if (frames) *frames = f;
  });
}

moshi_status moshi_session_pull_audio(moshi_session* session, float* out, size_t capacity, size_t* written) {
  MOSHI_REQUIRE(session && written && (out || capacity == 0), "moshi_session_pull_audio: NULL argument");
  return guard([&] {
    session->s.pull_audio(session->audio);
    const size_t n = std::min(capacity, session->audio.size());
    std::memcpy(out, session->audio.data(), n * sizeof(float));
    session->audio.erase(session->audio.begin(), session->audio.begin() + n);
    *written = n;
  });
}

moshi_status moshi_session_pull_text(moshi_session* session, char* out, size_t capacity, size_t* written) {
  MOSHI_REQUIRE(session && written && out && capacity > 0, "moshi_session_pull_text: NULL argument or no room");
  return guard([&] {
    for (const auto& p : session->s.pull_text()) session->text += p.text;
    size_t n = std::min(capacity - 1, session->text.size());
    while (n > 0 && n < session->text.size() && (static_cast<unsigned char>(session->text[n]) & 0xC0) == 0x80)
      --n;  // do not split a UTF-8 sequence
    std::memcpy(out, session->text.data(), n);
    out[n] = '\0';
    session->text.erase(0, n);
    *written = n;
  });
}

moshi_status moshi_session_reset(moshi_session* session) {
  MOSHI_REQUIRE(session, "moshi_session_reset: session must not be NULL");
  return guard([&] {
    session->s.reset();
    session->audio.clear();
    session->text.clear();
  });
}

moshi_status moshi_mimi_load(const char* spec, const char* device, int threads, int num_codebooks,
                             moshi_mimi** out) {
  MOSHI_REQUIRE(spec && out, "moshi_mimi_load: spec and out must not be NULL");
  *out = nullptr;
  return guard([&] {
    moshi::MimiOptions o;
    o.device = device ? device : "cpu";
    o.threads = threads;
    o.num_codebooks = num_codebooks;
    *out = new moshi_mimi{moshi::Mimi::load(spec, o)};
  });
}

void moshi_mimi_free(moshi_mimi* mimi) { delete mimi; }
int moshi_mimi_num_codebooks(const moshi_mimi* mimi) { return mimi ? mimi->m.num_codebooks() : 0; }
int moshi_mimi_frame_size(const moshi_mimi* mimi) { return mimi ? mimi->m.frame_size() : 0; }

moshi_status moshi_mimi_encode(moshi_mimi* mimi, const float* pcm, size_t n, int64_t* codes, size_t capacity,
                               int64_t* frames) {
  MOSHI_REQUIRE(mimi && pcm && codes && frames && n > 0, "moshi_mimi_encode: NULL argument or no samples");
  return guard([&] {
    int64_t T = 0;
    const std::vector<int64_t> c = mimi->m.encode(std::vector<float>(pcm, pcm + n), &T);
    if (c.size() > capacity)
      throw moshi::Error("moshi_mimi_encode: " + std::to_string(c.size()) + " codes do not fit a buffer of " +
                         std::to_string(capacity));
    std::memcpy(codes, c.data(), c.size() * sizeof(int64_t));
    *frames = T;
  });
}

moshi_status moshi_mimi_decode(moshi_mimi* mimi, const int64_t* codes, int num_codebooks, int64_t frames,
                               float* pcm, size_t capacity, size_t* written) {
  MOSHI_REQUIRE(mimi && codes && pcm && written && num_codebooks > 0 && frames > 0,
                "moshi_mimi_decode: NULL argument or empty codes");
  return guard([&] {
    const size_t need = static_cast<size_t>(frames) * mimi->m.frame_size();
    if (need > capacity)
      throw moshi::Error("moshi_mimi_decode: " + std::to_string(need) + " samples do not fit a buffer of " +
                         std::to_string(capacity));
    const std::vector<float> y = mimi->m.decode(
        std::vector<int64_t>(codes, codes + static_cast<size_t>(num_codebooks) * frames), num_codebooks, frames);
    std::memcpy(pcm, y.data(), y.size() * sizeof(float));
    *written = y.size();
  });
}

}  // extern "C"
