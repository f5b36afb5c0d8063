#include "api/model_files.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "hub/hub.h"

namespace moshi {

using json = nlohmann::json;

namespace {
constexpr const char* kLmName = "model.safetensors";
constexpr const char* kMimiName = "tokenizer-e351c8d8-checkpoint125.safetensors";
constexpr const char* kTokenizerName = "tokenizer_spm_32k_3.model";

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  MOSHI_CHECK(f.good(), p, ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The file names config.json gives, or the release's defaults.
void names_from_config(const std::string& text, const std::string& what, std::string* lm, std::string* mimi,
                       std::string* tok) {
  *lm = kLmName;
  *mimi = kMimiName;
  *tok = kTokenizerName;
  if (text.empty()) return;
  json j = json::parse(text, nullptr, false);
  MOSHI_CHECK(!j.is_discarded() && j.is_object(), what, ": not a JSON object");
  auto name = [&](const char* key, std::string* out) {
    if (j.contains(key) && !j[key].is_null()) {
      MOSHI_CHECK(j[key].is_string(), what, ": ", key, " must be a string");
      *out = j[key].get<std::string>();
    }
  };
  name("moshi_name", lm);
  name("mimi_name", mimi);
  name("tokenizer_name", tok);
}
}  // namespace

ModelFiles resolve_model_files(const std::string& spec, const ModelOptions& opts) {
  ModelFiles f;
  f.source = spec;
  std::string lm, mimi, tok;
  if (is_dir(spec)) {
    const std::string cfg = spec + "/config.json";
    if (is_file(cfg)) f.config_json = read_file(cfg);
    names_from_config(f.config_json, cfg, &lm, &mimi, &tok);
    f.lm_weights = spec + "/" + lm;
    f.mimi_weights = spec + "/" + mimi;
    f.tokenizer = spec + "/" + tok;
    for (const std::string* p : {&f.lm_weights, &f.mimi_weights, &f.tokenizer})
      MOSHI_CHECK(is_file(*p), spec, ": missing ", p->substr(spec.size() + 1),
                  " (a model directory holds the LM weights, the Mimi weights and the text tokenizer)");
    return f;
  }
  MOSHI_CHECK(looks_like_repo_id(spec), "model '", spec,
              "' is neither a directory, a Hugging Face repo id (org/name) nor synthetic:moshi-7b / synthetic:tiny");
  HubConfig hub = hub_config_from_env();
  if (!opts.download) hub.offline = true;
  const std::string cfg = hub_fetch(hub, spec, "config.json", "main", /*optional=*/true);
  if (!cfg.empty()) f.config_json = read_file(cfg);
  names_from_config(f.config_json, spec + "/config.json", &lm, &mimi, &tok);
  // Small files first, so a missing tokenizer fails before gigabytes are fetched.
  f.tokenizer = hub_fetch(hub, spec, tok);
  f.mimi_weights = hub_fetch(hub, spec, mimi);
  f.lm_weights = hub_fetch(hub, spec, lm);
  return f;
}

}  // namespace moshi
