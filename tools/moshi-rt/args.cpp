#include "args.h"

#include <cstdio>
#include <cstdlib>

#include "moshi/error.h"

namespace cli {

namespace {
[[noreturn]] void bad(const std::string& msg) { throw moshi::Error(msg); }
}  // namespace

Args::Args(std::string usage, std::string summary, std::vector<Option> options, int min_pos, int max_pos)
    : usage_(std::move(usage)), summary_(std::move(summary)), options_(std::move(options)), min_pos_(min_pos),
      max_pos_(max_pos) {
  options_.push_back({"help", "", "show this help and exit", ""});
}

const Option* Args::find(const std::string& name) const {
  for (const auto& o : options_)
    if (o.name == name) return &o;
  return nullptr;
}

bool Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      print_help();
      return false;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string name = a.substr(2), value;
      const auto eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      const Option* o = find(name);
      if (!o) bad("unknown option --" + name + " (see --help)");
      if (o->value.empty()) {
        if (inline_value) bad("option --" + name + " takes no value");
        values_[name] = "1";
      } else {
        if (!inline_value) {
          if (i + 1 >= argc) bad("option --" + name + " needs a value (" + o->value + ")");
          value = argv[++i];
        }
        values_[name] = value;
      }
      continue;
    }
    if (a.size() == 2 && a[0] == '-' && a[1] != '-') {  // short aliases: -o only
      if (a == "-o") {
        if (!find("output")) bad("unknown option -o (see --help)");
        if (i + 1 >= argc) bad("option -o needs a value");
        values_["output"] = argv[++i];
        continue;
      }
      bad("unknown option " + a + " (see --help)");
    }
    pos_.push_back(a);
  }
  if (static_cast<int>(pos_.size()) < min_pos_) bad("missing argument: usage: " + usage_);
  if (static_cast<int>(pos_.size()) > max_pos_) bad("unexpected argument '" + pos_.back() + "': usage: " + usage_);
  return true;
}

void Args::print_help() const {
  std::printf("usage: %s\n\n%s\n\noptions:\n", usage_.c_str(), summary_.c_str());
  for (const auto& o : options_) {
    std::string left = "  --" + o.name + (o.value.empty() ? "" : " " + o.value);
    if (o.name == "output") left = "  -o, --output " + o.value;
    std::string help = o.help + (o.def.empty() ? "" : " (default: " + o.def + ")");
    std::printf("%-28s %s\n", left.c_str(), help.c_str());
  }
}

bool Args::flag(const std::string& name) const { return values_.count(name) != 0; }

std::string Args::str(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const Option* o = find(name);
  return o ? o->def : "";
}

int Args::integer(const std::string& name, int lo, int hi) const {
  const std::string s = str(name);
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') bad("--" + name + " must be an integer, got '" + s + "'");
  if (v < lo || v > hi)
    bad("--" + name + " = " + s + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(v);
}

double Args::number(const std::string& name, double lo, double hi) const {
  const std::string s = str(name);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') bad("--" + name + " must be a number, got '" + s + "'");
  if (!(v >= lo && v <= hi)) bad("--" + name + " = " + s + " is out of range");
  return v;
}

}  // namespace cli
