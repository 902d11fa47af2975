// DaemonProcess: a ChildProcess with its output in a log file, bounded waits, kill in the destructor.
#include "tests/integration/daemon_process.h"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace moe::integration {

namespace fs = std::filesystem;

DaemonProcess::DaemonProcess(std::vector<std::string> argv, fs::path log_path)
    : argv_(std::move(argv)), log_path_(std::move(log_path)) {
  if (argv_.empty()) throw std::runtime_error("DaemonProcess: empty command line");
  fs::create_directories(log_path_.parent_path());
  child_ = ChildProcess(argv_, log_path_.string(), ChildProcess::Output::kStdoutAndStderr);
}

DaemonProcess::~DaemonProcess() { kill_now(); }

DaemonProcess::DaemonProcess(DaemonProcess&& other) noexcept
    : argv_(std::move(other.argv_)), log_path_(std::move(other.log_path_)), child_(std::move(other.child_)) {}

DaemonProcess& DaemonProcess::operator=(DaemonProcess&& other) noexcept {
  if (this != &other) {
    kill_now();  // then the ChildProcess assignment has nothing left to stop
    argv_ = std::move(other.argv_);
    log_path_ = std::move(other.log_path_);
    child_ = std::move(other.child_);
  }
  return *this;
}

std::string DaemonProcess::command_line() const {
  std::string out;
  for (const auto& a : argv_) out += (out.empty() ? "" : " ") + a;
  return out;
}

std::string DaemonProcess::log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string DaemonProcess::log_tail(size_t lines) const {
  const std::string text = log();
  size_t start = text.size();
  size_t seen = 0;
  while (start > 0) {
    if (text[start - 1] == '\n' && start != text.size() && ++seen == lines) break;
    --start;
  }
  return "---- last lines of " + log_path_.string() + " (" + command_line() + ")\n" + text.substr(start);
}

bool DaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string DaemonProcess::wait_for_log_line(const std::string& marker, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string text = log();
    const size_t at = text.find(marker);
    if (at != std::string::npos) {
      const size_t end = text.find('\n', at);
      if (end != std::string::npos) return text.substr(at + marker.size(), end - at - marker.size());
    }
    if (!running())
      throw std::runtime_error(command_line() + " exited (" + exit_status() + ") before logging '" + marker + "'\n" +
                               log_tail());
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("no '" + marker + "' in the log of " + command_line() + " after " +
                               std::to_string(timeout.count()) + " ms\n" + log_tail());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string run_to_completion(std::vector<std::string> argv, const fs::path& log_path,
                              std::chrono::milliseconds timeout) {
  DaemonProcess process(std::move(argv), log_path);
  if (!process.wait_exit(timeout)) {
    process.kill_now();
    return "killed after " + std::to_string(timeout.count()) + " ms";
  }
  return process.exit_status();
}

}  // namespace moe::integration
