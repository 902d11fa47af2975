// The moe-worker executable: --help, flag errors, the CUDA guard, and a real process that prints its
// listening line, registers with a (fake) coordinator, serves, and exits 0 on SIGTERM.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>

#include "tests/unit/worker/worker_harness.h"
#include "worker/backend_factory.h"

namespace moe::test {
namespace {

const std::string kWorker = std::string(MOE_BIN_DIR) + "/moe-worker";

// A child process running moe-worker with `args`; its stdout comes back through a pipe, its stderr
// goes to the test's stderr.
class WorkerProcess {
 public:
  explicit WorkerProcess(std::vector<std::string> args) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv{const_cast<char*>(kWorker.c_str())};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(kWorker.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~WorkerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
  }

  // Reads stdout until a newline (blocking).
  std::string read_line() {
    std::string line;
    char c;
    while (read(out_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  // The exit status (-1 on a signal or a timeout).
  int wait_exit(std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  void signal(int sig) { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
};

TEST(WorkerProcess, HelpListsTheFlags) {
  WorkerProcess process({"--help"});
  std::string text;
  for (int i = 0; i < 200; ++i) text += process.read_line() + "\n";
  EXPECT_EQ(process.wait_exit(), 0);
  for (const char* flag : {"--coordinator", "--listen", "--backend", "--threads", "--metrics-port", "--name",
                           "--memory-bytes", "--slots", "--cluster-token", "--max-queue", "--batch-wait-us",
                           "MOE_COORDINATOR", "MOE_BATCH_WAIT_US"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag << " missing from --help:\n" << text;
  }
}

TEST(WorkerProcess, MissingCoordinatorIsAnError) {
  WorkerProcess process({"--listen", "127.0.0.1:0"});
  EXPECT_NE(process.wait_exit(), 0);
}

TEST(WorkerProcess, CudaBackendOnlyWhereBuilt) {
#ifdef MOE_HAVE_CUDA_BACKEND
  GTEST_SKIP() << "this build has the CUDA backend";
#else
  try {
    make_worker_backend("cuda", 0);
    FAIL() << "make_worker_backend(cuda) succeeded in a build without CUDA";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("this build has no CUDA backend"), std::string::npos) << e.what();
  }
  WorkerProcess process({"--coordinator", "127.0.0.1:1", "--backend", "cuda"});
  EXPECT_EQ(process.wait_exit(), 1);
#endif
}

TEST(WorkerProcess, RegistersServesAndExitsCleanlyOnSigterm) {
  IoPool pool(2);
  FakeCoordinator coordinator(pool.context(), "synthetic:tiny:0");
  WorkerProcess process({"--coordinator", coordinator.address(), "--threads", "1", "--name", "proc"});
  std::string line = process.read_line();
  std::smatch match;
  ASSERT_TRUE(std::regex_match(line, match, std::regex("moe-worker listening on (127\\.0\\.0\\.1:[0-9]+)"))) << line;
  const std::string address = match[1];
  ASSERT_TRUE(coordinator.wait_registrations(1));
  EXPECT_EQ(coordinator.registrations().front().address, address);
  EXPECT_EQ(coordinator.registrations().front().name, "proc");

  auto control = Connection::connect(pool.context(), address, 2000ms);
  capnp::MallocMessageBuilder prepare;
  auto load = prepare.initRoot<wire::Envelope>().initPrepare();
  load.setEpoch(1);
  load.initLoad(1)[0].setExpert(2);
  const std::string key = coordinator.registrations().front().control_key;  // as the coordinator does
  prepare.getRoot<wire::Envelope>().setControlKey(
      capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(key.data()), key.size()));
  EXPECT_EQ(control->request(prepare, 10s).get().envelope().which(), wire::Envelope::PREPARE_ACK);
  ForwardCall call;
  call.x = random_hidden(2, 64, 3);
  call.assignments = {{1, 2, 1.f}};
  capnp::MallocMessageBuilder request;
  build_forward(request, call);
  Reference reference("synthetic:tiny:0");
  Matrix want = reference.compute(0, call.x, call.assignments);
  EXPECT_LT(max_relative_error(forward_output(control->request(request, 10s).get()), want), 1e-5);

  process.signal(SIGTERM);
  EXPECT_EQ(process.wait_exit(), 0);
  control->close();
}

}  // namespace
}  // namespace moe::test
