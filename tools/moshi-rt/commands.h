// Subcommands of the moshi-rt CLI. Each returns the process exit code; errors throw moshi::Error.
#pragma once

int cmd_mimi(int argc, char** argv);    // argv[0] == "mimi"
int cmd_verify(int argc, char** argv);  // argv[0] == "verify"
int cmd_bench(int argc, char** argv);   // argv[0] == "bench"
int cmd_run(int argc, char** argv);     // argv[0] == "run"
int cmd_compare(int argc, char** argv); // argv[0] == "compare"
int cmd_doctor(int argc, char** argv);  // argv[0] == "doctor"
