// moshi-rt: one binary, subcommands. A thin layer over the public API.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "commands.h"
#include "moshi/error.h"

namespace {

void usage() {
  std::printf(
      "moshi-rt %s - inference engine for Kyutai's Moshi family\n\n"
      "usage: moshi-rt <command> [options]   (moshi-rt <command> --help for details)\n\n"
      "commands:\n"
      "  run --input IN -o OUT       speech-to-speech: Moshi answers a recorded input\n"
      "  mimi encode IN -o CODES     audio file -> Mimi codes (safetensors)\n"
      "  mimi decode CODES -o OUT    Mimi codes -> 24 kHz WAV\n"
      "  mimi roundtrip IN -o OUT    audio -> codes -> audio\n"
      "  verify CASE_DIR             run a golden case folder and compare with the reference\n"
      "  compare --input IN --a D:T --b D:T   where two device:dtype configurations part\n"
      "  doctor                      check every op of every device against reference code\n"
      "  bench mimi                  time streaming encode + decode per 80 ms frame\n"
      "  bench lm                    time LM steps; weight bytes per second against memory bandwidth\n",
      MOSHI_RT_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
      usage();
      return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    if (cmd == "--version") {
      std::printf("moshi-rt %s\n", MOSHI_RT_VERSION);
      return 0;
    }
    if (cmd == "mimi") return cmd_mimi(argc - 1, argv + 1);
    if (cmd == "verify") return cmd_verify(argc - 1, argv + 1);
    if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
    if (cmd == "run") return cmd_run(argc - 1, argv + 1);
    if (cmd == "compare") return cmd_compare(argc - 1, argv + 1);
    if (cmd == "doctor") return cmd_doctor(argc - 1, argv + 1);
    std::fprintf(stderr, "moshi-rt: error: unknown command '%s' (see moshi-rt --help)\n", cmd.c_str());
    return 2;
  } catch (const moshi::Error& e) {
    std::fprintf(stderr, "moshi-rt: error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "moshi-rt: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moshi-rt: error: %s\n", e.what());
  }
  return 1;
}
