// What the failure tests share (failover_test.cc, recovery_test.cc): reference jobs on the synthetic
// "tiny" model with their LocalEngine outputs, f32 client options, and one call judged against the
// reference (right, a deadline error that says so, or a problem).
#pragma once

#include <string>
#include <vector>

#include "runtime/client/cluster_client.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
inline namespace failover_util {

inline constexpr double kTolerance = 1e-4;  // f32 on the wire

// Inputs of 1..40 tokens on both MoE layers with their LocalEngine outputs, computed up front.
inline std::vector<Job> reference_jobs(size_t count) {
  auto reference = tiny_reference();
  std::vector<Job> jobs;
  for (size_t i = 0; i < count; ++i) {
    Job job;
    job.layer = static_cast<int32_t>(i % 2);
    job.x = random_input(1 + static_cast<int64_t>((i * 7) % 40), reference->spec().hidden_size, 100 + i);
    job.want = reference->forward(job.layer, job.x);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

inline ClusterClientOptions f32_client(std::chrono::milliseconds deadline) {
  ClusterClientOptions o;
  o.wire_dtype = wire::DType::F32;
  o.deadline = deadline;
  o.request_timeout = 500ms;
  return o;
}

inline TestClusterOptions tiny_cluster(int workers, int replicas) {
  TestClusterOptions o;
  o.model_flags = tiny_model_flags();
  o.workers = workers;
  o.replicas = replicas;
  return o;
}

// Three grace periods of the test clusters: a placement change is complete (released) after it.
inline std::chrono::milliseconds past_grace() { return std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms); }

// True when no expert of the tiny model has a replica on `worker`, and every expert has one somewhere.
inline bool placed_without(const ClientPlacement& p, uint32_t worker, const ModelSpec& spec) {
  for (int32_t layer : spec.moe_layers)
    for (int32_t e = 0; e < spec.experts_per_layer(); ++e) {
      const auto& replicas = p.replicas(layer, e);
      if (replicas.empty()) return false;
      for (const auto& r : replicas)
        if (r.worker_id == worker) return false;
    }
  return true;
}

// One forward call judged against the reference: right, a deadline error that says so, or a problem.
struct CallResult {
  bool right = false;
  bool deadline = false;
  std::string problem;  // wrong output, wrong shape, an error other than a deadline
};

inline CallResult run_call(ClusterClient& client, const Job& job) {
  CallResult result;
  try {
    Matrix got = client.forward(job.layer, job.x);
    if (got.rows != job.want.rows || got.cols != job.want.cols) {
      result.problem = "wrong shape " + std::to_string(got.rows) + "x" + std::to_string(got.cols);
    } else if (const double error = relative_error(got, job.want); !(error < kTolerance)) {
      result.problem = "WRONG OUTPUT: relative error " + std::to_string(error);
    } else {
      result.right = true;
    }
  } catch (const ClusterDeadlineError& e) {
    const std::string what = e.what();
    result.deadline = what.find("deadline") != std::string::npos;
    if (!result.deadline) result.problem = "a deadline error that does not say so: " + what;
  } catch (const std::exception& e) {
    result.problem = std::string("an error other than a deadline: ") + e.what();
  }
  return result;
}

// "" when the call gave the right output; else what happened (a deadline error included).
inline std::string expect_right(ClusterClient& client, const Job& job) {
  CallResult r = run_call(client, job);
  if (r.right) return "";
  return r.deadline ? "deadline error" : r.problem;
}

}  // namespace failover_util
}  // namespace moe::integration
