// Shared by the update-weights integration tests: the served Qwen2-MoE testdata checkpoint, a perturbed
// copy of it (another model of the same shapes), jobs with both models' LocalEngine outputs, and a checked
// load of three client threads that judges every reply against them (old or new, never a mix).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "runtime/model/hf_checkpoint_writer.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {

constexpr double kTolerance = 1e-3;  // f32 on the wire against LocalEngine (bf16 weights)

inline std::filesystem::path served_dir() { return std::filesystem::path(MOE_TESTDATA_DIR) / "hf_moe" / "qwen2_moe_bf16"; }

// Another model of the same shapes: routers rotated by one expert (and their correction biases), the
// shared expert's gate negated, every expert's gate and up scaled, down negated and scaled.
class PerturbedSource : public LayerSource {
 public:
  explicit PerturbedSource(std::shared_ptr<const LayerSource> base) : base_(std::move(base)) {}
  const ModelSpec& spec() const override { return base_->spec(); }

  RouterWeights router_weights(int32_t layer) const override {
    RouterWeights w = base_->router_weights(layer);
    const auto row = static_cast<size_t>(w.gate.cols);
    std::rotate(w.gate.data.begin(), w.gate.data.begin() + static_cast<std::ptrdiff_t>(row), w.gate.data.end());
    if (!w.correction_bias.empty()) std::rotate(w.correction_bias.begin(), w.correction_bias.begin() + 1, w.correction_bias.end());
    for (float& v : w.shared_gate) v = -v;
    return w;
  }

  ExpertWeights expert_weights(int32_t layer, int32_t expert) const override {
    ExpertWeights base = base_->expert_weights(layer, expert);
    struct Owned {
      std::vector<float> gate, up, down;
      std::shared_ptr<const void> base;  // the biases' storage, when any
    };
    auto owned = std::make_shared<Owned>();
    owned->base = base.owner;
    auto scaled = [](const WeightMatrixView& m, float factor, std::vector<float>& out) {
      out.resize(static_cast<size_t>(m.rows * m.cols));
      convert_to_f32(m.dtype, m.data, out.data(), out.size());
      for (float& v : out) v *= factor;
      return WeightMatrixView{DType::F32, out.data(), m.rows, m.cols};
    };
    ExpertWeights w;
    w.view = base.view;
    w.view.gate = scaled(base.view.gate, 1.25f, owned->gate);
    w.view.up = scaled(base.view.up, 0.9f, owned->up);
    w.view.down = scaled(base.view.down, -0.8f, owned->down);
    w.owner = owned;
    return w;
  }

 private:
  std::shared_ptr<const LayerSource> base_;
};

// Writes the new checkpoint into `dir` (bf16, as the served one).
inline void write_perturbed(const std::filesystem::path& dir) {
  auto base = std::make_shared<HfLayerSource>(served_dir());
  PerturbedSource perturbed(base);
  write_hf_checkpoint(perturbed, dir, DType::BF16);
}

inline std::unique_ptr<LocalEngine> engine_of(const std::filesystem::path& dir) {
  HfLayerSource source(dir);
  return std::make_unique<LocalEngine>(source, make_cpu_backend(1));
}

// An input with both models' outputs.
struct TwoModelJob {
  int32_t layer = 0;
  Matrix x;
  Matrix old_out, new_out;
};

inline std::vector<TwoModelJob> make_jobs(const std::filesystem::path& new_dir, size_t count) {
  auto old_engine = engine_of(served_dir());
  auto new_engine = engine_of(new_dir);
  const ModelSpec& spec = old_engine->spec();
  std::vector<TwoModelJob> jobs;
  for (size_t i = 0; i < count; ++i) {
    TwoModelJob job;
    job.layer = spec.moe_layers[i % spec.moe_layers.size()];
    job.x = random_input(1 + static_cast<int64_t>((i * 5) % 24), spec.hidden_size, 500 + static_cast<uint32_t>(i));
    job.old_out = old_engine->forward(job.layer, job.x);
    job.new_out = new_engine->forward(job.layer, job.x);
    jobs.push_back(std::move(job));
  }
  // The two models must differ on every job, or a mix could pass for one of them.
  for (const auto& job : jobs) EXPECT_GT(relative_error(job.new_out, job.old_out), 0.1);
  return jobs;
}

inline ClusterClientOptions f32_client() {
  ClusterClientOptions o;
  o.wire_dtype = wire::DType::F32;
  o.deadline = 10s;
  o.request_timeout = 2s;
  return o;
}

// Three client threads calling in a loop (bounded in count and time), every reply judged.
class CheckedLoad {
 public:
  CheckedLoad(const std::string& coordinator, const std::vector<TwoModelJob>& jobs) : jobs_(jobs) {
    for (int t = 0; t < 3; ++t) {
      threads_.emplace_back([this, coordinator, t] { run(coordinator, t); });
    }
  }
  ~CheckedLoad() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  // Waits until `count` more calls of `version` (0: any) completed; false after `timeout`.
  bool wait_for(uint64_t version, size_t count, std::chrono::milliseconds timeout) {
    const size_t start = calls_of(version);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (calls_of(version) < start + count) {
      if (std::chrono::steady_clock::now() > deadline || stop_) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }
  size_t calls_of(uint64_t version) const {
    std::lock_guard lock(mutex_);
    if (version == 0) return old_calls_ + new_calls_;
    return version == 1 ? old_calls_ : new_calls_;
  }
  // Calls that began after `since` and were answered by the old version.
  size_t old_calls_since(std::chrono::steady_clock::time_point since) const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count_if(old_starts_.begin(), old_starts_.end(), [&](auto t) { return t >= since; }));
  }
  std::vector<std::string> problems() const {
    std::lock_guard lock(mutex_);
    return problems_;
  }

 private:
  void run(const std::string& coordinator, int t) {
    try {
      ClusterClient client(coordinator, f32_client());
      const auto give_up = std::chrono::steady_clock::now() + 90s;
      for (size_t i = static_cast<size_t>(t); !stop_ && i < 200000 && std::chrono::steady_clock::now() < give_up; i += 3) {
        const TwoModelJob& job = jobs_[i % jobs_.size()];
        const auto started = std::chrono::steady_clock::now();
        uint64_t version = 0;
        std::string problem;
        try {
          Matrix got = client.forward_versioned(job.layer, job.x, &version);
          const double to_old = relative_error(got, job.old_out);
          const double to_new = relative_error(got, job.new_out);
          if (version == 1 && !(to_old < kTolerance)) {
            problem = "version 1 reply is not the old model's output: error " + std::to_string(to_old) +
                      " (to the new one " + std::to_string(to_new) + ")";
          } else if (version == 2 && !(to_new < kTolerance)) {
            problem = "version 2 reply is not the new model's output: error " + std::to_string(to_new) +
                      " (to the old one " + std::to_string(to_old) + ")";
          } else if (version != 1 && version != 2) {
            problem = "reply of weight version " + std::to_string(version);
          }
        } catch (const std::exception& e) {
          problem = std::string("FAILED CALL: ") + e.what();
        }
        std::lock_guard lock(mutex_);
        if (!problem.empty()) {
          if (problems_.size() < 20) problems_.push_back("thread " + std::to_string(t) + ", job " + std::to_string(i) + ": " + problem);
        } else if (version == 1) {
          ++old_calls_;
          old_starts_.push_back(started);
        } else {
          ++new_calls_;
        }
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex_);
      problems_.push_back("thread " + std::to_string(t) + " could not start its client: " + e.what());
    }
  }

  const std::vector<TwoModelJob>& jobs_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  mutable std::mutex mutex_;
  size_t old_calls_ = 0, new_calls_ = 0;
  std::vector<std::chrono::steady_clock::time_point> old_starts_;
  std::vector<std::string> problems_;
};

inline std::string moectl(TestCluster& cluster, std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), bin_path("moectl"));
  return run_to_completion(args, cluster.dir() / log, 60s);
}

// `moectl update-weights` of this cluster to the checkpoint in `dir`, its output in `log`; "exit N".
inline std::string update_weights(TestCluster& cluster, const std::string& dir, const std::string& log) {
  return moectl(cluster, {"update-weights", "--cluster", cluster.coordinator_address(), "--model", dir}, log);
}

// Every worker as `moectl status` prints it ("v2" in its WEIGHTS column).
inline size_t workers_on_version(TestCluster& cluster, uint64_t version) {
  const std::string out = moectl(cluster, {"status", "--cluster", cluster.coordinator_address()}, "moectl-status.log");
  if (out != "exit 0") return 0;
  const std::string text = read_text(cluster.dir() / "moectl-status.log");
  size_t count = 0;
  for (size_t i = 0; i < cluster.worker_count(); ++i) {
    const auto at = text.find(cluster.worker_address(i));
    if (at == std::string::npos) continue;
    const std::string line = text.substr(at, text.find('\n', at) - at);
    if (line.find(" v" + std::to_string(version) + " ") != std::string::npos) ++count;
  }
  return count;
}

}  // namespace moe::integration
