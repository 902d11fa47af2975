// The data path without the coordinator, and big calls, on real daemons (synthetic "tiny" model):
// a client holding a placement keeps every call right while the coordinator is SIGKILLed and restarted
// on its state file; `moectl forward --cluster DEAD --workers ...` starts from the workers while the
// coordinator is down; a call whose worker shards exceed a reduced --max-frame-bytes is split and
// equals LocalEngine. Every output is checked against LocalEngine.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "runtime/model/safetensors_file.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

namespace fs = std::filesystem;

constexpr double kTolerance = 1e-4;  // f32 on the wire

ClusterClientOptions f32_client(std::chrono::milliseconds deadline) {
  ClusterClientOptions o;
  o.wire_dtype = wire::DType::F32;
  o.deadline = deadline;
  o.request_timeout = 500ms;
  return o;
}

TestClusterOptions tiny_cluster(int workers) {
  TestClusterOptions o;
  o.model_flags = tiny_model_flags();
  o.workers = workers;
  return o;
}

// "" when the call gave LocalEngine's output; else what went wrong.
std::string check_call(ClusterClient& client, const Job& job) {
  try {
    Matrix got = client.forward(job.layer, job.x);
    if (got.rows != job.want.rows || got.cols != job.want.cols) return "wrong shape";
    const double error = relative_error(got, job.want);
    return error < kTolerance ? "" : "WRONG OUTPUT: relative error " + std::to_string(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

void write_input(const fs::path& path, const Matrix& x) {
  TensorToWrite tensor{"hidden_states", DType::F32, {x.rows, x.cols}, std::as_bytes(std::span<const float>(x.data))};
  write_safetensors(path, std::span<const TensorToWrite>(&tensor, 1));
}

Matrix read_output(const fs::path& path) {
  auto file = SafetensorsFile::open(path);
  return read_matrix(*file, "hidden_states");
}

class ClientPath : public ClusterTest {};

TEST_F(ClientPath, ClientWithAPlacementMakesNoFailedCallAcrossACoordinatorRestart) {
  TestClusterOptions options = tiny_cluster(3);
  options.state_file = true;
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  auto reference = tiny_reference();
  std::vector<Job> jobs;
  for (size_t i = 0; i < 16; ++i) {
    Job job;
    job.layer = static_cast<int32_t>(i % 2);
    job.x = random_input(1 + static_cast<int64_t>((i * 11) % 48), reference->spec().hidden_size, 300 + i);
    job.want = reference->forward(job.layer, job.x);
    jobs.push_back(std::move(job));
  }
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  // The state file exists once the placement is saved: the restart below starts from it.
  const auto saved_by = std::chrono::steady_clock::now() + 5s;
  while (!fs::exists(cluster.state_file()) && std::chrono::steady_clock::now() < saved_by) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(fs::exists(cluster.state_file())) << cluster.state_file();

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (size_t n = 0; !stop.load() && n < 20000; ++n) {
        const Job& job = jobs[(t * 7 + n) % jobs.size()];
        std::string problem = check_call(client, job);
        ++calls;
        if (!problem.empty()) {
          std::lock_guard lock(failures_mutex);
          failures.push_back("thread " + std::to_string(t) + ", call " + std::to_string(n) + ": " + problem);
        }
      }
    });
  }
  auto calls_grow_by = [&](int count, std::chrono::milliseconds timeout) {
    const int target = calls.load() + count;
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (calls.load() < target && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    return calls.load() >= target;
  };
  std::string error;
  try {
    EXPECT_TRUE(calls_grow_by(50, 10s)) << "the calls did not get going";
    const uint64_t epoch = client.placement()->epoch();
    cluster.kill_coordinator();
    EXPECT_TRUE(calls_grow_by(100, 10s)) << "calls stalled while the coordinator was down";
    // A client started now gets model and placement from the workers.
    std::vector<std::string> workers;
    for (size_t i = 0; i < cluster.worker_count(); ++i) workers.push_back(cluster.worker_address(i));
    ClusterClient newcomer(ClusterEndpoints{cluster.coordinator_address(), workers}, f32_client(5s));
    EXPECT_EQ(newcomer.placement()->epoch(), epoch);
    for (const Job& job : jobs) EXPECT_EQ(check_call(newcomer, job), "") << "new client during the outage";
    EXPECT_FALSE(client.refresh_placement() && client.placement()->epoch() < epoch);

    cluster.start_coordinator();
    cluster.wait_for_placement("the restarted coordinator serving a placement",
                               [&](const ClientPlacement& p) { return p.epoch() >= epoch; }, 10s);
    EXPECT_TRUE(client.refresh_placement()) << "the client should refresh from the coordinator once it is back";
    EXPECT_GE(client.placement()->epoch(), epoch);
    EXPECT_TRUE(calls_grow_by(100, 10s)) << "calls stalled after the restart";
  } catch (const std::exception& e) {
    error = e.what();
  }
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed calls of " << calls.load()
                                << ", first: " << failures.front();
  std::cout << calls.load() << " calls across the restart, " << failures.size() << " failed, "
            << client.stats().retries << " shard retries\n";
}

TEST_F(ClientPath, MoectlForwardStartsFromTheWorkersWhileTheCoordinatorIsDown) {
  require_binaries({"moectl"});
  TestCluster& cluster = start_cluster(tiny_cluster(3));
  cluster.wait_ready();
  // Every worker has committed the placement once the first client call through them works.
  auto reference = tiny_reference();
  const Matrix x = random_input(57, reference->spec().hidden_size, 77);
  const Matrix want = reference->forward(1, x);
  ClusterClient probe(cluster.coordinator_address(), f32_client(5s));
  ASSERT_LT(relative_error(probe.forward(1, x), want), kTolerance);

  const std::string dead = cluster.coordinator_address();
  cluster.kill_coordinator();
  const fs::path input = cluster.dir() / "input.safetensors";
  write_input(input, x);
  std::string workers;
  for (size_t i = 0; i < cluster.worker_count(); ++i) workers += (i ? "," : "") + cluster.worker_address(i);
  for (int run = 0; run < 3; ++run) {  // three separate processes, none of which ever saw the coordinator
    const fs::path output = cluster.dir() / ("output" + std::to_string(run) + ".safetensors");
    const fs::path log = cluster.dir() / ("moectl-forward" + std::to_string(run) + ".log");
    const std::string status = run_to_completion(
        {bin_path("moectl"), "forward", "--cluster", dead, "--workers", workers, "--layer", "1", "--input",
         input.string(), "--output", output.string(), "--wire-dtype", "f32"},
        log, 30s);
    ASSERT_EQ(status, "exit 0") << "moectl forward with the coordinator down; its output:\n" << read_text(log);
    const Matrix got = read_output(output);
    ASSERT_EQ(got.rows, want.rows);
    EXPECT_LT(relative_error(got, want), kTolerance);
  }
}

TEST_F(ClientPath, ABigCallOverAReducedFrameLimitIsSplitAndEqualsLocalEngine) {
  require_binaries({"moectl"});
  constexpr const char* kLimit = "65536";  // 64 KiB: a worker's shard of 3000 tokens at hidden 64 is ~0.5 MiB
  TestClusterOptions options = tiny_cluster(2);
  options.worker_flags = {"--max-frame-bytes", kLimit};
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  auto reference = tiny_reference();
  const Matrix x = random_input(3000, reference->spec().hidden_size, 91);
  const Matrix want = reference->forward(0, x);

  const fs::path input = cluster.dir() / "big-input.safetensors";
  const fs::path output = cluster.dir() / "big-output.safetensors";
  write_input(input, x);
  const fs::path log = cluster.dir() / "moectl-forward-big.log";
  const std::string status = run_to_completion(
      {bin_path("moectl"), "forward", "--cluster", cluster.coordinator_address(), "--layer", "0", "--input",
       input.string(), "--output", output.string(), "--wire-dtype", "f32", "--max-frame-bytes", kLimit},
      log, 60s);
  ASSERT_EQ(status, "exit 0") << "moectl forward of 3000 tokens under a 64 KiB frame limit; its output:\n"
                              << read_text(log);
  const Matrix got = read_output(output);
  ASSERT_EQ(got.rows, want.rows);
  EXPECT_LT(relative_error(got, want), kTolerance);

  // The same through a library client with the default 64 MiB limit is refused by the workers' 64 KiB
  // (the connection closes): the split is what made the call above work.
  ClusterClientOptions unsplit = f32_client(2s);
  ClusterClient client(cluster.coordinator_address(), unsplit);
  EXPECT_ANY_THROW(client.forward(0, x));
}

}  // namespace
}  // namespace moe::integration
