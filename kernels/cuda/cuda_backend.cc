// The CUDA ExpertBackend: keeps each layer's experts in pooled device memory with a device table of
// their pointers, and runs a forward as: zero out, counting-sort the assignments by expert, then one
// of the expert paths (cuda_backend.h: streaming kernels for few rows per expert, mma.sync grouped
// GEMMs with 32/64/128-row tiles, or cuBLAS GEMMs per expert for many rows). The host path stages x,
// the assignments and out through pinned buffers around the device path.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cublas_expert_path.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_pool.h"
#include "kernels/cuda/expert_upload.h"
#include "kernels/cuda/forward_workspace.h"
#include "kernels/cuda/kernel_api.h"

namespace moe {
namespace {

constexpr int32_t kMaxExpertId = (1 << 20) - 1;

static_assert(sizeof(TokenAssignment) == sizeof(cuda::DeviceAssignment) &&
                  offsetof(TokenAssignment, token) == offsetof(cuda::DeviceAssignment, token) &&
                  offsetof(TokenAssignment, expert) == offsetof(cuda::DeviceAssignment, expert) &&
                  offsetof(TokenAssignment, weight) == offsetof(cuda::DeviceAssignment, weight),
              "kernel_api.h's DeviceAssignment must mirror TokenAssignment");

struct LoadedExpert {
  void* slot = nullptr;
  cuda::ExpertLayout layout;
};

struct LayerState {
  int64_t hidden = 0;
  int64_t hidden_padded = 0;
  int64_t inter_padded_max = 0;
  int32_t table_size = 0;  // max loaded expert id + 1
  std::map<int32_t, LoadedExpert> experts;
  cuda::DeviceBuffer table;                          // ExpertDeviceEntry[table_size]
  std::vector<cuda::ExpertDeviceEntry> host_table;   // the same entries on the host (cuBLAS path)
};

cuda::TileRows tile_rows_of(CudaExpertPath path) {
  switch (path) {
    case CudaExpertPath::kTiles32:
      return cuda::TileRows::k32;
    case CudaExpertPath::kTiles64:
      return cuda::TileRows::k64;
    default:
      return cuda::TileRows::k128;  // also the (unused) tile list of the streaming and cuBLAS paths
  }
}

std::string layer_name(int32_t layer) { return "layer " + std::to_string(layer); }

class CudaBackendImpl final : public CudaBackend {
 public:
  explicit CudaBackendImpl(int device) : device_(device) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::runtime_error("cuda backend: no usable CUDA device (cudaGetDeviceCount: " +
                               std::string(cudaGetErrorString(status)) + "), asked for device " +
                               std::to_string(device));
    }
    if (device < 0 || device >= count) {
      throw std::runtime_error("cuda backend: device " + std::to_string(device) + " does not exist; " +
                               std::to_string(count) + " CUDA device(s) present");
    }
    MOE_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp props{};
    MOE_CUDA_CHECK(cudaGetDeviceProperties(&props, device_));
    name_ = "cuda:" + std::to_string(device_) + " (" + props.name + ")";
    cuda::configure_kernels();
    workspace_ = std::make_unique<cuda::ForwardWorkspace>();
    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~CudaBackendImpl() override {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    for (cudaEvent_t e : tuning_events_) cudaEventDestroy(e);
    cublas_.reset();  // its handle may still be bound to stream_
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }
  int device() const override { return device_; }

  void load_expert(ExpertKey key, const ExpertWeightsView& weights) override {
    const cuda::ExpertLayout layout = cuda::expert_layout(key, weights);
    if (key.expert < 0 || key.expert > kMaxExpertId) {
      throw std::invalid_argument("cuda backend: expert id " + std::to_string(key.expert) + " of " +
                                  layer_name(key.layer) + " is outside [0, " + std::to_string(kMaxExpertId) + "]");
    }
    std::lock_guard lock(mutex_);
    select_device();
    LayerState& layer = layers_[key.layer];
    const bool has_others = layer.experts.size() > (layer.experts.count(key.expert) ? 1u : 0u);
    if (has_others && layer.hidden != layout.hidden) {
      throw std::invalid_argument("cuda backend: expert " + std::to_string(key.expert) + " of " +
                                  layer_name(key.layer) + " has hidden size " + std::to_string(layout.hidden) +
                                  " but the layer's loaded experts have " + std::to_string(layer.hidden));
    }
    void* slot = nullptr;
    try {
      MOE_CUDA_CHECK(cudaDeviceSynchronize());  // nothing in flight may still read a slot we replace
      slot = pool_.acquire(layout.bytes);
      cuda::upload_expert(weights, layout, slot, stream_);
    } catch (...) {
      if (slot != nullptr) pool_.release(slot, layout.bytes);
      if (layer.experts.empty()) layers_.erase(key.layer);
      throw;
    }
    auto [it, inserted] = layer.experts.try_emplace(key.expert);
    if (!inserted) {
      pool_.release(it->second.slot, it->second.layout.bytes);
      resident_bytes_ -= it->second.layout.bytes;
    }
    it->second = LoadedExpert{slot, layout};
    resident_bytes_ += layout.bytes;
    layer.hidden = layout.hidden;
    layer.hidden_padded = layout.hidden_padded;
    rebuild_table(layer);
  }

  void unload_expert(ExpertKey key) override {
    std::lock_guard lock(mutex_);
    auto layer_it = layers_.find(key.layer);
    if (layer_it == layers_.end()) return;
    LayerState& layer = layer_it->second;
    auto it = layer.experts.find(key.expert);
    if (it == layer.experts.end()) return;
    select_device();
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    pool_.release(it->second.slot, it->second.layout.bytes);
    resident_bytes_ -= it->second.layout.bytes;
    layer.experts.erase(it);
    if (layer.experts.empty()) {
      layers_.erase(layer_it);
    } else {
      rebuild_table(layer);
    }
  }

  bool has_expert(ExpertKey key) const override {
    std::lock_guard lock(mutex_);
    auto it = layers_.find(key.layer);
    return it != layers_.end() && it->second.experts.count(key.expert) != 0;
  }

  size_t resident_bytes() const override {
    std::lock_guard lock(mutex_);
    return resident_bytes_;
  }

  size_t pool_bytes() const override {
    std::lock_guard lock(mutex_);
    return pool_.reserved_bytes();
  }

  void set_expert_path(CudaExpertPath path) override {
    std::lock_guard lock(mutex_);
    path_ = path;
  }

  CudaExpertPath resolve_expert_path(int32_t layer_id, int64_t num_assignments) const override {
    std::lock_guard lock(mutex_);
    auto it = layers_.find(layer_id);
    if (it == layers_.end()) {
      throw std::invalid_argument("cuda backend: " + layer_name(layer_id) + " has no loaded experts");
    }
    return resolve_path(it->second, num_assignments);
  }

  void forward(int32_t layer_id, const float* x, int64_t num_tokens, int64_t hidden,
               std::span<const TokenAssignment> assignments, float* out) override {
    check_sizes(layer_id, num_tokens, hidden, static_cast<int64_t>(assignments.size()));
    if (num_tokens > 0 && (x == nullptr || out == nullptr)) {
      throw std::invalid_argument("cuda backend: x and out must not be null for " + std::to_string(num_tokens) +
                                  " tokens");
    }
    std::lock_guard lock(mutex_);
    if (num_tokens == 0) return;
    const size_t out_bytes = static_cast<size_t>(num_tokens * hidden) * sizeof(float);
    if (assignments.empty()) {
      std::memset(out, 0, out_bytes);
      return;
    }
    const LayerState& layer = checked_layer(layer_id, hidden);
    for (size_t i = 0; i < assignments.size(); ++i) check_assignment(layer, layer_id, i, assignments[i], num_tokens);

    select_device();
    auto& io = workspace_->host_path();
    const size_t x_bytes = out_bytes;
    const size_t a_bytes = assignments.size() * sizeof(TokenAssignment);
    io.x_staging.reserve(x_bytes);
    io.assignments_staging.reserve(a_bytes);
    io.out_staging.reserve(out_bytes);
    io.x.reserve(x_bytes);
    io.assignments.reserve(a_bytes);
    io.out.reserve(out_bytes);
    std::memcpy(io.x_staging.data(), x, x_bytes);
    std::memcpy(io.assignments_staging.data(), assignments.data(), a_bytes);
    MOE_CUDA_CHECK(cudaMemcpyAsync(io.x.data(), io.x_staging.data(), x_bytes, cudaMemcpyHostToDevice, stream_));
    MOE_CUDA_CHECK(cudaMemcpyAsync(io.assignments.data(), io.assignments_staging.data(), a_bytes,
                                   cudaMemcpyHostToDevice, stream_));
    enqueue(layer_id, layer, static_cast<const float*>(io.x.data()), num_tokens,
            static_cast<const TokenAssignment*>(io.assignments.data()), static_cast<int64_t>(assignments.size()),
            static_cast<float*>(io.out.data()), stream_);
    MOE_CUDA_CHECK(cudaMemcpyAsync(io.out_staging.data(), io.out.data(), out_bytes, cudaMemcpyDeviceToHost, stream_));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::memcpy(out, io.out_staging.data(), out_bytes);
  }

  // Deterministic mode (expert_backend.h). Each assignment becomes a token of its own (x's row copied
  // once per assignment), always on the streaming path: its kernels keep one accumulator per token, walk
  // k in a fixed lane order and reduce with a fixed warp tree, so a row's bits do not depend on the
  // other rows; with one assignment per token the down kernel's atomicAdd adds one value to zero, which
  // is exact. Never kAuto (whose timed choice may differ between processes) nor the mma/cuBLAS paths.
  // Written to the CPU's contract; not yet run on a GPU.
  void forward_rows(int32_t layer_id, const float* x, int64_t num_tokens, int64_t hidden,
                    std::span<const TokenAssignment> assignments, float* rows) override {
    check_sizes(layer_id, num_tokens, hidden, static_cast<int64_t>(assignments.size()));
    if (!assignments.empty() && (x == nullptr || rows == nullptr)) {
      throw std::invalid_argument("cuda backend: forward_rows needs x and rows for " +
                                  std::to_string(assignments.size()) + " assignments");
    }
    std::lock_guard lock(mutex_);
    if (assignments.empty()) return;
    const LayerState& layer = checked_layer(layer_id, hidden);
    for (size_t i = 0; i < assignments.size(); ++i) check_assignment(layer, layer_id, i, assignments[i], num_tokens);
    select_device();
    // Chunks within the streaming path's 32-bit row offsets.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(4096, ((int64_t{1} << 32) - 1) / layer.inter_padded_max));
    auto& io = workspace_->host_path();
    for (int64_t a0 = 0; a0 < static_cast<int64_t>(assignments.size()); a0 += chunk) {
      const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(assignments.size()) - a0);
      const size_t bytes = static_cast<size_t>(n * hidden) * sizeof(float);
      const size_t a_bytes = static_cast<size_t>(n) * sizeof(TokenAssignment);
      io.x_staging.reserve(bytes);
      io.assignments_staging.reserve(a_bytes);
      io.out_staging.reserve(bytes);
      io.x.reserve(bytes);
      io.assignments.reserve(a_bytes);
      io.out.reserve(bytes);
      auto* xs = static_cast<float*>(io.x_staging.data());
      auto* as = static_cast<TokenAssignment*>(io.assignments_staging.data());
      for (int64_t i = 0; i < n; ++i) {
        const TokenAssignment& a = assignments[static_cast<size_t>(a0 + i)];
        std::memcpy(xs + i * hidden, x + static_cast<int64_t>(a.token) * hidden, static_cast<size_t>(hidden) * sizeof(float));
        as[i] = TokenAssignment{static_cast<int32_t>(i), a.expert, a.weight};
      }
      MOE_CUDA_CHECK(cudaMemcpyAsync(io.x.data(), xs, bytes, cudaMemcpyHostToDevice, stream_));
      MOE_CUDA_CHECK(cudaMemcpyAsync(io.assignments.data(), as, a_bytes, cudaMemcpyHostToDevice, stream_));
      enqueue_path(CudaExpertPath::kStreaming, layer, static_cast<const float*>(io.x.data()), n,
                   static_cast<const TokenAssignment*>(io.assignments.data()), n, static_cast<float*>(io.out.data()),
                   stream_);
      MOE_CUDA_CHECK(cudaMemcpyAsync(io.out_staging.data(), io.out.data(), bytes, cudaMemcpyDeviceToHost, stream_));
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      std::memcpy(rows + a0 * hidden, io.out_staging.data(), bytes);
    }
  }

  void forward_device(const DeviceForwardArgs& args, cudaStream_t stream) override {
    check_sizes(args.layer, args.num_tokens, args.hidden, args.num_assignments);
    if (args.num_tokens > 0 && (args.x == nullptr || args.out == nullptr)) {
      throw std::invalid_argument("cuda backend: forward_device needs x and out for " +
                                  std::to_string(args.num_tokens) + " tokens");
    }
    if (args.num_assignments > 0 && args.assignments == nullptr) {
      throw std::invalid_argument("cuda backend: forward_device got " + std::to_string(args.num_assignments) +
                                  " assignments but a null pointer");
    }
    std::lock_guard lock(mutex_);
    if (args.num_tokens == 0) return;
    select_device();
    if (args.num_assignments == 0) {
      MOE_CUDA_CHECK(cudaMemsetAsync(args.out, 0, static_cast<size_t>(args.num_tokens * args.hidden) * 4, stream));
      return;
    }
    const LayerState& layer = checked_layer(args.layer, args.hidden);
    enqueue(args.layer, layer, args.x, args.num_tokens, args.assignments, args.num_assignments, args.out, stream);
  }

  void check_device_assignments(cudaStream_t stream) override {
    std::lock_guard lock(mutex_);
    select_device();
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    int32_t invalid = 0;
    MOE_CUDA_CHECK(cudaMemcpy(&invalid, workspace_->invalid_flag(), sizeof(invalid), cudaMemcpyDeviceToHost));
    if (invalid != 0) {
      MOE_CUDA_CHECK(cudaMemset(workspace_->invalid_flag(), 0, sizeof(int32_t)));
      MOE_CUDA_CHECK(cudaDeviceSynchronize());
      throw std::invalid_argument(
          "cuda backend: a forward_device call was given an assignment naming an unloaded expert or a token "
          "outside [0, num_tokens); it was skipped");
    }
  }

 private:
  void select_device() const { MOE_CUDA_CHECK(cudaSetDevice(device_)); }

  static void check_sizes(int32_t layer, int64_t num_tokens, int64_t hidden, int64_t num_assignments) {
    if (num_tokens < 0 || hidden <= 0 || num_assignments < 0) {
      throw std::invalid_argument("cuda backend: " + layer_name(layer) + ": bad sizes num_tokens=" +
                                  std::to_string(num_tokens) + " hidden=" + std::to_string(hidden) +
                                  " assignments=" + std::to_string(num_assignments));
    }
    if (num_tokens > INT32_MAX / 2 || num_assignments > INT32_MAX / 2) {
      throw std::invalid_argument("cuda backend: " + layer_name(layer) + ": " + std::to_string(num_tokens) +
                                  " tokens / " + std::to_string(num_assignments) +
                                  " assignments exceed the supported 2^30");
    }
  }

  const LayerState& checked_layer(int32_t layer_id, int64_t hidden) const {
    auto it = layers_.find(layer_id);
    if (it == layers_.end()) {
      throw std::invalid_argument("cuda backend: " + layer_name(layer_id) + " has no loaded experts");
    }
    if (it->second.hidden != hidden) {
      throw std::invalid_argument("cuda backend: " + layer_name(layer_id) + " has hidden size " +
                                  std::to_string(it->second.hidden) + ", got x with hidden " +
                                  std::to_string(hidden));
    }
    return it->second;
  }

  static void check_assignment(const LayerState& layer, int32_t layer_id, size_t index, const TokenAssignment& a,
                               int64_t num_tokens) {
    if (a.token < 0 || a.token >= num_tokens) {
      throw std::invalid_argument("cuda backend: assignment " + std::to_string(index) + " names token " +
                                  std::to_string(a.token) + ", outside [0, " + std::to_string(num_tokens) + ")");
    }
    if (layer.experts.count(a.expert) == 0) {
      throw std::invalid_argument("cuda backend: assignment " + std::to_string(index) + " names expert " +
                                  std::to_string(a.expert) + " of " + layer_name(layer_id) + ", which is not loaded");
    }
  }

  // The streaming kernels keep row offsets in 32 bits: A * Ip_max must stay below 2^32.
  static bool streaming_fits(const LayerState& layer, int64_t num_assignments) {
    return num_assignments * layer.inter_padded_max < (int64_t{1} << 32);
  }

  static void require_streaming_fits(const LayerState& layer, int64_t num_assignments) {
    if (!streaming_fits(layer, num_assignments)) {
      throw std::invalid_argument("cuda backend: the streaming path takes at most 2^32 / " +
                                  std::to_string(layer.inter_padded_max) + " assignments, got " +
                                  std::to_string(num_assignments));
    }
  }

  // kAuto measures once per layer shape and size class: the layers of a model share their choices.
  struct TuningKey {
    int64_t hidden_padded;
    int64_t inter_padded_max;
    size_t experts;
    int size_class;
    auto operator<=>(const TuningKey&) const = default;
  };

  static TuningKey tuning_key(const LayerState& layer, int64_t num_assignments) {
    return {layer.hidden_padded, layer.inter_padded_max, layer.experts.size(),
            auto_size_class(num_assignments, static_cast<int64_t>(layer.experts.size()))};
  }

  CudaExpertPath resolve_path(const LayerState& layer, int64_t num_assignments) const {
    if (path_ == CudaExpertPath::kAuto) {
      auto tuned = tuned_.find(tuning_key(layer, num_assignments));
      if (tuned != tuned_.end() && (tuned->second != CudaExpertPath::kStreaming || streaming_fits(layer, num_assignments))) {
        return tuned->second;
      }
      const CudaExpertPath chosen = auto_expert_path(num_assignments, static_cast<int64_t>(layer.experts.size()));
      return chosen == CudaExpertPath::kStreaming && !streaming_fits(layer, num_assignments) ? CudaExpertPath::kTiles32
                                                                                             : chosen;
    }
    if (path_ == CudaExpertPath::kStreaming) require_streaming_fits(layer, num_assignments);
    return path_;
  }

  void rebuild_table(LayerState& layer) {
    layer.table_size = layer.experts.empty() ? 0 : layer.experts.rbegin()->first + 1;
    layer.inter_padded_max = 0;
    std::vector<cuda::ExpertDeviceEntry> entries(static_cast<size_t>(std::max(layer.table_size, 1)));
    for (const auto& [id, e] : layer.experts) {
      const auto* base = static_cast<const uint16_t*>(e.slot);
      entries[id] = cuda::ExpertDeviceEntry{base + e.layout.gate_offset, base + e.layout.up_offset,
                                            base + e.layout.down_offset, static_cast<int32_t>(e.layout.inter),
                                            static_cast<int32_t>(e.layout.inter_padded)};
      layer.inter_padded_max = std::max(layer.inter_padded_max, e.layout.inter_padded);
    }
    const size_t bytes = entries.size() * sizeof(cuda::ExpertDeviceEntry);
    layer.table.reserve(bytes);
    MOE_CUDA_CHECK(cudaMemcpyAsync(layer.table.data(), entries.data(), bytes, cudaMemcpyHostToDevice, stream_));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    layer.host_table = std::move(entries);
  }

  // One forward on `stream`: the forced path, or kAuto's choice, measuring it first when this layer
  // shape and size class have none yet (not while `stream` is being captured into a graph).
  void enqueue(int32_t layer_id, const LayerState& layer, const float* x, int64_t num_tokens,
               const TokenAssignment* assignments, int64_t num_assignments, float* out, cudaStream_t stream) {
    const TuningKey key = tuning_key(layer, num_assignments);
    if (path_ == CudaExpertPath::kAuto && !tuned_.count(key) && !is_capturing(stream)) {
      std::vector<CudaExpertPath> candidates =
          auto_path_candidates(num_assignments, static_cast<int64_t>(layer.experts.size()));
      if (!streaming_fits(layer, num_assignments)) {
        candidates.erase(std::remove(candidates.begin(), candidates.end(), CudaExpertPath::kStreaming), candidates.end());
      }
      if (candidates.size() > 1) {
        // Every candidate computes the whole layer into `out`: whichever runs last leaves a correct result.
        tune(layer_id, layer, key, candidates, x, num_tokens, assignments, num_assignments, out, stream);
        return;
      }
    }
    enqueue_path(resolve_path(layer, num_assignments), layer, x, num_tokens, assignments, num_assignments,
                 out, stream);
  }

  static bool is_capturing(cudaStream_t stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    MOE_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    return status != cudaStreamCaptureStatusNone;
  }

  // Runs every candidate twice on this call's inputs, times the second runs with events, keeps the fastest.
  void tune(int32_t layer_id, const LayerState& layer, const TuningKey& key,
            const std::vector<CudaExpertPath>& candidates, const float* x, int64_t num_tokens,
            const TokenAssignment* assignments, int64_t num_assignments, float* out, cudaStream_t stream) {
    while (tuning_events_.size() < 2 * candidates.size()) {
      cudaEvent_t e = nullptr;
      MOE_CUDA_CHECK(cudaEventCreate(&e));
      tuning_events_.push_back(e);
    }
    std::vector<bool> ran(candidates.size(), false);
    for (int rep = 0; rep < 2; ++rep) {
      for (size_t i = 0; i < candidates.size(); ++i) {
        if (rep == 1 && !ran[i]) continue;
        if (rep == 1) MOE_CUDA_CHECK(cudaEventRecord(tuning_events_[2 * i], stream));
        try {
          enqueue_path(candidates[i], layer, x, num_tokens, assignments, num_assignments, out, stream);
          ran[i] = true;
        } catch (const std::invalid_argument&) {
          ran[i] = false;  // a host-side limit of this path (sizes): not a candidate for this call
        }
        if (rep == 1) MOE_CUDA_CHECK(cudaEventRecord(tuning_events_[2 * i + 1], stream));
      }
    }
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::ostringstream report;
    report << "cuda backend: " << layer_name(layer_id) << " (and layers of its shape), " << num_assignments
           << " rows over " << layer.experts.size() << " experts (size class " << key.size_class << "):";
    size_t best = candidates.size();
    float best_ms = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!ran[i]) continue;
      float ms = 0;
      MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, tuning_events_[2 * i], tuning_events_[2 * i + 1]));
      report << " " << to_string(candidates[i]) << " " << std::fixed << std::setprecision(3) << ms << " ms";
      if (best == candidates.size() || ms < best_ms) {
        best = i;
        best_ms = ms;
      }
    }
    if (best == candidates.size()) {
      throw std::invalid_argument("cuda backend: no expert path takes " + std::to_string(num_assignments) +
                                  " assignments on " + layer_name(layer_id));
    }
    if (!ran.back()) {  // the last run failed its host checks: leave the best one's result in out
      enqueue_path(candidates[best], layer, x, num_tokens, assignments, num_assignments, out, stream);
    }
    tuned_[key] = candidates[best];
    std::cerr << report.str() << " -> " << to_string(candidates[best]) << std::endl;
  }

  void enqueue_path(CudaExpertPath path, const LayerState& layer, const float* x, int64_t num_tokens,
                    const TokenAssignment* assignments, int64_t num_assignments, float* out, cudaStream_t stream) {
    if (path == CudaExpertPath::kStreaming) require_streaming_fits(layer, num_assignments);
    cuda::WorkspaceShape shape{layer.table_size, num_assignments, num_tokens, layer.hidden_padded,
                               layer.inter_padded_max};
    workspace_->reserve(shape);
    const cuda::RoutingWorkspace& ws = workspace_->routing();
    const auto* experts = static_cast<const cuda::ExpertDeviceEntry*>(layer.table.data());

    MOE_CUDA_CHECK(cudaMemsetAsync(ws.counts, 0, 2 * static_cast<size_t>(layer.table_size) * sizeof(int32_t), stream));
    MOE_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(num_tokens * layer.hidden) * sizeof(float), stream));
    const cuda::TileRows tile_rows = tile_rows_of(path);
    cuda::launch_route(reinterpret_cast<const cuda::DeviceAssignment*>(assignments), num_assignments, num_tokens,
                       experts, layer.table_size, ws, tile_rows, stream);

    cuda::ExpertLayerArgs args;
    args.experts = experts;
    args.num_experts = layer.table_size;
    args.num_tokens = num_tokens;
    args.num_assignments = num_assignments;
    args.hidden = layer.hidden;
    args.hidden_padded = layer.hidden_padded;
    args.inter_padded_max = layer.inter_padded_max;
    args.x_bf16 = workspace_->x_bf16();
    args.h = workspace_->h();
    args.out = out;
    switch (path) {
      case CudaExpertPath::kStreaming:
        cuda::launch_convert_rows_to_bf16(x, num_tokens, layer.hidden, layer.hidden_padded, workspace_->x_bf16(), stream);
        cuda::launch_gemv_gate_up(args, ws, stream);
        cuda::launch_gemv_down(args, ws, stream);
        break;
      case CudaExpertPath::kTiles32:
      case CudaExpertPath::kTiles64:
      case CudaExpertPath::kTiles128:
        cuda::launch_convert_rows_to_bf16(x, num_tokens, layer.hidden, layer.hidden_padded, workspace_->x_bf16(), stream);
        cuda::launch_grouped_gate_up(args, ws, tile_rows, stream);
        cuda::launch_grouped_down(args, ws, tile_rows, stream);
        break;
      case CudaExpertPath::kCublas:
        enqueue_cublas(layer, args, ws, x, stream);
        break;
      case CudaExpertPath::kAuto:
        throw std::logic_error("cuda backend: enqueue_path needs a resolved path, got kAuto");
    }
  }

  // The per-expert row counts decide the cuBLAS calls, so they come back to the host first.
  void enqueue_cublas(const LayerState& layer, const cuda::ExpertLayerArgs& args, const cuda::RoutingWorkspace& ws,
                      const float* x, cudaStream_t stream) {
    const size_t offsets_bytes = (static_cast<size_t>(layer.table_size) + 1) * sizeof(int32_t);
    host_offsets_.reserve(offsets_bytes);
    MOE_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data(), ws.offsets, offsets_bytes, cudaMemcpyDeviceToHost, stream));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (!cublas_) cublas_ = std::make_unique<cuda::CublasExpertPath>();
    cublas_->enqueue(args, ws, x, static_cast<const int32_t*>(host_offsets_.data()), layer.host_table.data(), stream);
  }

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  mutable std::mutex mutex_;
  cuda::DevicePool pool_;
  std::map<int32_t, LayerState> layers_;
  std::unique_ptr<cuda::ForwardWorkspace> workspace_;
  std::unique_ptr<cuda::CublasExpertPath> cublas_;  // created on first use
  cuda::PinnedBuffer host_offsets_;                 // ws.offsets read back for the cuBLAS path
  CudaExpertPath path_ = CudaExpertPath::kAuto;
  std::map<TuningKey, CudaExpertPath> tuned_;  // kAuto's measured choices
  std::vector<cudaEvent_t> tuning_events_;
  size_t resident_bytes_ = 0;
};

}  // namespace

std::unique_ptr<CudaBackend> make_cuda_backend(int device) { return std::make_unique<CudaBackendImpl>(device); }

}  // namespace moe
