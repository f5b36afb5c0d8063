/* The C API, from C: sessions, text, Mimi, and every error path. Prints "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moshi/moshi.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (cond) {                                                                        \
      ++passed;                                                                        \
    } else {                                                                           \
      ++failed;                                                                        \
      fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond,     \
              moshi_last_error());                                                     \
    }                                                                                  \
  } while (0)

static void fill(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = 0.2f * sinf(0.01f * (float)i);
}

/* Runs `frames` frames through a fresh session and returns the audio it produced. */
static size_t run(moshi_session* s, const float* in, size_t n, float* out, size_t cap, char* text, size_t tcap) {
  size_t got = 0, w = 0;
  int frames = 0;
  CHECK(moshi_session_push(s, in, n, &frames) == MOSHI_OK);
  CHECK(frames > 0);
  /* Pull in small pieces: what does not fit stays for the next call. */
  while (moshi_session_pull_audio(s, out + got, cap - got < 1000 ? cap - got : 1000, &w) == MOSHI_OK && w > 0)
    got += w;
  CHECK(moshi_session_pull_text(s, text, tcap, &w) == MOSHI_OK);
  CHECK(strlen(text) == w);
  return got;
}

int main(void) {
  moshi_model* model = NULL;
  CHECK(moshi_model_load("synthetic:tiny", "cpu", 1, &model) == MOSHI_OK && model != NULL);
  if (!model) {
    printf("%d passed, %d failed\n", passed, failed);
    return 1;
  }
  CHECK(moshi_model_sample_rate(model) == 24000);
  CHECK(moshi_model_frame_size(model) == 1920);

  enum { N = 1920 * 5 };
  static float in[N], a[N], b[N];
  static char ta[4096], tb[4096];
  fill(in, N);
  moshi_sampling sampling = {0, 0.9f, 0.0f, 100, 0};
  moshi_session* s = NULL;
  CHECK(moshi_session_create(model, 7, &sampling, &s) == MOSHI_OK);
  const size_t na = run(s, in, N, a, N, ta, sizeof ta);
  CHECK(na == N); /* 5 frames in, 5 out (the first frame is stepped twice) */
  CHECK(moshi_session_reset(s) == MOSHI_OK);
  const size_t nb = run(s, in, N, b, N, tb, sizeof tb);
  CHECK(na == nb && memcmp(a, b, na * sizeof(float)) == 0); /* reset replays exactly */
  CHECK(strcmp(ta, tb) == 0);
  /* Text is truncated to the buffer and the rest kept. */
  char tiny[4];
  size_t w = 0;
  CHECK(moshi_session_reset(s) == MOSHI_OK);
  int frames = 0;
  CHECK(moshi_session_push(s, in, N, &frames) == MOSHI_OK);
  CHECK(moshi_session_pull_text(s, tiny, sizeof tiny, &w) == MOSHI_OK && w <= 3 && strlen(tiny) == w);
  moshi_session_free(s);

  /* Errors: status codes and one-line messages, never a crash. */
  moshi_model* bad = NULL;
  CHECK(moshi_model_load("/nonexistent/model/dir", NULL, 0, &bad) == MOSHI_ERROR && bad == NULL);
  CHECK(strlen(moshi_last_error()) > 0 && strchr(moshi_last_error(), '\n') == NULL);
  CHECK(moshi_model_load(NULL, NULL, 0, &bad) == MOSHI_ERROR_INVALID_ARGUMENT);
  CHECK(moshi_session_create(NULL, 0, NULL, &s) == MOSHI_ERROR_INVALID_ARGUMENT);
  CHECK(moshi_session_push(NULL, in, 10, NULL) == MOSHI_ERROR_INVALID_ARGUMENT);
  CHECK(moshi_model_load("synthetic:tiny", "tpu", 0, &bad) == MOSHI_ERROR);
  moshi_model_free(NULL); /* freeing NULL is a no-op */

  /* Mimi alone. */
  moshi_mimi* mimi = NULL;
  CHECK(moshi_mimi_load("synthetic", NULL, 1, 4, &mimi) == MOSHI_OK);
  if (mimi) {
    CHECK(moshi_mimi_num_codebooks(mimi) == 4);
    int64_t codes[4 * 3], frames64 = 0;
    CHECK(moshi_mimi_encode(mimi, in, 1920 * 2 + 10, codes, 12, &frames64) == MOSHI_OK && frames64 == 3);
    for (int i = 0; i < 12; ++i) CHECK(codes[i] >= 0 && codes[i] < 2048);
    CHECK(moshi_mimi_encode(mimi, in, 1920 * 2 + 10, codes, 11, &frames64) == MOSHI_ERROR);
    static float pcm[1920 * 3];
    size_t got = 0;
    CHECK(moshi_mimi_decode(mimi, codes, 4, 3, pcm, 1920 * 3, &got) == MOSHI_OK && got == 1920 * 3);
    CHECK(moshi_mimi_decode(mimi, codes, 4, 3, pcm, 100, &got) == MOSHI_ERROR);
    codes[0] = 5000; /* out of range */
    CHECK(moshi_mimi_decode(mimi, codes, 4, 3, pcm, 1920 * 3, &got) == MOSHI_ERROR);
    moshi_mimi_free(mimi);
  }
  moshi_model_free(model);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
