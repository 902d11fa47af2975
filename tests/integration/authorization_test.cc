// Issue 12 ("Let no one in and nothing grow without bound") against real daemons on 127.0.0.1: every
// reproduction of the issue, run as it was reported.
//   - With a cluster token on every process, heartbeats spoofed for a SIGSTOPped worker (on another
//     connection, with the token) no longer keep it listed: its lease runs out, its experts move.
//   - A Commit and a Release naming epoch 2^64-1 no longer disable a worker started without a token.
//   - Status, placement and router reads need the token; the token, given as a file, stays out of ps.
//   - A config.json claiming num_local_experts 1e9 is refused at once, in little memory.
//   - A coordinator stuck starting (its state file a FIFO nobody writes) still answers SIGTERM.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/client/cluster_client.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/net/io_pool.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/wire_error.h"
#include "tests/integration/failover_util.h"

extern char** environ;

namespace moe::integration {
namespace {

using namespace failover_util;

class Authorization : public ClusterTest {};

TEST_F(Authorization, SpoofedHeartbeatsDoNotKeepAStoppedWorkerListed) {
  TestClusterOptions options = tiny_cluster(2, 1);
  options.cluster_token = "tok-12";
  options.coordinator_flags = {"--rebalance-threshold", "0"};
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement before = cluster.wait_ready();
  const uint32_t stopped = TestCluster::worker_id(before, cluster.worker_address(0));
  cluster.worker(0).kill(SIGSTOP);

  IoPool pool(1);
  auto spoofer = Connection::connect(pool.context(), cluster.coordinator_address(), 2000ms);
  std::atomic<bool> spoofing{true};
  std::atomic<int> refused{0};
  std::thread spoof([&] {
    for (int i = 0; i < 300 && spoofing; ++i) {  // bounded: 300 x 50 ms
      capnp::MallocMessageBuilder message;
      auto heartbeat = message.initRoot<wire::Envelope>().initHeartbeat();
      heartbeat.setWorkerId(stopped);
      heartbeat.setEpoch(before.epoch());
      heartbeat.setWindowMs(1000);
      auto load = heartbeat.initLoad(1);
      load[0].setLayer(0);
      load[0].setExpert(0);
      load[0].setTokens(1u << 30);
      set_cluster_token(message, "tok-12");
      try {
        Frame reply = spoofer->request(message, 1000ms).get();
        if (reply.envelope().which() == wire::Envelope::ERROR) ++refused;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  std::string error;
  try {
    cluster.wait_for_status("the SIGSTOPped worker is listed dead despite the spoofed heartbeats",
                            [&](const ClusterStatus& s) {
                              const StatusWorker* w = s.find(cluster.worker_address(0));
                              return w && w->state == wire::WorkerState::DEAD;
                            },
                            10s);
  } catch (const std::exception& e) {
    error = e.what();
  }
  spoofing = false;
  spoof.join();
  spoofer->close();
  cluster.worker(0).kill(SIGCONT);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_GT(refused.load(), 0);
  // The survivor serves every expert; forwards with the right token get right answers.
  cluster.wait_for_placement("worker 0's experts moved", [&](const ClientPlacement& p) {
    return p.epoch() > before.epoch() && placed_without(p, stopped, tiny_reference()->spec());
  }, 10s);
  ClusterClientOptions client_options = f32_client(5s);
  client_options.cluster_token = "tok-12";
  ClusterClient client(cluster.coordinator_address(), client_options);
  for (const Job& job : reference_jobs(4)) EXPECT_EQ(expect_right(client, job), "");
}

TEST_F(Authorization, TwoFramesFromAStrangerDoNotDisableATokenlessWorker) {
  TestCluster& cluster = start_cluster(tiny_cluster(2, 1));  // the README's by-hand setup: no token
  const ClientPlacement before = cluster.wait_ready();
  IoPool pool(1);
  auto stranger = Connection::connect(pool.context(), cluster.worker_address(0), 2000ms);
  {
    capnp::MallocMessageBuilder message;
    auto placement = message.initRoot<wire::Envelope>().initCommit().initPlacement();
    placement.setEpoch(UINT64_MAX);
    Frame reply = stranger->request(message, 2000ms).get();
    ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR);
    EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::UNAUTHORIZED);
  }
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().initRelease().setEpoch(UINT64_MAX);
    Frame reply = stranger->request(message, 2000ms).get();
    ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR);
    EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::UNAUTHORIZED);
  }
  stranger->close();
  // The worker still serves the cluster's epoch: every forward is right.
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  for (const Job& job : reference_jobs(6)) EXPECT_EQ(expect_right(client, job), "");
  EXPECT_EQ(client.placement()->epoch(), before.epoch());
}

std::string cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(Authorization, ReadsNeedTheTokenAndATokenFileKeepsItOutOfPs) {
  TestClusterOptions options = tiny_cluster(1, 1);
  options.cluster_token = "tok-out-of-ps";
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  for (auto query : {&query_status, &query_placement}) {
    try {
      query(cluster.coordinator_address(), 2000ms, nullptr, {});
      ADD_FAILURE() << "a read without the token was answered";
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.code(), wire::ErrorCode::UNAUTHORIZED) << e.what();
    }
    EXPECT_NO_THROW(query(cluster.coordinator_address(), 2000ms, nullptr, "tok-out-of-ps"));
  }
  ClusterClientOptions no_token = f32_client(2s);
  EXPECT_THROW(ClusterClient(cluster.coordinator_address(), no_token), std::exception);  // the router weights
  for (pid_t pid : {cluster.coordinator().pid(), cluster.worker(0).pid()}) {
    const std::string line = cmdline(pid);
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.find("tok-out-of-ps"), std::string::npos) << "pid " << pid;
    EXPECT_NE(line.find("--cluster-token-file"), std::string::npos) << "pid " << pid;
  }
}

TEST_F(Authorization, AConfigClaimingABillionExpertsIsRefusedAtOnceInLittleMemory) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("moe-authz-1e9-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::copy(std::filesystem::path(MOE_TESTDATA_DIR) / "hf_moe" / "mixtral_f32", dir);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  config["num_local_experts"] = 1e9;
  std::ofstream(dir / "config.json") << config.dump();
  // Spawned here rather than through DaemonProcess: wait4 gives this one child's peak memory.
  const std::string log_path = (dir / "moe-coordinator.log").string();
  const std::string binary = bin_path("moe-coordinator");
  std::vector<std::string> args = {binary, "--listen", "127.0.0.1:0", "--model", dir.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, binary.c_str(), &files, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&files);
  int status = 0;
  rusage usage{};
  bool exited = false;
  for (int i = 0; i < 3000 && !exited; ++i) {  // bounded: 30 s; before issue 12 it ran 68 s on 16.8 GB
    exited = ::wait4(pid, &status, WNOHANG, &usage) == pid;
    if (!exited) std::this_thread::sleep_for(10ms);
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  std::ifstream in(log_path);
  const std::string log((std::istreambuf_iterator<char>(in)), {});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(exited) << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << log;
  EXPECT_NE(log.find("num_experts 1000000000 is over the bound"), std::string::npos) << log;
  EXPECT_LT(usage.ru_maxrss, 100 * 1024) << "KiB at the peak";
}

TEST_F(Authorization, SigtermWhileTheCoordinatorIsStillStartingIsAnswered) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("moe-authz-start-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // A state file nobody writes to (a FIFO): loading it blocks, as on a hung network filesystem.
  const std::filesystem::path fifo = dir / "state.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  DaemonProcess coordinator({bin_path("moe-coordinator"), "--listen", "127.0.0.1:0", "--synthetic", "tiny",
                             "--state-file", fifo.string()},
                            dir / "moe-coordinator.log");
  // Wait (bounded) until it blocks the stop signals, i.e. until it is past its flags and into its start.
  const std::string status_path = "/proc/" + std::to_string(coordinator.pid()) + "/status";
  bool blocked = false;
  for (int i = 0; i < 500 && !blocked; ++i) {
    std::ifstream in(status_path);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("SigBlk:", 0) == 0) blocked = (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1;
    }
    if (!blocked) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(blocked) << coordinator.log();
  std::this_thread::sleep_for(100ms);  // into load_state's open of the FIFO; a signal earlier is answered too
  coordinator.kill(SIGTERM);
  const bool exited = coordinator.wait_exit(10s);
  const std::string log = coordinator.log();
  if (!exited) coordinator.kill_now();
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(exited) << "SIGTERM not answered while starting:\n" << log;
  EXPECT_EQ(coordinator.exit_status(), "exit 0") << log;
  EXPECT_NE(log.find("while starting"), std::string::npos) << log;
}

}  // namespace
}  // namespace moe::integration
