// Typed, range-checked reads of a JSON config object, failing with one line that names the key
// ("<prefix><key> must be an integer", "... = 5 is out of range [1, 4]").
#pragma once
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace moshi {

struct JsonReader {
  const nlohmann::json& j;
  std::string prefix;  // put before every key in messages, e.g. "config.json: " or "mimi: seanet."

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int get_int(const char* k, int def, int lo = 0, int hi = 1 << 26) const {
    if (!has(k)) return def;
    MOSHI_CHECK(j[k].is_number_integer(), prefix, k, " must be an integer");
    const int64_t v = j[k].get<int64_t>();
    MOSHI_CHECK(v >= lo && v <= hi, prefix, k, " = ", v, " is out of range [", lo, ", ", hi, "]");
    return static_cast<int>(v);
  }
  double get_num(const char* k, double def) const {
    if (!has(k)) return def;
    MOSHI_CHECK(j[k].is_number(), prefix, k, " must be a number");
    return j[k].get<double>();
  }
  bool get_bool(const char* k, bool def) const {
    if (!has(k)) return def;
    MOSHI_CHECK(j[k].is_boolean(), prefix, k, " must be true or false");
    return j[k].get<bool>();
  }
  std::string get_str(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    MOSHI_CHECK(j[k].is_string(), prefix, k, " must be a string");
    return j[k].get<std::string>();
  }
  // Non-negative integers below `hi`.
  std::vector<int> get_ints(const char* k, int hi = 1 << 20) const {
    std::vector<int> v;
    if (!has(k)) return v;
    MOSHI_CHECK(j[k].is_array(), prefix, k, " must be an array of integers");
    for (const auto& e : j[k]) {
      MOSHI_CHECK(e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < hi, prefix, k,
                  " must hold integers in [0, ", hi, ")");
      v.push_back(e.get<int>());
    }
    return v;
  }
  // The string value must be one of `allowed`.
  void expect(const char* k, const std::string& def, std::initializer_list<const char*> allowed) const {
    const std::string v = get_str(k, def);
    for (const char* a : allowed)
      if (v == a) return;
    fail(prefix, k, " = '", v, "' is not supported by moshi-rt");
  }
};

}  // namespace moshi
