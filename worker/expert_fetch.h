// The fetching half of weight streaming (--no-shared-storage): copies experts from a peer worker that
// holds them, as fetchExpert chunks over one Connection with many requests in flight, checking every
// chunk against the model's shapes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/model/layer_source.h"
#include "runtime/net/connection.h"

namespace moe {

struct ExpertFetchOptions {
  uint32_t chunk_bytes = 8u << 20;  // bytes asked per fetchExpert
  size_t max_in_flight = 16;        // fetchExpert requests outstanding at once
  std::chrono::milliseconds timeout{30000};  // per request
  std::string cluster_token;                 // sent with every fetchExpert (the peer checks it if it has one)
  uint64_t weight_version = 0;               // the weight version wanted (0: the peer's current one)
};

// Streams every expert of `keys` from `peer`. Returns their weights (owned, in the dtype the peer holds).
// Throws std::runtime_error naming the expert, the matrix and the peer when a reply is an error, late,
// or does not fit: wrong expert/matrix/offset, shape other than the model's ([I, H] gate/up, [H, I]
// down), a dtype that changes between chunks, empty or overlong data.
std::map<ExpertKey, ExpertWeights> fetch_experts(Connection& peer, const std::vector<ExpertKey>& keys,
                                                 const ModelSpec& spec, const ExpertFetchOptions& options = {});

}  // namespace moe
