// Hugging Face hub access: resolves "org/name" repo files to local paths through the same cache
// layout the Python huggingface_hub library uses (serving-spec 4.3), downloading with libcurl
// when a file is not cached. All failures throw moshi::Error with a one-line message.
#pragma once
#include <string>

namespace moshi {

struct HubConfig {
  std::string endpoint;   // HF_ENDPOINT, default https://huggingface.co (no trailing slash)
  std::string cache_dir;  // resolved cache root, per serving-spec 4.3
  std::string token;      // HF_TOKEN, HUGGING_FACE_HUB_TOKEN, else file HF_TOKEN_PATH; may be empty
  bool offline = false;   // HF_HUB_OFFLINE (1/ON/YES/TRUE, case-insensitive), else TRANSFORMERS_OFFLINE
  bool progress = true;   // progress bar on stderr, only drawn when stderr is a terminal
};

// Reads the configuration from the environment, resolving defaults the way huggingface_hub does:
// cache = HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub,
// ~/.cache/huggingface/hub (with ~ and $VARS expanded). Empty variables count as unset.
HubConfig hub_config_from_env();

// True for "org/name" strings (one slash, [A-Za-z0-9._-] on both sides, no ".." or "--", starting
// and ending with a letter or digit) that are not existing local paths.
bool looks_like_repo_id(const std::string& s);

// Cache-only lookup: the snapshot path of repo_id/filename at revision ("main", another branch, or
// a 40-hex commit), "" if absent. Never touches the network.
std::string hub_cached(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                       const std::string& revision = "main");

// True if the cache has a .no_exist marker for it (file known absent at the cached commit).
bool hub_known_absent(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                      const std::string& revision = "main");

// Local path of the file: the cached snapshot if present, else downloaded into the cache layout.
// optional=true: a file the server says does not exist (404 with X-Error-Code EntryNotFound, or a
// cached .no_exist marker) returns "" (the .no_exist marker is written when the 404 carries
// X-Repo-Commit); required files throw. In offline mode a file that is not cached throws, optional
// or not, unless a .no_exist marker says it is absent.
std::string hub_fetch(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                      const std::string& revision = "main", bool optional = false);

}  // namespace moshi
