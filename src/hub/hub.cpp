// Hugging Face hub cache lookup and download (serving-spec 4.3). The cache layout is the Python
// huggingface_hub one, so files downloaded here are reused by Python tools and vice versa.
#include "hub/hub.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"

namespace fs = std::filesystem;

namespace moshi {

namespace {

constexpr const char* kLocalHint = "pass --model /path/to/a/local/directory";

// ---------------------------------------------------------------- strings and environment

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Error messages must stay on one line even when they quote server or curl text.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return trim(s);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_hex(const std::string& s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

bool is_truthy(const std::string& v) {
  const std::string u = lower(trim(v));
  return u == "1" || u == "on" || u == "yes" || u == "true";
}

std::string home_dir() {
  std::string h = env("HOME");
  if (!h.empty()) return h;
  struct passwd pw, *res = nullptr;
  char buf[4096];
  if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_dir) return res->pw_dir;
  return "/";
}

// Like Python's os.path.expanduser: "~" and "~/x" use $HOME, "~user/x" that user's home.
std::string expand_user(const std::string& p) {
  if (p.empty() || p[0] != '~') return p;
  const size_t slash = p.find('/');
  const std::string user = p.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
  std::string home;
  if (user.empty()) {
    home = home_dir();
  } else {
    struct passwd pw, *res = nullptr;
    char buf[4096];
    if (getpwnam_r(user.c_str(), &pw, buf, sizeof(buf), &res) != 0 || !res || !res->pw_dir) return p;
    home = res->pw_dir;
  }
  return slash == std::string::npos ? home : home + p.substr(slash);
}

// Like Python's os.path.expandvars: $NAME and ${NAME}; unset variables are left as written.
std::string expand_vars(const std::string& p) {
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p[i] != '$') {
      out += p[i++];
      continue;
    }
    size_t j = i + 1;
    std::string name;
    bool braced = j < p.size() && p[j] == '{';
    if (braced) {
      const size_t close = p.find('}', j + 1);
      if (close == std::string::npos) {
        out += p.substr(i);
        break;
      }
      name = p.substr(j + 1, close - j - 1);
      j = close + 1;
    } else {
      while (j < p.size() && (std::isalnum(static_cast<unsigned char>(p[j])) || p[j] == '_')) name += p[j++];
    }
    const char* v = name.empty() ? nullptr : std::getenv(name.c_str());
    out += v ? std::string(v) : p.substr(i, j - i);
    i = j;
  }
  return out;
}

std::string expand_path(const std::string& p) { return expand_vars(expand_user(p)); }

// A single path component safe to use as a file name (commit hashes, etags).
bool safe_component(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 255) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

// Repo file names and revisions become paths inside the cache: refuse anything that could escape it.
void check_relative(const std::string& repo_id, const char* what, const std::string& p) {
  bool ok = !p.empty() && p.front() != '/' && p.back() != '/' && p.find('\\') == std::string::npos;
  for (size_t b = 0; ok && b <= p.size();) {
    size_t e = p.find('/', b);
    if (e == std::string::npos) e = p.size();
    const std::string part = p.substr(b, e - b);
    ok = !part.empty() && part != "." && part != "..";
    b = e + 1;
  }
  for (char c : p) ok = ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  MOSHI_CHECK(ok, repo_id, ": invalid ", what, " '", one_line(p), "'");
}

bool valid_repo_id(const std::string& s) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  if (s.find("..") != std::string::npos || s.find("--") != std::string::npos) return false;
  for (const std::string& part : {s.substr(0, slash), s.substr(slash + 1)}) {
    if (part.empty() || part.size() > 96) return false;
    if (!std::isalnum(static_cast<unsigned char>(part.front())) || !std::isalnum(static_cast<unsigned char>(part.back())))
      return false;
    for (char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}

std::string percent_encode(const std::string& s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// ---------------------------------------------------------------- URLs

// "scheme://authority" of an absolute http(s) URL, lowercased; "" if the URL is not absolute.
std::string url_origin(const std::string& url) {
  const size_t sep = url.find("://");
  if (sep == std::string::npos) return "";
  const size_t end = url.find_first_of("/?#", sep + 3);
  return lower(url.substr(0, end));
}

bool is_http_url(const std::string& url) {
  const std::string l = lower(url.substr(0, 8));
  return l.rfind("http://", 0) == 0 || l.rfind("https://", 0) == 0;
}

// Resolves a Location header against the URL that returned it. `relative` tells whether the
// Location named no host (the hub's repo-rename redirects), which are the only ones a HEAD follows.
std::string resolve_location(const std::string& base, const std::string& loc, bool* relative) {
  *relative = false;
  if (loc.rfind("//", 0) == 0) return base.substr(0, base.find("://") + 1) + loc;
  if (loc.find("://") != std::string::npos) return loc;
  *relative = true;
  const std::string origin = base.substr(0, base.find_first_of("/?#", base.find("://") + 3));
  if (!loc.empty() && loc[0] == '/') return origin + loc;
  std::string path = base.substr(origin.size());
  path = path.substr(0, path.find_first_of("?#"));
  return origin + path.substr(0, path.rfind('/') + 1) + loc;
}

// ---------------------------------------------------------------- cache layout

struct RepoPaths {
  fs::path root, repo, lock_dir;
};

RepoPaths repo_paths(const HubConfig& cfg, const std::string& repo_id) {
  MOSHI_CHECK(valid_repo_id(repo_id), "invalid Hugging Face repo id '", one_line(repo_id), "' (expected org/name)");
  MOSHI_CHECK(!cfg.cache_dir.empty(), repo_id, ": no Hugging Face cache directory configured");
  std::string folder = "models--" + repo_id;
  folder.replace(folder.find('/'), 1, "--");
  const fs::path root(cfg.cache_dir);
  return {root, root / folder, root / ".locks" / folder};
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return "";
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return trim(s);
}

// The commit a revision names in the cache: itself if it is a commit hash, else refs/<revision>.
std::string cached_commit(const RepoPaths& rp, const std::string& revision) {
  if (is_hex(revision, 40)) return lower(revision);
  const std::string c = read_text(rp.repo / "refs" / revision);
  return safe_component(c) ? c : "";
}

// A sibling name no other thread or process uses, for build-then-rename updates.
fs::path temp_sibling(const fs::path& p) {
  static std::atomic<unsigned> counter{0};
  return p.string() + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
}

// Writes via a temporary file and rename so that a reader never sees a half-written file.
void write_atomic(const fs::path& p, const std::string& content) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  const fs::path tmp = temp_sibling(p);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << content;
    f.flush();
    MOSHI_CHECK(f.good(), "cannot write ", tmp.string(), ": ", std::strerror(errno));
  }
  fs::rename(tmp, p, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    fail("cannot create ", p.string(), ": ", ec.message());
  }
}

void write_ref(const RepoPaths& rp, const std::string& revision, const std::string& commit) {
  if (is_hex(revision, 40)) return;
  const fs::path ref = rp.repo / "refs" / revision;
  if (read_text(ref) != commit) write_atomic(ref, commit);
}

// snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per directory level in <file>).
// Replaced atomically; falls back to a copy on file systems without symlinks.
void link_snapshot(const fs::path& snapshot, const fs::path& blob, const std::string& filename,
                   const std::string& etag) {
  std::error_code ec;
  fs::create_directories(snapshot.parent_path(), ec);
  MOSHI_CHECK(!ec, "cannot create ", snapshot.parent_path().string(), ": ", ec.message());
  std::string target;
  for (size_t i = 0, n = 2 + std::count(filename.begin(), filename.end(), '/'); i < n; ++i) target += "../";
  target += "blobs/" + etag;
  const fs::path tmp = temp_sibling(snapshot);
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    const int err = errno;
    fs::copy_file(blob, tmp, fs::copy_options::overwrite_existing, ec);
    MOSHI_CHECK(!ec, "cannot create ", snapshot.string(), ": ", std::strerror(err), " (symlink), ", ec.message(), " (copy)");
  }
  fs::rename(tmp, snapshot, ec);
  MOSHI_CHECK(!ec, "cannot create ", snapshot.string(), ": ", ec.message());
}

// Exclusive flock on a lock file, so that two processes never write the same blob.
class FileLock {
 public:
  explicit FileLock(const fs::path& p, bool verbose) {
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    MOSHI_CHECK(fd_ >= 0, "cannot open lock file ", p.string(), ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    if (verbose) std::fprintf(stderr, "waiting for another process downloading the same file (%s)\n", p.c_str());
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        const int err = errno;
        ::close(fd_);
        fail("cannot lock ", p.string(), ": ", std::strerror(err));
      }
    }
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// ---------------------------------------------------------------- HTTP through libcurl

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlEasy {
  CURL* h = nullptr;
  curl_slist* headers = nullptr;
  CurlEasy() {
    curl_init_once();
    h = curl_easy_init();
    MOSHI_CHECK(h, "cannot initialise libcurl");
  }
  ~CurlEasy() {
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
  }
  CurlEasy(const CurlEasy&) = delete;
  CurlEasy& operator=(const CurlEasy&) = delete;
};

// Where the body of a GET goes: the .incomplete file (hashed as it is written) or, for
// redirects and errors, nowhere.
struct Sink {
  int fd = -1;
  uint64_t size = 0;  // bytes in the file
  bool hashing = false;
  Sha256 hasher;
  bool to_file = false;
  bool range_mismatch = false;
  int write_errno = 0;
};

struct Progress {
  bool enabled = false;
  std::string label;
  uint64_t total = 0, resumed_from = 0, base = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last{};
  bool drawn = false;

  void draw(uint64_t done, bool force) {
    if (!enabled) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last < std::chrono::milliseconds(100)) return;
    last = now;
    const double secs = std::chrono::duration<double>(now - start).count();
    const double rate = secs > 0 ? double(done - std::min(done, resumed_from)) / secs / 1e6 : 0.0;
    if (total > 0)
      std::fprintf(stderr, "\r%s: %.1f/%.1f MB %3d%% %.1f MB/s\033[K", label.c_str(), double(done) / 1e6,
                   double(total) / 1e6, int(100.0 * double(std::min(done, total)) / double(total)), rate);
    else
      std::fprintf(stderr, "\r%s: %.1f MB %.1f MB/s\033[K", label.c_str(), double(done) / 1e6, rate);
    std::fflush(stderr);
    drawn = true;
  }
  void finish() {
    if (drawn) std::fputc('\n', stderr);
    drawn = false;
  }
  ~Progress() { finish(); }  // an error message must not continue the bar's line
};

struct Response {
  CURLcode code = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercased names, of the last response only
  std::string body;                            // error bodies, truncated
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct Transfer {
  Response* resp;
  Sink* sink;  // null for HEAD
  Progress* progress;
};

// Parses "bytes START-END/TOTAL"; returns START or -1.
long long content_range_start(const std::string& v) {
  const std::string l = lower(trim(v));
  if (l.rfind("bytes ", 0) != 0) return -1;
  char* end = nullptr;
  const long long start = std::strtoll(l.c_str() + 6, &end, 10);
  return (end && *end == '-') ? start : -1;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response starts (after 1xx): forget the previous one
    t->resp->headers.clear();
    const size_t sp = line.find(' ');
    t->resp->status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    t->resp->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
    return size * n;
  }
  // Blank line: the headers of a final response are complete; decide where its body goes.
  Sink* s = t->sink;
  if (!s || trim(line).size() > 0 || t->resp->status < 200) return size * n;
  s->to_file = false;
  if (t->resp->status == 200) {  // full body: also what a server that ignores Range answers
    if (::ftruncate(s->fd, 0) != 0) {
      s->write_errno = errno;
      return 0;
    }
    s->size = 0;
    s->hasher = Sha256();
    s->to_file = true;
  } else if (t->resp->status == 206) {
    if (content_range_start(t->resp->header("content-range")) != static_cast<long long>(s->size)) {
      s->range_mismatch = true;
      return 0;
    }
    s->to_file = true;
  }
  if (t->progress) t->progress->base = s->size;
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  Sink* s = t->sink;
  if (!s || !s->to_file) {
    if (t->resp->body.size() < 2048) t->resp->body.append(data, std::min<size_t>(len, 2048));
    return len;
  }
  for (size_t off = 0; off < len;) {
    const ssize_t w = ::write(s->fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      s->write_errno = w < 0 ? errno : EIO;
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  if (s->hashing) s->hasher.update(data, len);
  s->size += len;
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->sink && t->sink->to_file) t->progress->draw(t->progress->base + static_cast<uint64_t>(dlnow), false);
  return 0;
}

// One HTTP request without following redirects (the caller decides which ones to follow).
Response http_request(const HubConfig& cfg, const std::string& url, bool head, uint64_t range_from, Sink* sink,
                      Progress* progress) {
  CurlEasy c;
  Response resp;
  Transfer t{&resp, sink, progress};
  if (sink) sink->to_file = false;  // until this response's headers say where its body goes
  if (sink && progress) progress->base = sink->size;
  char errbuf[CURL_ERROR_SIZE] = {0};
  c.headers = curl_slist_append(c.headers, "Accept-Encoding: identity");
  // The token goes only to the endpoint's own host, never to a CDN or another redirect target.
  if (!cfg.token.empty() && url_origin(url) == url_origin(cfg.endpoint))
    c.headers = curl_slist_append(c.headers, ("Authorization: Bearer " + cfg.token).c_str());
  if (range_from > 0)
    c.headers = curl_slist_append(c.headers, ("Range: bytes=" + std::to_string(range_from) + "-").c_str());
  curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
  curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(c.h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(c.h, CURLOPT_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(c.h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT, 15L);
  // A stalled transfer (including a server that never answers) is aborted after 60 s.
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c.h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, errbuf);
#ifdef MOSHI_RT_VERSION
  curl_easy_setopt(c.h, CURLOPT_USERAGENT, "moshi-rt/" MOSHI_RT_VERSION);
#else
  curl_easy_setopt(c.h, CURLOPT_USERAGENT, "moshi-rt");
#endif
  curl_easy_setopt(c.h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c.h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &t);
  if (head) curl_easy_setopt(c.h, CURLOPT_NOBODY, 1L);
  if (progress && progress->enabled && sink) {
    curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &t);
  }
  resp.code = curl_easy_perform(c.h);
  if (resp.code != CURLE_OK) resp.curl_error = one_line(errbuf[0] ? errbuf : curl_easy_strerror(resp.code));
  return resp;
}

bool is_redirect(long status) { return status == 301 || status == 302 || status == 303 || status == 307 || status == 308; }

// ---------------------------------------------------------------- errors

struct Ctx {
  const HubConfig& cfg;
  const std::string& repo_id;
  const std::string& filename;
  const std::string& revision;
};

[[noreturn]] void fail_network(const Ctx& c, const std::string& why) {
  fail("cannot download ", c.repo_id, "/", c.filename, " from ", c.cfg.endpoint, " (", one_line(why),
       "); check the network, set HF_ENDPOINT, or ", kLocalHint);
}

[[noreturn]] void fail_http(const Ctx& c, const Response& r) {
  const std::string code = r.header("x-error-code");
  const std::string msg = one_line(r.header("x-error-message"));
  const bool has_token = !c.cfg.token.empty();
  if (r.status == 401 && msg == "Invalid credentials in Authorization header")
    fail(c.repo_id, ": the Hugging Face token was rejected (HTTP 401: ", msg,
         "); check HF_TOKEN or the token file, or unset them for public repos");
  if (code == "RepoNotFound" || r.status == 401)
    fail(c.repo_id, ": repository not found on ", c.cfg.endpoint,
         has_token ? " (or the token has no access to it); check the name, or "
                   : " (private and gated repos need a token: set HF_TOKEN); check the name, or ",
         kLocalHint);
  if (code == "GatedRepo")
    fail(c.repo_id, ": gated repository; accept its conditions on ", c.cfg.endpoint, "/", c.repo_id,
         has_token ? " with the account of the token in use" : " and set HF_TOKEN to a token of that account");
  if (code == "RevisionNotFound")
    fail(c.repo_id, ": revision '", one_line(c.revision), "' not found on ", c.cfg.endpoint);
  if (code == "EntryNotFound")
    fail(c.repo_id, ": ", c.filename, " does not exist in the repository at revision '", one_line(c.revision), "'");
  fail_network(c, "HTTP " + std::to_string(r.status) + (msg.empty() ? "" : ": " + msg) +
                      (code.empty() ? "" : " [" + one_line(code) + "]"));
}

std::string strip_etag(std::string e) {
  e = trim(e);
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

// ---------------------------------------------------------------- download

struct Metadata {
  std::string commit, etag, download_url;
  uint64_t size = 0;  // 0: unknown
};

// HEAD on the resolve URL, following only relative (repo rename) redirects. Returns false for a
// 404 EntryNotFound (with `commit` set from X-Repo-Commit, possibly empty); throws on other errors.
bool head_metadata(const Ctx& c, Metadata* md) {
  std::string endpoint = c.cfg.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  MOSHI_CHECK(is_http_url(endpoint), "HF_ENDPOINT must be an http(s) URL, got '", one_line(endpoint), "'");
  std::string url = endpoint + "/" + c.repo_id + "/resolve/" + percent_encode(c.revision, false) + "/" +
                    percent_encode(c.filename, true);
  Response r;
  for (int hop = 0;; ++hop) {
    r = http_request(c.cfg, url, /*head=*/true, 0, nullptr, nullptr);
    if (r.code != CURLE_OK) fail_network(c, r.curl_error);
    if (!is_redirect(r.status) || r.header("location").empty()) break;
    bool relative = false;
    const std::string next = resolve_location(url, r.header("location"), &relative);
    if (!relative) {  // the CDN: the file is downloaded from there, not inspected further
      if (!is_http_url(next)) fail_network(c, "redirect to a non-HTTP location " + one_line(next));
      md->download_url = next;
      break;
    }
    if (hop >= 10) fail_network(c, "too many redirects");
    url = next;
  }
  md->commit = r.header("x-repo-commit");
  if (r.status >= 400) {
    if (r.header("x-error-code") == "EntryNotFound") return false;
    fail_http(c, r);
  }
  if (r.status >= 300 && md->download_url.empty()) fail_network(c, "HTTP " + std::to_string(r.status) + " without a usable Location");
  std::string etag = r.header("x-linked-etag");
  if (etag.empty()) etag = r.header("etag");
  md->etag = strip_etag(etag);
  std::string size = r.header("x-linked-size");
  if (size.empty() && md->download_url.empty()) size = r.header("content-length");
  md->size = size.empty() ? 0 : std::strtoull(size.c_str(), nullptr, 10);
  if (md->download_url.empty()) md->download_url = url;
  if (md->commit.empty() || md->etag.empty())
    fail_network(c, std::string("the server did not send ") + (md->commit.empty() ? "X-Repo-Commit" : "an ETag") +
                        "; is HF_ENDPOINT a Hugging Face hub?");
  MOSHI_CHECK(safe_component(md->commit), c.repo_id, ": the server sent an unusable commit '", one_line(md->commit), "'");
  MOSHI_CHECK(safe_component(md->etag), c.repo_id, ": the server sent an unusable ETag '", one_line(md->etag), "'");
  return true;
}

bool retriable(const Response& r) {
  switch (r.code) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    case CURLE_OK:
      return r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504;
    default:
      return false;
  }
}

// Downloads md into `incomplete`, resuming what a previous attempt left there. Retries transient
// failures (a dropped connection, a 5xx) a few times, each retry resuming where the last stopped.
void download_blob(const Ctx& c, const Metadata& md, const fs::path& incomplete) {
  Sink sink;
  sink.hashing = is_hex(md.etag, 64);  // LFS etags are the SHA-256 of the content
  sink.fd = ::open(incomplete.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  MOSHI_CHECK(sink.fd >= 0, "cannot create ", incomplete.string(), ": ", std::strerror(errno));
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } closer{sink.fd};

  struct stat st {};
  if (::fstat(sink.fd, &st) == 0) sink.size = static_cast<uint64_t>(st.st_size);
  if (md.size > 0 && sink.size > md.size) {  // cannot be a prefix of this blob: start over
    MOSHI_CHECK(::ftruncate(sink.fd, 0) == 0, "cannot truncate ", incomplete.string(), ": ", std::strerror(errno));
    sink.size = 0;
  }
  if (sink.hashing && sink.size > 0) {  // bring the hash up to date with the bytes already there
    std::vector<char> buf(1 << 20);
    uint64_t left = sink.size, off = 0;
    while (left > 0) {
      const ssize_t n = ::pread(sink.fd, buf.data(), std::min<uint64_t>(left, buf.size()), static_cast<off_t>(off));
      MOSHI_CHECK(n > 0, "cannot read ", incomplete.string(), ": ", n < 0 ? std::strerror(errno) : "short file");
      sink.hasher.update(buf.data(), static_cast<size_t>(n));
      left -= static_cast<uint64_t>(n);
      off += static_cast<uint64_t>(n);
    }
  }

  Progress progress;
  progress.enabled = c.cfg.progress && ::isatty(2);
  progress.label = c.filename;
  progress.total = md.size;
  progress.resumed_from = sink.size;

  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    if (md.size > 0 && sink.size == md.size) break;  // already complete (e.g. an earlier run was cut at the end)
    std::string url = md.download_url;
    Response r;
    for (int hop = 0;; ++hop) {  // a GET follows every redirect; the token is dropped off-endpoint
      r = http_request(c.cfg, url, false, sink.size, &sink, &progress);
      if (r.code != CURLE_OK || !is_redirect(r.status) || r.header("location").empty()) break;
      bool relative = false;
      url = resolve_location(url, r.header("location"), &relative);
      if (!is_http_url(url)) fail_network(c, "redirect to a non-HTTP location " + one_line(url));
      if (hop >= 10) fail_network(c, "too many redirects");
    }
    if (sink.write_errno != 0) {
      progress.finish();
      fail("cannot write ", incomplete.string(), ": ", std::strerror(sink.write_errno));
    }
    bool retry = false;
    if (sink.range_mismatch) {  // the server resumed elsewhere than asked: start from zero
      sink.range_mismatch = false;
      MOSHI_CHECK(::ftruncate(sink.fd, 0) == 0, "cannot truncate ", incomplete.string(), ": ", std::strerror(errno));
      sink.size = 0;
      sink.hasher = Sha256();
      retry = true;
    } else if (r.code == CURLE_OK && r.status == 416) {  // nothing left to send from that offset
      if (md.size == 0) break;  // size unknown: trust that the partial file was complete
      MOSHI_CHECK(::ftruncate(sink.fd, 0) == 0, "cannot truncate ", incomplete.string(), ": ", std::strerror(errno));
      sink.size = 0;
      sink.hasher = Sha256();
      retry = true;
    } else if (r.code == CURLE_OK && (r.status == 200 || r.status == 206)) {
      break;
    } else {
      retry = retriable(r);
    }
    if (!retry || attempt >= kAttempts) {
      progress.finish();
      if (r.code != CURLE_OK) fail_network(c, r.curl_error);
      if (r.status >= 400) fail_http(c, r);
      fail_network(c, "HTTP " + std::to_string(r.status));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
  }
  progress.draw(sink.size, true);
  progress.finish();

  auto discard = [&] {
    std::error_code ec;
    fs::remove(incomplete, ec);
  };
  if (md.size > 0 && sink.size != md.size) {
    discard();
    fail(c.repo_id, "/", c.filename, ": downloaded file has ", sink.size, " bytes, expected ", md.size);
  }
  if (sink.hashing) {
    const std::string got = sink.hasher.hex_digest();
    if (got != lower(md.etag)) {
      discard();
      fail(c.repo_id, "/", c.filename, ": downloaded file does not match its SHA-256 (expected ", lower(md.etag),
           ", got ", got, ")");
    }
  }
  MOSHI_CHECK(::fsync(sink.fd) == 0, "cannot write ", incomplete.string(), ": ", std::strerror(errno));
}

}  // namespace

// ---------------------------------------------------------------- public API

HubConfig hub_config_from_env() {
  HubConfig cfg;
  cfg.endpoint = env("HF_ENDPOINT");
  if (cfg.endpoint.empty()) cfg.endpoint = "https://huggingface.co";
  while (cfg.endpoint.size() > 1 && cfg.endpoint.back() == '/') cfg.endpoint.pop_back();

  std::string hf_home = env("HF_HOME");
  if (hf_home.empty()) {
    const std::string xdg = env("XDG_CACHE_HOME");
    hf_home = (xdg.empty() ? home_dir() + "/.cache" : xdg) + "/huggingface";
  }
  hf_home = expand_path(hf_home);
  std::string cache = env("HF_HUB_CACHE");
  if (cache.empty()) cache = env("HUGGINGFACE_HUB_CACHE");
  cfg.cache_dir = cache.empty() ? hf_home + "/hub" : expand_path(cache);

  cfg.token = trim(env("HF_TOKEN"));
  if (cfg.token.empty()) cfg.token = trim(env("HUGGING_FACE_HUB_TOKEN"));
  if (cfg.token.empty()) {
    std::string path = env("HF_TOKEN_PATH");
    path = path.empty() ? hf_home + "/token" : expand_path(path);
    cfg.token = read_text(path);
  }

  std::string offline = env("HF_HUB_OFFLINE");
  if (offline.empty()) offline = env("TRANSFORMERS_OFFLINE");
  cfg.offline = is_truthy(offline);
  return cfg;
}

bool looks_like_repo_id(const std::string& s) {
  if (!valid_repo_id(s)) return false;
  std::error_code ec;
  return !fs::exists(fs::symlink_status(s, ec));
}

std::string hub_cached(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                       const std::string& revision) {
  const RepoPaths rp = repo_paths(cfg, repo_id);
  check_relative(repo_id, "file name", filename);
  check_relative(repo_id, "revision", revision);
  const std::string commit = cached_commit(rp, revision);
  if (commit.empty()) return "";
  const fs::path snap = rp.repo / "snapshots" / commit / filename;
  std::error_code ec;
  return fs::is_regular_file(snap, ec) ? snap.string() : "";  // follows the symlink: a dangling one is a miss
}

bool hub_known_absent(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                      const std::string& revision) {
  const RepoPaths rp = repo_paths(cfg, repo_id);
  check_relative(repo_id, "file name", filename);
  check_relative(repo_id, "revision", revision);
  const std::string commit = cached_commit(rp, revision);
  std::error_code ec;
  return !commit.empty() && fs::exists(rp.repo / ".no_exist" / commit / filename, ec);
}

std::string hub_fetch(const HubConfig& cfg, const std::string& repo_id, const std::string& filename,
                      const std::string& revision, bool optional) {
  if (std::string hit = hub_cached(cfg, repo_id, filename, revision); !hit.empty()) return hit;
  if (optional && hub_known_absent(cfg, repo_id, filename, revision)) return "";
  if (cfg.offline)
    fail(repo_id, ": ", filename, " is not in the Hugging Face cache (", cfg.cache_dir,
         ") and HF_HUB_OFFLINE is set; download it first or ", kLocalHint);
  MOSHI_CHECK(std::none_of(cfg.token.begin(), cfg.token.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }),
              "the Hugging Face token contains control characters; check HF_TOKEN or the token file");

  const RepoPaths rp = repo_paths(cfg, repo_id);
  const Ctx ctx{cfg, repo_id, filename, revision};
  Metadata md;
  if (!head_metadata(ctx, &md)) {  // 404 EntryNotFound
    // Recorded like huggingface_hub does, required or not, so later optional lookups stay offline.
    if (safe_component(md.commit)) {
      write_atomic(rp.repo / ".no_exist" / md.commit / filename, "");
      write_ref(rp, revision, md.commit);
    }
    if (!optional) fail_http(ctx, Response{CURLE_OK, "", 404, {{"x-error-code", "EntryNotFound"}}, ""});
    return "";
  }

  const fs::path snapshot = rp.repo / "snapshots" / md.commit / filename;
  const fs::path blob = rp.repo / "blobs" / md.etag;
  std::error_code ec;
  if (!fs::is_regular_file(snapshot, ec)) {
    if (!fs::is_regular_file(blob, ec)) {
      fs::create_directories(blob.parent_path(), ec);
      MOSHI_CHECK(!ec, "cannot create ", blob.parent_path().string(), ": ", ec.message());
      FileLock lock(rp.lock_dir / (md.etag + ".lock"), cfg.progress && ::isatty(2));
      if (!fs::is_regular_file(blob, ec)) {  // another process may have finished it while we waited
        const fs::path incomplete = blob.string() + ".incomplete";
        download_blob(ctx, md, incomplete);
        fs::rename(incomplete, blob, ec);
        MOSHI_CHECK(!ec, "cannot move ", incomplete.string(), " to ", blob.string(), ": ", ec.message());
      }
    }
    link_snapshot(snapshot, blob, filename, md.etag);
  }
  write_ref(rp, revision, md.commit);
  return snapshot.string();
}

}  // namespace moshi
