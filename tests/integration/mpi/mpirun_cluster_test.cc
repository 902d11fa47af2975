// One real `mpirun` starts moe-coordinator and three moe-workers on loopback; the workers learn the
// coordinator's address and their names from MPI (no --coordinator flag). `moectl forward --cluster`
// through it matches the mixtral_f32 testdata (f32 wire, relative error < 1e-4). Stopping: SIGUSR1 to
// mpirun (what ops/mpi/launch.sh sends) ends every rank through MPI_Finalize with status 0; SIGTERM to
// mpirun stops every daemon's service, then OpenMPI 4 ends the job itself and mpirun exits 1. A
// coordinator that cannot start ends the whole job with its reason in the workers' logs, never a hang.
// ops/mpi/launch.sh starts the same kind of job and turns its own SIGTERM into that clean stop.
#include <gtest/gtest.h>

#include <signal.h>

#include <thread>

#include "runtime/client/client_placement.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/model/safetensors_file.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr double kTolerance = 1e-4;
constexpr int kWorkers = 3;

// The documented command (ops/mpi/README.md), with the settings a loopback-only container needs.
std::vector<std::string> mpirun_command(const std::vector<std::string>& model_flags) {
  std::vector<std::string> argv = {MOE_MPIRUN, "--allow-run-as-root", "--oversubscribe", "--tag-output",
                                   "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo",
                                   "--mca", "oob_tcp_if_include", "lo",
                                   "-np", "1", bin_path("moe-coordinator"), "--listen", "127.0.0.1:0",
                                   "--min-workers", std::to_string(kWorkers)};
  argv.insert(argv.end(), model_flags.begin(), model_flags.end());
  for (const std::string& a : {std::string(":"), std::string("-np"), std::to_string(kWorkers), bin_path("moe-worker"),
                               std::string("--listen"), std::string("127.0.0.1:0"), std::string("--threads"),
                               std::string("1")})
    argv.push_back(a);
  return argv;
}

size_t count_lines_with(const std::string& log, const std::string& text) {
  size_t n = 0;
  for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + text.size())) ++n;
  return n;
}

class MpirunCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    require_binaries({"moe-coordinator", "moe-worker", "moectl"});
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("moe-mpi-" + std::to_string(getpid())) / info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (mpirun_.pid() > 0 && mpirun_.running()) {  // let OpenMPI end its ranks before the SIGKILL
      mpirun_.kill(SIGTERM);
      mpirun_.wait_exit(10s);
    }
    if (HasFailure()) {
      std::cout << "logs in " << dir_ << "\n" << (mpirun_.pid() > 0 ? mpirun_.log_tail(60) : "") << "\n";
    } else {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
      fs::remove(dir_.parent_path(), ignored);
    }
  }

  // Starts the job and waits for the coordinator's address and a committed placement on all workers.
  std::string start(const std::vector<std::string>& model_flags) {
    mpirun_ = DaemonProcess(mpirun_command(model_flags), dir_ / "mpirun.log");
    const std::string address = mpirun_.wait_for_log_line("moe-coordinator listening on ", 20s);
    const auto deadline = std::chrono::steady_clock::now() + 25s;
    std::string last = "no reply yet";
    while (std::chrono::steady_clock::now() < deadline) {
      if (!mpirun_.running()) throw std::runtime_error("mpirun exited (" + mpirun_.exit_status() + ")");
      try {
        ClientPlacement p(query_placement(address, 1000ms).envelope().getPlacement());
        size_t active = 0;
        for (const auto& w : p.workers()) active += w.state == WorkerState::Active;
        if (p.epoch() >= 1 && active == kWorkers) return address;
        last = "epoch " + std::to_string(p.epoch()) + ", " + std::to_string(active) + " active workers";
      } catch (const std::exception& e) {
        last = e.what();
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("the mpirun cluster at " + address + " was not ready in 25 s: " + last);
  }

  fs::path dir_;
  DaemonProcess mpirun_;
};

TEST_F(MpirunCluster, MoectlForwardMatchesTestdataAndSigusr1FinalizesEveryRank) {
  const fs::path model = testdata::hf_moe_dir() / "mixtral_f32";
  const auto cases = testdata::cases_of(model);
  ASSERT_FALSE(cases.empty()) << model;
  const std::string address = start({"--model", model.string()});
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  // The workers were given no --coordinator: MPI told them, and named them by rank.
  const std::string started = mpirun_.log();
  for (int rank = 1; rank <= kWorkers; ++rank)
    EXPECT_NE(started.find("[1," + std::to_string(rank) + "]<stdout>:moe-worker listening on 127.0.0.1:"),
              std::string::npos)
        << "rank " << rank;
  EXPECT_EQ(count_lines_with(started, "coordinator " + address + ")"), size_t(kWorkers));

  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const fs::path input = dir_ / ("input" + std::to_string(i) + ".safetensors");
    const fs::path output = dir_ / ("output" + std::to_string(i) + ".safetensors");
    TensorToWrite tensor{"hidden_states", DType::F32, {c.input.rows, c.input.cols},
                         std::as_bytes(std::span<const float>(c.input.data))};
    write_safetensors(input, std::span<const TensorToWrite>(&tensor, 1));
    const fs::path log = dir_ / ("moectl-forward" + std::to_string(i) + ".log");
    const std::string status = run_to_completion(
        {bin_path("moectl"), "forward", "--cluster", address, "--layer", std::to_string(c.layer), "--input",
         input.string(), "--output", output.string(), "--wire-dtype", "f32"},
        log, 20s);
    ASSERT_EQ(status, "exit 0") << c.name << ": moectl forward failed; its output:\n" << read_text(log);
    Matrix got = read_matrix(*SafetensorsFile::open(output), "hidden_states");
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    ASSERT_EQ(got.cols, c.expected.cols) << c.name;
    EXPECT_LT(relative_error(got, c.expected), kTolerance) << c.name << " through the mpirun cluster";
  }

  mpirun_.kill(SIGUSR1);  // forwarded by mpirun to every rank
  ASSERT_TRUE(mpirun_.wait_exit(20s)) << "mpirun still running 20 s after SIGUSR1";
  EXPECT_EQ(mpirun_.exit_status(), "exit 0");
  const std::string log = mpirun_.log();
  EXPECT_EQ(count_lines_with(log, "moe-coordinator: MPI finalized (rank 0 of 4)"), 1u);
  EXPECT_EQ(count_lines_with(log, "moe-worker: MPI finalized (rank "), size_t(kWorkers));
  EXPECT_EQ(count_lines_with(log, "received SIGUSR1, shutting down"), size_t(kWorkers));
}

TEST_F(MpirunCluster, SigtermToMpirunStopsEveryDaemon) {
  start(tiny_model_flags());
  mpirun_.kill(SIGTERM);
  ASSERT_TRUE(mpirun_.wait_exit(20s)) << "mpirun still running 20 s after SIGTERM";
  // OpenMPI 4 treats SIGTERM to mpirun as killing the job: exit 1 after every rank got SIGTERM.
  EXPECT_EQ(mpirun_.exit_status(), "exit 1");
  const std::string log = mpirun_.log();
  EXPECT_EQ(count_lines_with(log, "moe-coordinator: stopping on signal SIGTERM"), 1u);
  EXPECT_EQ(count_lines_with(log, "moe-coordinator: stopped"), 1u);
  EXPECT_EQ(count_lines_with(log, "received SIGTERM, shutting down"), size_t(kWorkers));
  EXPECT_EQ(count_lines_with(log, "]: stopped"), size_t(kWorkers));
}

TEST_F(MpirunCluster, CoordinatorThatCannotStartEndsTheJobWithItsReason) {
  const fs::path missing = dir_ / "no-such-model";
  mpirun_ = DaemonProcess(mpirun_command({"--model", missing.string()}), dir_ / "mpirun.log");
  ASSERT_TRUE(mpirun_.wait_exit(30s)) << "mpirun still running 30 s after a failed coordinator start";
  EXPECT_NE(mpirun_.exit_status(), "exit 0");
  const std::string log = mpirun_.log();
  EXPECT_GE(count_lines_with(log, "the moe-coordinator (rank 0) failed to start: "), 1u) << mpirun_.log_tail(40);
  EXPECT_NE(log.find(missing.string()), std::string::npos) << "the reason should name the missing folder";
}

TEST_F(MpirunCluster, LaunchScriptStartsTheJobAndStopsItCleanlyOnSigterm) {
  ::setenv("MOE_MPIRUN_ARGS",
           "--allow-run-as-root --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo "
           "--mca oob_tcp_if_include lo",
           1);
  ::setenv("MOE_WORKER_ARGS", "--listen 127.0.0.1:0 --threads 1", 1);
  ::setenv("MOE_TLS_DIR", (dir_ / "tls").c_str(), 1);  // TLS by default: certificates made there
  mpirun_ = DaemonProcess({std::string(MOE_OPS_DIR) + "/mpi/launch.sh", "--bin", fs::path(bin_path("moe-worker")).parent_path().string(),
                           "--workers", "2", "--", "--listen", "127.0.0.1:0", "--synthetic", "tiny"},
                          dir_ / "launch.log");
  ::unsetenv("MOE_MPIRUN_ARGS");
  ::unsetenv("MOE_WORKER_ARGS");
  ::unsetenv("MOE_TLS_DIR");
  const std::string address = mpirun_.wait_for_log_line("moe-coordinator listening on ", 20s);
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  mpirun_.wait_for_log_line("released on 2 worker(s)", 20s);  // the first placement is in force

  mpirun_.kill(SIGTERM);  // to the script, which sends SIGUSR1 to mpirun
  ASSERT_TRUE(mpirun_.wait_exit(20s)) << "launch.sh still running 20 s after SIGTERM";
  EXPECT_EQ(mpirun_.exit_status(), "exit 0");
  const std::string log = mpirun_.log();
  EXPECT_EQ(count_lines_with(log, "moe-coordinator: MPI finalized (rank 0 of 3)"), 1u);
  EXPECT_EQ(count_lines_with(log, "moe-worker: MPI finalized (rank "), 2u);
  EXPECT_GE(count_lines_with(log, "with mutual TLS"), 3u) << "coordinator and both workers should say so";
  EXPECT_TRUE(fs::exists(dir_ / "tls" / "node.pem"));
}

}  // namespace
}  // namespace moe::integration
