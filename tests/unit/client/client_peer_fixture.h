// The fixture of the ClusterClient tests against in-process peers: a tiny model on three test workers
// behind a TestCoordinator, and the LocalEngine reference.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/client/cluster_client.h"
#include "runtime/model/synthetic_model.h"
#include "tests/unit/client/client_test_util.h"
#include "tests/unit/client/cluster_test_peer.h"

namespace moe::test {

using namespace std::chrono_literals;

inline std::vector<ExpertKey> experts_of(const ModelSpec& spec, int32_t first, int32_t last) {
  std::vector<ExpertKey> keys;
  for (int32_t layer : spec.moe_layers)
    for (int32_t e = first; e <= last; ++e) keys.push_back({layer, e});
  return keys;
}

// A tiny model on three test workers: A hosts the first half of the experts, B the rest (shared expert
// included), C a second copy of expert 0 (share 0.5 each with A).
class ClusterClientPeerTest : public ::testing::Test {
 protected:
  void start(const std::string& preset) {
    source = SyntheticLayerSource::from_preset(preset);
    const ModelSpec& spec = source->spec();
    const int32_t half = spec.num_experts / 2;
    coordinator = std::make_unique<TestCoordinator>(pool, *source);
    a = std::make_unique<TestWorker>(pool, *source, experts_of(spec, 0, half - 1));
    b = std::make_unique<TestWorker>(pool, *source, experts_of(spec, half, spec.experts_per_layer() - 1));
    c = std::make_unique<TestWorker>(pool, *source, experts_of(spec, 0, 0));
    placement.epoch = 1;
    placement.workers = {{0, a->address()}, {1, b->address()}, {2, c->address()}};
    for (int32_t layer : spec.moe_layers) {
      for (int32_t e = 0; e < spec.experts_per_layer(); ++e) {
        if (e == 0) placement.replicas[{layer, e}] = {{0, 0.5f}, {2, 0.5f}};
        else placement.replicas[{layer, e}] = {{e < half ? 0u : 1u, 1.f}};
      }
    }
    coordinator->set_placement(placement);
    reference = local_engine(*source);
  }

  ClusterClientOptions f32_options() {
    ClusterClientOptions o;
    o.wire_dtype = wire::DType::F32;
    o.deadline = 5000ms;
    return o;
  }

  IoPool pool{2};
  std::unique_ptr<SyntheticLayerSource> source;
  std::unique_ptr<TestCoordinator> coordinator;
  std::unique_ptr<TestWorker> a, b, c;
  PeerPlacement placement;
  std::unique_ptr<LocalEngine> reference;
};

}  // namespace moe::test
