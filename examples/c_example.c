/* moshi-rt from C: Mimi round trip of a synthetic tone, then a few steps of a conversation.
 *   c_example [MODEL]   (default: synthetic:tiny, random weights) */
#include <math.h>
#include <stdio.h>

#include "moshi/moshi.h"

int main(int argc, char** argv) {
  const char* spec = argc > 1 ? argv[1] : "synthetic:tiny";
  moshi_model* model = NULL;
  if (moshi_model_load(spec, "cpu", 0, &model) != MOSHI_OK) {
    fprintf(stderr, "error: %s\n", moshi_last_error());
    return 1;
  }
  moshi_session* session = NULL;
  if (moshi_session_create(model, 42, NULL, &session) != MOSHI_OK) {
    fprintf(stderr, "error: %s\n", moshi_last_error());
    return 1;
  }
  static float in[1920 * 10], out[1920 * 10];
  for (int i = 0; i < 1920 * 10; ++i) in[i] = 0.3f * sinf(2.0f * 3.14159265f * 220.0f * i / 24000.0f);
  int frames = 0;
  size_t got = 0, text_len = 0;
  char text[1024];
  moshi_session_push(session, in, 1920 * 10, &frames);
  moshi_session_pull_audio(session, out, 1920 * 10, &got);
  moshi_session_pull_text(session, text, sizeof text, &text_len);
  printf("%d frames, %zu samples of answer, text: %s\n", frames, got, text);
  moshi_session_free(session);
  moshi_model_free(model);
  return 0;
}
