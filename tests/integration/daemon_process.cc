// DaemonProcess: fork/exec with the output in a log file, bounded waits, kill in the destructor.
#include "tests/integration/daemon_process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace moe::integration {

namespace fs = std::filesystem;

DaemonProcess::DaemonProcess(std::vector<std::string> argv, fs::path log_path)
    : argv_(std::move(argv)), log_path_(std::move(log_path)) {
  if (argv_.empty()) throw std::runtime_error("DaemonProcess: empty command line");
  if (access(argv_[0].c_str(), X_OK) != 0)
    throw std::runtime_error("cannot start " + argv_[0] + ": " + std::strerror(errno) + " (is it built?)");
  fs::create_directories(log_path_.parent_path());
  std::vector<char*> args;
  for (auto& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  const std::string log = log_path_.string();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("cannot start " + argv_[0] + ": fork failed: " + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    // Unblock every signal the test runner may have blocked: the daemon sets its own mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;
}

DaemonProcess::~DaemonProcess() { kill_now(); }

DaemonProcess::DaemonProcess(DaemonProcess&& other) noexcept
    : pid_(other.pid_),
      argv_(std::move(other.argv_)),
      log_path_(std::move(other.log_path_)),
      exit_status_(std::move(other.exit_status_)) {
  other.pid_ = -1;
}

DaemonProcess& DaemonProcess::operator=(DaemonProcess&& other) noexcept {
  if (this != &other) {
    kill_now();
    pid_ = other.pid_;
    argv_ = std::move(other.argv_);
    log_path_ = std::move(other.log_path_);
    exit_status_ = std::move(other.exit_status_);
    other.pid_ = -1;
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

void DaemonProcess::reap(int status) {
  if (WIFEXITED(status)) exit_status_ = "exit " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) exit_status_ = "signal " + std::to_string(WTERMSIG(status));
  else exit_status_ = "ended";
  pid_ = -1;
}

bool DaemonProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reap(status);
    return false;
  }
  return true;
}

void DaemonProcess::kill(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

bool DaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void DaemonProcess::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) reap(status);
  pid_ = -1;
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
      throw std::runtime_error(command_line() + " exited (" + exit_status_ + ") before logging '" + marker + "'\n" +
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
