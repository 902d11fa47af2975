// ChildProcess: fork/exec with PR_SET_PDEATHSIG, and SIGTERM-then-SIGKILL stopping (see the header).
#include "runtime/client/local_cluster_process.h"

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace moe {

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::string& output_path, Output output) {
  if (argv.empty()) throw std::runtime_error("ChildProcess: empty command line");
  name_ = std::filesystem::path(argv[0]).filename().string();
  if (access(argv[0].c_str(), X_OK) != 0)
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(errno) + " (is it built?)");
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("cannot start " + argv[0] + ": fork failed: " + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    if (!output_path.empty()) {
      int fd = open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        if (output == Output::kStdoutAndStderr) dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    // Unblock every signal the launcher may have blocked (a test runner, a daemon): the child sets its own.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;
}

ChildProcess::~ChildProcess() { stop(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), name_(std::move(other.name_)), exit_status_(std::move(other.exit_status_)) {
  other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = other.pid_;
    name_ = std::move(other.name_);
    exit_status_ = std::move(other.exit_status_);
    other.pid_ = -1;
  }
  return *this;
}

void ChildProcess::reap(int status) {
  if (WIFEXITED(status)) exit_status_ = "exit " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) exit_status_ = std::string("signal ") + std::to_string(WTERMSIG(status));
  else exit_status_ = "ended";
  pid_ = -1;
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reap(status);
    return false;
  }
  return true;
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

void ChildProcess::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) reap(status);
  pid_ = -1;
}

bool ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return false;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill_now();
  return false;
}

}  // namespace moe
