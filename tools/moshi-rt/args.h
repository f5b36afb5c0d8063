// A small command-line parser: declared options with help text, positional arguments,
// "--name value" and "--name=value", and one-line errors for anything unknown or malformed.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace cli {

struct Option {
  std::string name;     // without dashes
  std::string value;    // placeholder shown in help ("" = a flag)
  std::string help;
  std::string def;      // default value ("" = none)
};

class Args {
 public:
  Args(std::string usage, std::string summary, std::vector<Option> options, int min_pos, int max_pos);
  // Parses argv[first..]. Returns false if --help was given (help already printed).
  bool parse(int argc, char** argv, int first);
  void print_help() const;

  bool flag(const std::string& name) const;
  bool given(const std::string& name) const { return values_.count(name) != 0; }
  std::string str(const std::string& name) const;
  int integer(const std::string& name, int lo, int hi) const;
  double number(const std::string& name, double lo, double hi) const;
  const std::vector<std::string>& positional() const { return pos_; }

 private:
  const Option* find(const std::string& name) const;
  std::string usage_, summary_;
  std::vector<Option> options_;
  int min_pos_, max_pos_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> pos_;
};

}  // namespace cli
