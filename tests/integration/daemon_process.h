// One daemon (moe-coordinator, moe-worker) or tool (moectl) run by an integration test: a ChildProcess
// (runtime/client/local_cluster_process.h: fork + exec, PR_SET_PDEATHSIG so it never outlives the test)
// with its stdout and stderr appended to one log file, the log's reading, bounded waits, and SIGKILL +
// reap in the destructor no matter how the test ended.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/client/local_cluster_process.h"

namespace moe::integration {

class DaemonProcess {
 public:
  DaemonProcess() = default;
  // Starts `argv[0]` (a path). Throws std::runtime_error naming the binary when it is missing.
  DaemonProcess(std::vector<std::string> argv, std::filesystem::path log_path);
  ~DaemonProcess();  // SIGKILL and reap when still running
  DaemonProcess(DaemonProcess&& other) noexcept;
  DaemonProcess& operator=(DaemonProcess&& other) noexcept;
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return child_.pid(); }
  const std::filesystem::path& log_path() const { return log_path_; }
  std::string command_line() const;
  // The whole log so far, and its last `lines` lines (for failure messages).
  std::string log() const;
  std::string log_tail(size_t lines = 30) const;

  // False once it has exited (reaps it); exit_status() then says how ("exit 1", "signal 9").
  bool running() { return child_.running(); }
  std::string exit_status() const { return child_.exit_status(); }
  void kill(int signal) { child_.signal(signal); }
  // Waits up to `timeout` for the process to exit; true when it did.
  bool wait_exit(std::chrono::milliseconds timeout);
  // SIGKILL and reap. Idempotent.
  void kill_now() { child_.kill_now(); }

  // Waits until the log holds a line containing `marker`, and returns the rest of that line after the
  // marker. Throws std::runtime_error (with the log tail) on timeout or when the process exits first.
  std::string wait_for_log_line(const std::string& marker, std::chrono::milliseconds timeout);

 private:
  std::vector<std::string> argv_;
  std::filesystem::path log_path_;
  ChildProcess child_;
};

// Runs a tool to completion (bounded by `timeout`, then SIGKILL). Returns its exit status text ("exit 0")
// and leaves its output in `log_path`.
std::string run_to_completion(std::vector<std::string> argv, const std::filesystem::path& log_path,
                              std::chrono::milliseconds timeout);

}  // namespace moe::integration
