// Tests of the SHA-256 implementation and of the Hugging Face hub client against an in-process
// HTTP/1.1 server on 127.0.0.1 that imitates the hub's resolve endpoint and its CDN.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/sha256.h"
#include "hub/hub.h"
#include "moshi/error.h"

namespace fs = std::filesystem;
using moshi::HubConfig;

namespace {

// ---------------------------------------------------------------- SHA-256

TEST(Sha256, StandardVectors) {
  EXPECT_EQ(moshi::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(moshi::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(moshi::sha256_hex(m448.data(), m448.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
      "nopqrstu";
  EXPECT_EQ(moshi::sha256_hex(m896.data(), m896.size()),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, MillionAInUnevenChunks) {
  const std::string a(1000000, 'a');
  const std::string want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  EXPECT_EQ(moshi::sha256_hex(a.data(), a.size()), want);
  moshi::Sha256 h;
  size_t off = 0;
  for (size_t step = 1; off < a.size(); step = step * 7 % 1009 + 1) {
    const size_t n = std::min(step, a.size() - off);
    h.update(a.data() + off, n);
    off += n;
  }
  EXPECT_EQ(h.hex_digest(), want);
  EXPECT_EQ(h.hex_digest(), moshi::sha256_hex("", 0));  // the object resets after a digest
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 56-byte padding limit and block edges, split at every point.
  for (size_t len : {55u, 56u, 57u, 63u, 64u, 65u, 119u, 120u, 128u}) {
    std::string m(len, '\0');
    for (size_t i = 0; i < len; ++i) m[i] = static_cast<char>(i * 31 + 7);
    const std::string whole = moshi::sha256_hex(m.data(), m.size());
    for (size_t cut = 0; cut <= len; cut += 5) {
      moshi::Sha256 h;
      h.update(m.data(), cut);
      h.update(m.data() + cut, len - cut);
      ASSERT_EQ(h.hex_digest(), whole) << len << " " << cut;
    }
  }
}

TEST(Sha256, File) {
  const fs::path p = fs::path(testing::TempDir()) / ("sha256_file_" + std::to_string(getpid()));
  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_EQ(moshi::sha256_file(p.string()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  fs::remove(p);
  EXPECT_THROW(moshi::sha256_file(p.string()), moshi::Error);
}

// ---------------------------------------------------------------- test HTTP server

struct HttpRequest {
  std::string method, target;
  std::map<std::string, std::string> headers;  // lowercased names
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                     // for HEAD only its length is sent
  size_t drop_after = std::string::npos;  // close the connection after this many body bytes
};

// One connection at a time, "Connection: close" on every answer; the accept loop polls a stop
// flag so the destructor always returns promptly, and socket timeouts bound every read and write.
class TestServer {
 public:
  explicit TestServer(std::function<HttpReply(const HttpRequest&)> handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  size_t request_count() const {
    std::lock_guard<std::mutex> g(mu_);
    return requests_.size();
  }
  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> g(mu_);
    return requests_;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      serve(c);
      ::close(c);
    }
  }

  void serve(int c) {
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos && in.size() < 65536) {
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    HttpRequest req;
    size_t eol = in.find("\r\n");
    const std::string first = in.substr(0, eol);
    const size_t sp1 = first.find(' '), sp2 = first.find(' ', sp1 + 1);
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    for (size_t b = eol + 2;;) {
      const size_t e = in.find("\r\n", b);
      if (e == std::string::npos || e == b) break;
      const std::string line = in.substr(b, e - b);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string k = line.substr(0, colon);
        for (char& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        req.headers[k] = line.substr(v);
      }
      b = e + 2;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      requests_.push_back(req);
    }
    const HttpReply r = handler_(req);
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\n";
    for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\nConnection: close\r\n\r\n";
    if (req.method != "HEAD") out += r.body.substr(0, r.drop_after);
    for (size_t off = 0; off < out.size();) {
      const ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  std::function<HttpReply(const HttpRequest&)> handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<HttpRequest> requests_;
};

// ---------------------------------------------------------------- fake hub

const std::string kCommit = "4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b";
const std::string kRepo = "kyutai/fake-model";

struct FakeFile {
  std::string content, etag;
  bool lfs;  // served through an absolute redirect to the CDN, like LFS files on the real hub
};

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// Answers a GET/HEAD for `content`, honouring "Range: bytes=N-" unless told to ignore it.
HttpReply serve_content(const HttpRequest& req, const std::string& content, bool ignore_range) {
  HttpReply r;
  const std::string range = req.header("range");
  if (!ignore_range && range.rfind("bytes=", 0) == 0) {
    const size_t from = std::strtoull(range.c_str() + 6, nullptr, 10);
    if (from >= content.size()) {
      r.status = 416;
      r.headers.push_back({"Content-Range", "bytes */" + std::to_string(content.size())});
      return r;
    }
    r.status = 206;
    r.headers.push_back({"Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(content.size() - 1) +
                                              "/" + std::to_string(content.size())});
    r.body = content.substr(from);
    return r;
  }
  r.body = content;
  return r;
}

struct FakeHub {
  std::map<std::string, FakeFile> files;
  std::string cdn_base;  // where LFS redirects point (this server or a second one)
  std::atomic<bool> drop_once{false}, corrupt{false}, ignore_range{false};

  FakeHub() {
    const std::string model = random_bytes(300 * 1024 + 17, 1);
    files["model.safetensors"] = {model, moshi::sha256_hex(model.data(), model.size()), true};
    files["tokenizer.model"] = {random_bytes(3000, 2), "e5f1a2b3c4d5e6f708192a3b4c5d6e7f80912345", false};
    files["voices/en/a.wav"] = {"RIFF....WAVE", "0badc0de0badc0de0badc0de0badc0de0badc0de", false};
  }

  HttpReply operator()(const HttpRequest& req) {
    HttpReply r;
    if (req.target.rfind("/cdn/", 0) == 0) {
      for (const auto& [name, f] : files) {
        if (req.target != "/cdn/" + f.etag) continue;
        std::string body = f.content;
        if (corrupt) body[body.size() / 3] ^= 0x5a;
        r = serve_content(req, body, ignore_range);
        if (req.method == "GET" && drop_once.exchange(false)) r.drop_after = r.body.size() / 2;
        return r;
      }
      r.status = 404;
      return r;
    }
    // /<org>/<name>/resolve/<revision>/<path>
    const std::string rename_prefix = "/kyutai/old-name/resolve/";
    if (req.target.rfind(rename_prefix, 0) == 0) {
      r.status = 307;
      r.headers.push_back({"Location", "/" + kRepo + "/resolve/" + req.target.substr(rename_prefix.size())});
      return r;
    }
    auto error = [&](int status, const std::string& code, const std::string& msg) {
      r.status = status;
      r.headers.push_back({"X-Error-Code", code});
      r.headers.push_back({"X-Error-Message", msg});
      r.body = msg;
      return r;
    };
    if (req.target.rfind("/kyutai/gated/", 0) == 0) return error(403, "GatedRepo", "Access to model is restricted");
    if (req.target.rfind("/kyutai/bad-token/", 0) == 0)
      return error(401, "", "Invalid credentials in Authorization header");
    const std::string prefix = "/" + kRepo + "/resolve/";
    if (req.target.rfind(prefix, 0) != 0) return error(401, "RepoNotFound", "Repository not found");
    const std::string rest = req.target.substr(prefix.size());
    const std::string rev = rest.substr(0, rest.find('/'));
    const std::string path = rest.substr(rest.find('/') + 1);
    if (rev != "main" && rev != kCommit) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
    r.headers.push_back({"X-Repo-Commit", kCommit});
    auto it = files.find(path);
    if (it == files.end()) return error(404, "EntryNotFound", "Entry not found");
    const FakeFile& f = it->second;
    if (f.lfs) {
      r.status = 302;
      r.headers.push_back({"Location", cdn_base + "/cdn/" + f.etag});
      r.headers.push_back({"X-Linked-Etag", "\"" + f.etag + "\""});
      r.headers.push_back({"X-Linked-Size", std::to_string(f.content.size())});
      r.headers.push_back({"ETag", "\"0000000000000000000000000000000000000000\""});
      r.body = "Found. Redirecting to the CDN";
      return r;
    }
    HttpReply c = serve_content(req, f.content, false);
    c.headers.push_back({"X-Repo-Commit", kCommit});
    c.headers.push_back({"ETag", "W/\"" + f.etag + "\""});
    return c;
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

fs::path make_temp_dir(const std::string& tag) {
  std::string tmpl = (fs::path(testing::TempDir()) / ("moshi_hub_" + tag + "_XXXXXX")).string();
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

// Saves, clears and restores every environment variable the hub configuration reads, so that
// tests neither see the caller's settings nor leak theirs.
class EnvGuard {
 public:
  EnvGuard() {
    for (const char* n : {"HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME",
                          "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE",
                          "TRANSFORMERS_OFFLINE", "MOSHI_TEST_VAR"}) {
      const char* v = std::getenv(n);
      saved_.push_back({n, v ? std::optional<std::string>(v) : std::nullopt});
      ::unsetenv(n);
    }
  }
  ~EnvGuard() {
    for (const auto& [n, v] : saved_) {
      if (v)
        ::setenv(n.c_str(), v->c_str(), 1);
      else
        ::unsetenv(n.c_str());
    }
  }
  void set(const char* n, const std::string& v) { ::setenv(n, v.c_str(), 1); }
  void unset(const char* n) { ::unsetenv(n); }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// ---------------------------------------------------------------- configuration and repo ids

TEST(HubEnv, ResolutionOrder) {
  EnvGuard env;
  env.set("HOME", "/home/tester");
  HubConfig c = moshi::hub_config_from_env();
  EXPECT_EQ(c.endpoint, "https://huggingface.co");
  EXPECT_EQ(c.cache_dir, "/home/tester/.cache/huggingface/hub");
  EXPECT_EQ(c.token, "");
  EXPECT_FALSE(c.offline);

  env.set("XDG_CACHE_HOME", "/xdg");
  EXPECT_EQ(moshi::hub_config_from_env().cache_dir, "/xdg/huggingface/hub");
  env.set("HF_HOME", "~/hf");
  EXPECT_EQ(moshi::hub_config_from_env().cache_dir, "/home/tester/hf/hub");
  env.set("MOSHI_TEST_VAR", "/data");
  env.set("HF_HOME", "$MOSHI_TEST_VAR/hf-${MOSHI_TEST_VAR}/$UNSET_VAR_FOR_MOSHI_TEST");
  EXPECT_EQ(moshi::hub_config_from_env().cache_dir, "/data/hf-/data/$UNSET_VAR_FOR_MOSHI_TEST/hub");
  env.set("HUGGINGFACE_HUB_CACHE", "~/legacy");
  EXPECT_EQ(moshi::hub_config_from_env().cache_dir, "/home/tester/legacy");
  env.set("HF_HUB_CACHE", "$MOSHI_TEST_VAR/new");
  EXPECT_EQ(moshi::hub_config_from_env().cache_dir, "/data/new");

  env.set("HF_ENDPOINT", "http://mirror.example:8080//");
  EXPECT_EQ(moshi::hub_config_from_env().endpoint, "http://mirror.example:8080");
}

TEST(HubEnv, TokenSources) {
  EnvGuard env;
  const fs::path home = make_temp_dir("env");
  env.set("HF_HOME", home.string());
  std::ofstream(home / "token") << "  hf_from_file\n";
  EXPECT_EQ(moshi::hub_config_from_env().token, "hf_from_file");
  std::ofstream(home / "other") << "hf_from_path\n";
  env.set("HF_TOKEN_PATH", (home / "other").string());
  EXPECT_EQ(moshi::hub_config_from_env().token, "hf_from_path");
  env.set("HUGGING_FACE_HUB_TOKEN", "hf_legacy");
  EXPECT_EQ(moshi::hub_config_from_env().token, "hf_legacy");
  env.set("HF_TOKEN", "hf_env");
  EXPECT_EQ(moshi::hub_config_from_env().token, "hf_env");
  fs::remove_all(home);
}

TEST(HubEnv, Offline) {
  EnvGuard env;
  for (const char* v : {"1", "ON", "yes", "True"}) {
    env.set("HF_HUB_OFFLINE", v);
    EXPECT_TRUE(moshi::hub_config_from_env().offline) << v;
  }
  env.set("TRANSFORMERS_OFFLINE", "1");
  env.set("HF_HUB_OFFLINE", "0");  // set: TRANSFORMERS_OFFLINE is not consulted
  EXPECT_FALSE(moshi::hub_config_from_env().offline);
  env.unset("HF_HUB_OFFLINE");
  EXPECT_TRUE(moshi::hub_config_from_env().offline);
  env.set("TRANSFORMERS_OFFLINE", "no");
  EXPECT_FALSE(moshi::hub_config_from_env().offline);
}

TEST(HubRepoId, LooksLikeRepoId) {
  for (const char* yes : {"kyutai/moshiko-pytorch-bf16", "Codes4Fun/moshi-common", "a/b", "org/name.v2", "o_1/n_2"})
    EXPECT_TRUE(moshi::looks_like_repo_id(yes)) << yes;
  for (const char* no : {"", "model.safetensors", "/abs/path", "a/b/c", "./x", "../x", "org/", "/name", "a b/c",
                         "org/na--me", "org/a..b", "org/-name", "org/name.", "hf://org/name"})
    EXPECT_FALSE(moshi::looks_like_repo_id(no)) << no;
  // A relative directory that exists is a local path, not a repo id.
  const fs::path dir = make_temp_dir("repoid");
  fs::create_directories(dir / "org" / "name");
  const fs::path cwd = fs::current_path();
  fs::current_path(dir);
  const bool local = moshi::looks_like_repo_id("org/name");
  const bool other = moshi::looks_like_repo_id("org/other");
  fs::current_path(cwd);
  fs::remove_all(dir);
  EXPECT_FALSE(local);
  EXPECT_TRUE(other);
}

// ---------------------------------------------------------------- download and cache

class HubTest : public testing::Test {
 protected:
  void SetUp() override {
    hub.cdn_base = server.url();
    cache = make_temp_dir("cache");
    cfg.endpoint = server.url();
    cfg.cache_dir = cache.string();
    cfg.offline = false;
    cfg.progress = false;
  }
  void TearDown() override { fs::remove_all(cache); }

  fs::path repo_dir() const { return cache / "models--kyutai--fake-model"; }
  const FakeFile& file(const std::string& n) { return hub.files.at(n); }
  size_t count_target(const TestServer& s, const std::string& prefix) {
    size_t n = 0;
    for (const auto& r : s.requests()) n += r.target.rfind(prefix, 0) == 0;
    return n;
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const moshi::Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no moshi::Error thrown";
    return "";
  }

  FakeHub hub;
  TestServer server{[this](const HttpRequest& r) { return hub(r); }};
  fs::path cache;
  HubConfig cfg;
};

TEST_F(HubTest, DownloadCreatesCacheLayout) {
  const FakeFile& f = file("model.safetensors");
  const std::string path = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  const fs::path snap = repo_dir() / "snapshots" / kCommit / "model.safetensors";
  EXPECT_EQ(path, snap.string());
  EXPECT_EQ(read_file(repo_dir() / "refs" / "main"), kCommit);
  EXPECT_EQ(read_file(repo_dir() / "blobs" / f.etag), f.content);
  ASSERT_TRUE(fs::is_symlink(snap));
  EXPECT_EQ(fs::read_symlink(snap).string(), "../../blobs/" + f.etag);
  EXPECT_EQ(fs::canonical(snap), fs::canonical(repo_dir() / "blobs" / f.etag));
  EXPECT_EQ(read_file(path), f.content);
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / (f.etag + ".incomplete")));
  EXPECT_TRUE(fs::exists(cache / ".locks" / "models--kyutai--fake-model" / (f.etag + ".lock")));
  // HEAD on the resolve URL, then GET of the CDN location; identity encoding on both.
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].method, "HEAD");
  EXPECT_EQ(reqs[0].target, "/kyutai/fake-model/resolve/main/model.safetensors");
  EXPECT_EQ(reqs[1].method, "GET");
  EXPECT_EQ(reqs[1].target, "/cdn/" + f.etag);
  EXPECT_EQ(reqs[1].header("range"), "");
  for (const auto& r : reqs) EXPECT_EQ(r.header("accept-encoding"), "identity");
  EXPECT_EQ(moshi::hub_cached(cfg, kRepo, "model.safetensors"), path);
  EXPECT_EQ(moshi::hub_cached(cfg, kRepo, "model.safetensors", kCommit), path);
}

TEST_F(HubTest, SmallFilesAndNestedPaths) {
  const FakeFile& tok = file("tokenizer.model");
  const std::string p = moshi::hub_fetch(cfg, kRepo, "tokenizer.model");
  EXPECT_EQ(read_file(p), tok.content);
  EXPECT_TRUE(fs::is_regular_file(repo_dir() / "blobs" / tok.etag));  // W/"…" stripped
  const FakeFile& wav = file("voices/en/a.wav");
  const fs::path snap = repo_dir() / "snapshots" / kCommit / "voices" / "en" / "a.wav";
  EXPECT_EQ(moshi::hub_fetch(cfg, kRepo, "voices/en/a.wav"), snap.string());
  EXPECT_EQ(fs::read_symlink(snap).string(), "../../../../blobs/" + wav.etag);
  EXPECT_EQ(read_file(snap), wav.content);
}

TEST_F(HubTest, SecondFetchMakesNoRequest) {
  const std::string p1 = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  const size_t n = server.request_count();
  EXPECT_EQ(moshi::hub_fetch(cfg, kRepo, "model.safetensors"), p1);
  EXPECT_EQ(moshi::hub_fetch(cfg, kRepo, "model.safetensors", kCommit), p1);
  EXPECT_EQ(server.request_count(), n);
}

TEST_F(HubTest, CommitRevisionWritesNoRef) {
  const std::string p = moshi::hub_fetch(cfg, kRepo, "tokenizer.model", kCommit);
  EXPECT_EQ(p, (repo_dir() / "snapshots" / kCommit / "tokenizer.model").string());
  EXPECT_FALSE(fs::exists(repo_dir() / "refs"));
  EXPECT_EQ(moshi::hub_cached(cfg, kRepo, "tokenizer.model"), "");  // refs/main unknown
}

TEST_F(HubTest, OfflineFromEnvironment) {
  const std::string p = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  const size_t n = server.request_count();
  EnvGuard env;
  env.set("HF_HUB_OFFLINE", "1");
  env.set("HF_HUB_CACHE", cache.string());
  env.set("HF_ENDPOINT", server.url());
  const HubConfig off = moshi::hub_config_from_env();
  ASSERT_TRUE(off.offline);
  EXPECT_EQ(moshi::hub_fetch(off, kRepo, "model.safetensors"), p);
  const std::string err = error_of([&] { moshi::hub_fetch(off, kRepo, "tokenizer.model"); });
  EXPECT_EQ(err, "kyutai/fake-model: tokenizer.model is not in the Hugging Face cache (" + cache.string() +
                     ") and HF_HUB_OFFLINE is set; download it first or pass --model /path/to/a/local/directory");
  EXPECT_EQ(server.request_count(), n);
}

TEST_F(HubTest, OptionalMissingFileWritesNoExist) {
  EXPECT_EQ(moshi::hub_fetch(cfg, kRepo, "config.json", "main", /*optional=*/true), "");
  EXPECT_TRUE(fs::is_regular_file(repo_dir() / ".no_exist" / kCommit / "config.json"));
  EXPECT_EQ(read_file(repo_dir() / "refs" / "main"), kCommit);
  EXPECT_TRUE(moshi::hub_known_absent(cfg, kRepo, "config.json"));
  EXPECT_FALSE(moshi::hub_known_absent(cfg, kRepo, "model.safetensors"));
  const size_t n = server.request_count();
  EXPECT_EQ(moshi::hub_fetch(cfg, kRepo, "config.json", "main", true), "");
  HubConfig off = cfg;
  off.offline = true;
  EXPECT_EQ(moshi::hub_fetch(off, kRepo, "config.json", "main", true), "");
  EXPECT_EQ(server.request_count(), n);
  // Required: the server is asked again and the absence is an error.
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, kRepo, "config.json"); }),
            "kyutai/fake-model: config.json does not exist in the repository at revision 'main'");
}

TEST_F(HubTest, TokenSentAsBearer) {
  cfg.token = "hf_secret";
  moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& r : reqs) EXPECT_EQ(r.header("authorization"), "Bearer hf_secret") << r.target;
}

TEST_F(HubTest, TokenNotSentToAnotherHost) {
  TestServer cdn{[this](const HttpRequest& r) { return hub(r); }};
  hub.cdn_base = cdn.url();
  cfg.token = "hf_secret";
  const std::string p = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  EXPECT_EQ(read_file(p), file("model.safetensors").content);
  ASSERT_EQ(server.request_count(), 1u);
  EXPECT_EQ(server.requests()[0].header("authorization"), "Bearer hf_secret");
  ASSERT_EQ(cdn.request_count(), 1u);
  EXPECT_EQ(cdn.requests()[0].header("authorization"), "");
}

TEST_F(HubTest, ResumesAfterDroppedConnection) {
  const FakeFile& f = file("model.safetensors");
  hub.drop_once = true;
  const std::string p = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  EXPECT_EQ(read_file(p), f.content);
  std::vector<std::string> ranges;
  for (const auto& r : server.requests())
    if (r.method == "GET") ranges.push_back(r.header("range"));
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(f.content.size() / 2) + "-");
}

TEST_F(HubTest, ResumesExistingIncompleteFile) {
  const FakeFile& f = file("model.safetensors");
  fs::create_directories(repo_dir() / "blobs");
  std::ofstream(repo_dir() / "blobs" / (f.etag + ".incomplete"), std::ios::binary) << f.content.substr(0, 1000);
  const std::string p = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  EXPECT_EQ(read_file(p), f.content);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].header("range"), "bytes=1000-");
}

TEST_F(HubTest, CompleteIncompleteFileNeedsNoGet) {
  const FakeFile& f = file("model.safetensors");
  fs::create_directories(repo_dir() / "blobs");
  std::ofstream(repo_dir() / "blobs" / (f.etag + ".incomplete"), std::ios::binary) << f.content;
  EXPECT_EQ(read_file(moshi::hub_fetch(cfg, kRepo, "model.safetensors")), f.content);
  ASSERT_EQ(server.request_count(), 1u);  // the HEAD only
}

TEST_F(HubTest, ConcurrentFetchesDownloadOnce) {
  // The blob lock makes the second fetch wait and then reuse the first one's blob.
  const FakeFile& f = file("model.safetensors");
  std::string p1, p2, err;
  auto fetch = [&](std::string* out) {
    try {
      *out = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
    } catch (const moshi::Error& e) {
      err = e.what();  // an exception escaping a thread would abort the whole test binary
    }
  };
  std::thread t1(fetch, &p1);
  std::thread t2(fetch, &p2);
  t1.join();
  t2.join();
  ASSERT_EQ(err, "");
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(read_file(p1), f.content);
  EXPECT_TRUE(fs::is_symlink(p1));
  EXPECT_EQ(count_target(server, "/cdn/"), 1u);
}

TEST_F(HubTest, RestartsWhenServerIgnoresRange) {
  const FakeFile& f = file("model.safetensors");
  hub.ignore_range = true;
  fs::create_directories(repo_dir() / "blobs");
  std::ofstream(repo_dir() / "blobs" / (f.etag + ".incomplete"), std::ios::binary) << std::string(1000, 'x');
  const std::string p = moshi::hub_fetch(cfg, kRepo, "model.safetensors");
  EXPECT_EQ(read_file(p), f.content);
  EXPECT_EQ(server.requests().back().header("range"), "bytes=1000-");
}

TEST_F(HubTest, CorruptBodyFailsIntegrityCheck) {
  const FakeFile& f = file("model.safetensors");
  hub.corrupt = true;
  const std::string err = error_of([&] { moshi::hub_fetch(cfg, kRepo, "model.safetensors"); });
  std::string bad = f.content;
  bad[bad.size() / 3] ^= 0x5a;
  EXPECT_EQ(err, "kyutai/fake-model/model.safetensors: downloaded file does not match its SHA-256 (expected " + f.etag +
                     ", got " + moshi::sha256_hex(bad.data(), bad.size()) + ")");
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / f.etag));
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs" / (f.etag + ".incomplete")));
  EXPECT_EQ(moshi::hub_cached(cfg, kRepo, "model.safetensors"), "");
}

TEST_F(HubTest, UnreachableEndpoint) {
  // A port that was just free: nothing listens on it, so the connection is refused at once.
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(s);
  cfg.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const std::string err = error_of([&] { moshi::hub_fetch(cfg, kRepo, "model.safetensors"); });
  EXPECT_EQ(err.rfind("cannot download kyutai/fake-model/model.safetensors from " + cfg.endpoint + " (", 0), 0u) << err;
  EXPECT_NE(err.find("); check the network, set HF_ENDPOINT, or pass --model /path/to/a/local/directory"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find('\n'), std::string::npos);
}

TEST_F(HubTest, FollowsRelativeRedirect) {
  const std::string p = moshi::hub_fetch(cfg, "kyutai/old-name", "tokenizer.model");
  EXPECT_EQ(p, (cache / "models--kyutai--old-name" / "snapshots" / kCommit / "tokenizer.model").string());
  EXPECT_EQ(read_file(p), file("tokenizer.model").content);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);  // HEAD old name, HEAD new name, GET new name
  EXPECT_EQ(reqs[1].target, "/kyutai/fake-model/resolve/main/tokenizer.model");
}

TEST_F(HubTest, ServerErrorsAreOneLine) {
  const std::string ep = cfg.endpoint;
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, "kyutai/private", "model.safetensors"); }),
            "kyutai/private: repository not found on " + ep +
                " (private and gated repos need a token: set HF_TOKEN); check the name, or pass --model "
                "/path/to/a/local/directory");
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, "kyutai/gated", "model.safetensors"); }),
            "kyutai/gated: gated repository; accept its conditions on " + ep +
                "/kyutai/gated and set HF_TOKEN to a token of that account");
  cfg.token = "hf_wrong";
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, "kyutai/bad-token", "model.safetensors"); }),
            "kyutai/bad-token: the Hugging Face token was rejected (HTTP 401: Invalid credentials in Authorization "
            "header); check HF_TOKEN or the token file, or unset them for public repos");
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, kRepo, "model.safetensors", "v9"); }),
            "kyutai/fake-model: revision 'v9' not found on " + ep);
  EXPECT_EQ(error_of([&] { moshi::hub_fetch(cfg, kRepo, "nothing.bin", "main", false); }),
            "kyutai/fake-model: nothing.bin does not exist in the repository at revision 'main'");
  EXPECT_FALSE(fs::exists(repo_dir() / "blobs"));
}

TEST_F(HubTest, RejectsUnsafeNames) {
  EXPECT_THROW(moshi::hub_fetch(cfg, kRepo, "../../etc/passwd"), moshi::Error);
  EXPECT_THROW(moshi::hub_fetch(cfg, kRepo, "/etc/passwd"), moshi::Error);
  EXPECT_THROW(moshi::hub_fetch(cfg, kRepo, "model.safetensors", "../x"), moshi::Error);
  EXPECT_THROW(moshi::hub_fetch(cfg, "not-a-repo", "model.safetensors"), moshi::Error);
  EXPECT_EQ(server.request_count(), 0u);
}

}  // namespace
