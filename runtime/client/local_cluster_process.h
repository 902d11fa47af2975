// A child process of a launcher (moectl demo, bench cluster, the integration tests' DaemonProcess):
// fork + exec with the child set to die when the launching thread dies (prctl PR_SET_PDEATHSIG, so
// start children from a thread that outlives them, e.g. main), no signal blocked, stdin from
// /dev/null, stderr (or stdout and stderr) optionally appended to a file, and a polite stop (SIGTERM,
// wait, then SIGKILL) or an immediate one.
#pragma once

#include <chrono>
#include <string>
#include <sys/types.h>
#include <vector>

namespace moe {

class ChildProcess {
 public:
  ChildProcess() = default;
  enum class Output { kStderr, kStdoutAndStderr };
  // Starts `argv[0]` (a path) with `argv`. stderr (and stdout with kStdoutAndStderr) goes to
  // `output_path` when given (appended), else it is inherited. Throws std::runtime_error naming the
  // program when it does not exist or fork fails.
  ChildProcess(std::vector<std::string> argv, const std::string& output_path = "", Output output = Output::kStderr);
  ~ChildProcess();  // stop()
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // False once it exited (reaps it); exit_status() then says how: "exit 1", "signal 9".
  bool running();
  std::string exit_status() const { return exit_status_; }
  void signal(int sig);
  // SIGTERM, wait up to `grace`, then SIGKILL and wait. True when it ended on SIGTERM. Idempotent.
  bool stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  // SIGKILL and reap. Idempotent.
  void kill_now();

 private:
  void reap(int status);
  pid_t pid_ = -1;
  std::string name_;
  std::string exit_status_;
};

}  // namespace moe
