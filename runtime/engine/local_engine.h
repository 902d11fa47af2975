// LocalEngine: one whole MoE layer in one process. Routers for every MoE layer, every expert (shared
// included) loaded into one ExpertBackend. The reference every cluster output is checked against.
#pragma once

#include <map>
#include <memory>

#include "kernels/expert_backend.h"
#include "runtime/engine/moe_layer_executor.h"
#include "runtime/model/layer_source.h"
#include "runtime/routing/router.h"

namespace moe {

struct LocalEngineOptions {
  std::vector<int32_t> layers;  // MoE layers to load; empty = all
  // The deterministic mode (README, "Deterministic mode"): per-row routing, ExpertBackend::forward_rows
  // and combine_rows, so a token's output is the same bits whatever else is in the batch, and the same
  // bits as a deterministic cluster's with the f32 wire.
  bool deterministic = false;
};

class LocalEngine : public MoeLayerExecutor {
 public:
  // Loads routers and experts of the requested layers from `source` into `backend`.
  LocalEngine(const LayerSource& source, std::unique_ptr<ExpertBackend> backend,
              const LocalEngineOptions& options = {});
  const ModelSpec& spec() const override { return spec_; }
  Matrix forward(int32_t layer, const Matrix& x, RoutingResult* routing_out = nullptr) override;
  ExpertBackend& backend() { return *backend_; }
  const Router& router(int32_t layer) const;
  bool deterministic() const { return deterministic_; }

 private:
  ModelSpec spec_;
  std::unique_ptr<ExpertBackend> backend_;
  bool deterministic_ = false;
  std::map<int32_t, Router> routers_;
};

}  // namespace moe
