// State file: JSON with an atomic replace, so a crash leaves either the old or the new file.
#include "coordinator/state_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "runtime/placement/placement_json.h"

namespace moe {

namespace {

constexpr int kFormat = 1;

[[noreturn]] void fail(const std::string& path, const std::string& step) {
  throw std::runtime_error("state file " + path + ": " + step + " failed: " + std::strerror(errno));
}

void write_all(int fd, const std::string& text, const std::string& path) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      fail(path, "write");
    }
    done += static_cast<size_t>(n);
  }
}

// A worker's control key, kept so that a restarted coordinator may move the epochs of workers it reloads
// before they register again (the file is written 0600).
std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return hex;
}

std::string from_hex(const std::string& hex) {
  auto value = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw std::runtime_error("state file: control_key is not lowercase hex");
  };
  if (hex.size() % 2 != 0 || hex.size() > 2 * 64) throw std::runtime_error("state file: control_key has a bad length");
  std::string bytes;
  for (size_t i = 0; i < hex.size(); i += 2) bytes += static_cast<char>(value(hex[i]) * 16 + value(hex[i + 1]));
  return bytes;
}

nlohmann::json worker_to_json(const WorkerRecord& w) {
  return {{"id", w.id},         {"address", w.address},           {"name", w.name},
          {"backend", w.backend}, {"memory_bytes", w.memory_bytes}, {"slots", w.slots},
          {"state", worker_state_name(w.state)}, {"control_key", to_hex(w.control_key)}};
}

WorkerRecord worker_from_json(const nlohmann::json& j) {
  WorkerRecord w;
  w.id = j.at("id").get<uint32_t>();
  w.address = j.at("address").get<std::string>();
  w.name = j.value("name", "");
  w.backend = j.value("backend", "");
  w.memory_bytes = j.value("memory_bytes", uint64_t{0});
  w.slots = j.value("slots", uint32_t{0});
  w.state = parse_worker_state(j.at("state").get<std::string>());
  w.control_key = from_hex(j.value("control_key", ""));
  return w;
}

}  // namespace

void check_state_file_writable(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path file = fs::absolute(path);
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw std::runtime_error("state file " + path + " is a folder, not a file");
  const fs::path folder = file.parent_path();
  if (!fs::is_directory(folder, ec)) {
    throw std::runtime_error("state file " + path + ": its folder " + folder.string() + " does not exist");
  }
  const fs::path probe = folder / (file.filename().string() + ".probe-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    throw std::runtime_error("state file " + path + " cannot be written: creating a file in " + folder.string() +
                             " failed: " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  if (fs::exists(file, ec) && ::access(file.c_str(), W_OK) != 0) {
    throw std::runtime_error("state file " + path + " exists but cannot be written: " + std::strerror(errno));
  }
}

void save_state(const std::string& path, const SavedState& state) {
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& worker : state.workers) workers.push_back(worker_to_json(worker));
  nlohmann::json json = {{"format", kFormat},
                         {"next_worker_id", state.next_worker_id},
                         {"placement", placement_to_json(state.placement)},
                         {"weight_source", state.weight_source},
                         {"workers", std::move(workers)}};
  if (!state.layer_source.empty()) json["layer_source"] = state.layer_source;
  const std::string text = json.dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail(tmp, "open");
  write_all(fd, text, tmp);
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail(tmp, "fsync");
  }
  if (::close(fd) != 0) fail(tmp, "close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "rename from " + tmp);
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {  // durability of the rename; best effort on filesystems that refuse it
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::optional<SavedState> load_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (!std::filesystem::exists(path)) return std::nullopt;
    throw std::runtime_error("state file " + path + ": cannot be read");
  }
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json json = nlohmann::json::parse(text.str());
    const int format = json.at("format").get<int>();
    if (format != kFormat) {
      throw std::runtime_error("format " + std::to_string(format) + ", expected " + std::to_string(kFormat));
    }
    SavedState state;
    state.placement = placement_from_json(json.at("placement"));
    state.next_worker_id = json.at("next_worker_id").get<uint32_t>();
    if (json.contains("weight_source")) state.weight_source = json.at("weight_source").get<std::string>();
    if (json.contains("layer_source")) state.layer_source = json.at("layer_source").get<std::string>();
    for (const auto& worker : json.at("workers")) state.workers.push_back(worker_from_json(worker));
    return state;
  } catch (const std::exception& e) {
    throw std::runtime_error("state file " + path + " is invalid: " + e.what());
  }
}

}  // namespace moe
