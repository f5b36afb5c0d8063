/* moshi-rt C API: plain C over the C++ API, for any language with a C FFI.
 * Opaque handles; every function returns a moshi_status; on failure moshi_last_error() gives
 * a one-line message (per thread, valid until the next failing call on that thread). */
#ifndef MOSHI_MOSHI_H
#define MOSHI_MOSHI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MOSHI_OK = 0,
  MOSHI_ERROR_INVALID_ARGUMENT = 1, /* a null handle or pointer, a bad size */
  MOSHI_ERROR = 2,                  /* any other failure (bad file, bad input, device error) */
  MOSHI_ERROR_OUT_OF_MEMORY = 3
} moshi_status;

typedef struct moshi_model moshi_model;
typedef struct moshi_session moshi_session;
typedef struct moshi_mimi moshi_mimi;

typedef struct {
  int greedy;                  /* non-zero: argmax decoding */
  float temp, temp_text;       /* <= 0 means "the model's default" */
  int top_k, top_k_text;       /* <= 0 means "the model's default" */
} moshi_sampling;

const char* moshi_last_error(void);
const char* moshi_version(void);

/* Models: spec is a model directory, a Hugging Face repo id, "synthetic:tiny" or
 * "synthetic:moshi-7b". device: "cpu" (NULL = "cpu"); threads: 0 = all cores. */
moshi_status moshi_model_load(const char* spec, const char* device, int threads, moshi_model** out);
void moshi_model_free(moshi_model* model);
int moshi_model_sample_rate(const moshi_model* model);
int moshi_model_frame_size(const moshi_model* model);

/* Sessions: one conversation. sampling may be NULL (the model's defaults). */
moshi_status moshi_session_create(const moshi_model* model, uint64_t seed, const moshi_sampling* sampling,
                                  moshi_session** out);
void moshi_session_free(moshi_session* session);
/* Feeds user audio (mono, model rate, any length); *frames (may be NULL) gets the number of
 * model frames that became available. */
moshi_status moshi_session_push(moshi_session* session, const float* pcm, size_t n, int* frames);
/* Copies up to `capacity` samples of model audio out; *written gets how many (the rest stays). */
moshi_status moshi_session_pull_audio(moshi_session* session, float* out, size_t capacity, size_t* written);
/* Copies the text produced since the last call as a NUL-terminated UTF-8 string (truncated at
 * a character boundary to fit `capacity`; the rest stays); *written gets the bytes copied. */
moshi_status moshi_session_pull_text(moshi_session* session, char* out, size_t capacity, size_t* written);
moshi_status moshi_session_reset(moshi_session* session);

/* Mimi alone: spec is a checkpoint path or "synthetic"; num_codebooks 0 = 8. */
moshi_status moshi_mimi_load(const char* spec, const char* device, int threads, int num_codebooks,
                             moshi_mimi** out);
void moshi_mimi_free(moshi_mimi* mimi);
int moshi_mimi_num_codebooks(const moshi_mimi* mimi);
int moshi_mimi_frame_size(const moshi_mimi* mimi);
/* Encodes n samples (zero-padded to whole frames) into codes [K, T] row-major; `codes` holds
 * `capacity` values; *frames gets T. Fails (nothing written) if K·T exceeds capacity. */
moshi_status moshi_mimi_encode(moshi_mimi* mimi, const float* pcm, size_t n, int64_t* codes, size_t capacity,
                               int64_t* frames);
/* Decodes codes [K, T] into T·frame_size samples; fails if that exceeds capacity. */
moshi_status moshi_mimi_decode(moshi_mimi* mimi, const int64_t* codes, int num_codebooks, int64_t frames,
                               float* pcm, size_t capacity, size_t* written);

#ifdef __cplusplus
}
#endif

#endif /* MOSHI_MOSHI_H */
