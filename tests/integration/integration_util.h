// Helpers shared by the integration tests: a fixture that names each test's log folder and prints the
// daemons' logs when the test failed, random inputs, the synthetic "tiny" reference (LocalEngine),
// and the testdata's relative error.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/synthetic_model.h"
#include "tests/common/random_matrix.h"
#include "tests/integration/test_cluster.h"
#include "tests/unit/engine/testdata_cases.h"

namespace moe::integration {

using test::random_input;

using testdata::relative_error;

// Resident memory of a process in bytes, from /proc/PID/status (0 when it cannot be read).
inline uint64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      uint64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One forward a load-driving test sends: the layer, the input and LocalEngine's output for it.
struct Job {
  int32_t layer = 0;
  Matrix x;
  Matrix want;
};

// The synthetic model every failure test runs ("synthetic:tiny:0": mixtral, hidden 64, 8 experts top-2,
// layers 0 and 1), and its single-process reference.
inline std::vector<std::string> tiny_model_flags() { return {"--synthetic", "tiny", "--seed", "0"}; }
inline std::unique_ptr<LocalEngine> tiny_reference() {
  auto source = SyntheticLayerSource::from_preset("tiny", 0);
  return std::make_unique<LocalEngine>(*source, make_cpu_backend(1));
}

// Fails the test at once when a binary is missing (never skipped).
inline void require_binaries(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const std::filesystem::path path = bin_path(name);
    ASSERT_TRUE(std::filesystem::exists(path)) << name << " is missing at " << path << ": build it (ninja " << name
                                               << ") before the integration tests";
  }
}

// Owns the test's cluster; prints every daemon's last log lines when the test failed.
class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { require_binaries({"moe-coordinator", "moe-worker"}); }
  // Kills the daemons; keeps their logs when the test failed, removes them otherwise.
  void TearDown() override {
    if (!cluster_) return;
    const std::filesystem::path dir = cluster_->dir();
    const bool failed = HasFailure();
    if (failed) std::cout << "logs in " << dir << "\n" << cluster_->logs() << "\n";
    cluster_.reset();
    if (!failed) {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
      std::filesystem::remove(dir.parent_path(), ignored);  // only when no other test left logs there
    }
  }
  TestCluster& start_cluster(TestClusterOptions options) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    for (auto& c : name)
      if (c == '/') c = '_';
    cluster_ = std::make_unique<TestCluster>(name, std::move(options));
    return *cluster_;
  }
  std::unique_ptr<TestCluster> cluster_;
};

}  // namespace moe::integration
