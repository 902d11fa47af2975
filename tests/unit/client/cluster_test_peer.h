// In-process peers for ClusterClient tests, speaking the real wire protocol over runtime/net Servers:
// a coordinator that serves getModel (from a LayerSource) and getPlacement (set by the test), and
// workers that compute forward requests with the CPU backend on the experts they were given, check the
// epoch and the experts like a real worker, and can be told to fail the next requests with an error.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <capnp/message.h>
#include <map>
#include <memory>
#include <mutex>
#include <capnp/serialize.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kernels/expert_backend.h"
#include "runtime/model/layer_source.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/server.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/tensor_pack.h"

namespace moe::test {

struct PeerPlacement {
  uint64_t epoch = 0;
  std::map<uint32_t, std::string> workers;  // id -> address
  std::set<uint32_t> dead;
  std::map<ExpertKey, std::vector<std::pair<uint32_t, float>>> replicas;  // (worker, share)
};

inline void fill_placement(wire::Placement::Builder out, const PeerPlacement& p) {
  out.setEpoch(p.epoch);
  auto workers = out.initWorkers(static_cast<unsigned>(p.workers.size()));
  unsigned i = 0;
  for (const auto& [id, address] : p.workers) {
    workers[i].setId(id);
    workers[i].setAddress(address);
    workers[i].setState(p.dead.count(id) ? wire::WorkerState::DEAD : wire::WorkerState::ACTIVE);
    ++i;
  }
  auto assignments = out.initAssignments(static_cast<unsigned>(p.replicas.size()));
  i = 0;
  for (const auto& [key, list] : p.replicas) {
    assignments[i].setLayer(key.layer);
    assignments[i].setExpert(key.expert);
    auto replicas = assignments[i].initReplicas(static_cast<unsigned>(list.size()));
    for (unsigned r = 0; r < list.size(); ++r) {
      replicas[r].setWorkerId(list[r].first);
      replicas[r].setShare(list[r].second);
    }
    ++i;
  }
}

// modelInfo of `source` the way moe-coordinator sends it (spec JSON + f32 router blobs).
inline void fill_model_info(wire::ModelInfo::Builder info, const LayerSource& source) {
  const ModelSpec& spec = source.spec();
  info.setSpecJson(model_spec_to_config(spec).dump());
  info.setName("test-model");
  info.setSource("synthetic:test:0");
  auto routers = info.initRouters(static_cast<unsigned>(spec.moe_layers.size()));
  for (unsigned i = 0; i < spec.moe_layers.size(); ++i) {
    const int32_t layer = spec.moe_layers[i];
    RouterWeights w = source.router_weights(layer);
    routers[i].setLayer(layer);
    routers[i].setNumExperts(static_cast<uint32_t>(spec.num_experts));
    routers[i].setHidden(static_cast<uint32_t>(spec.hidden_size));
    auto pack = [](std::span<const float> v, capnp::Data::Builder blob) {
      pack_tensor(v, wire::DType::F32, kj::arrayPtr(blob.begin(), blob.size()));
    };
    pack(w.gate.data, routers[i].initWeight(static_cast<unsigned>(w.gate.data.size() * 4)));
    if (!w.correction_bias.empty())
      pack(w.correction_bias, routers[i].initScoreBias(static_cast<unsigned>(w.correction_bias.size() * 4)));
    if (!w.shared_gate.empty())
      pack(w.shared_gate, routers[i].initSharedExpertGate(static_cast<unsigned>(w.shared_gate.size() * 4)));
  }
}

class TestCoordinator {
 public:
  TestCoordinator(IoPool& pool, const LayerSource& source)
      : source_(source), server_(pool.context(), "127.0.0.1", 0, [this](Frame f, Responder r) { handle(std::move(f), r); }) {}

  std::string address() const { return server_.address(); }
  void set_placement(PeerPlacement p) {
    std::lock_guard lock(mutex_);
    placement_ = std::move(p);
  }
  int placement_requests() const { return placement_requests_; }
  void stop() { server_.stop(); }

 private:
  void handle(Frame frame, Responder responder) {
    auto envelope = frame.envelope();
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Envelope>();
    if (envelope.isGetModel()) {
      fill_model_info(root.initModelInfo(), source_);
      responder.reply(message);
    } else if (envelope.isGetPlacement()) {
      ++placement_requests_;
      std::lock_guard lock(mutex_);
      fill_placement(root.initPlacement(), placement_);
      responder.reply(message);
    } else {
      responder.reply_error(wire::ErrorCode::BAD_REQUEST, "test coordinator: unexpected " + message_kind_name(envelope));
    }
  }

  const LayerSource& source_;
  std::mutex mutex_;
  PeerPlacement placement_;
  std::atomic<int> placement_requests_{0};
  Server server_;
};

struct ReceivedRequest {
  uint64_t epoch = 0;
  uint32_t num_tokens = 0;
  size_t pairs = 0;
  size_t frame_bytes = 0;  // the request frame as received
  size_t reply_bytes = 0;  // the forwardReply frame sent back (0: an error reply)
};

class TestWorker {
 public:
  TestWorker(IoPool& pool, const LayerSource& source, std::vector<ExpertKey> experts, uint64_t min_epoch = 1)
      : source_(source), backend_(make_cpu_backend(1)), min_epoch_(min_epoch),
        server_(pool.context(), "127.0.0.1", 0, [this](Frame f, Responder r) { handle(std::move(f), r); }) {
    for (const auto& key : experts) load(key);
  }

  std::string address() const { return server_.address(); }
  void load(ExpertKey key) {
    std::lock_guard lock(mutex_);
    backend_->load_expert(key, source_.expert_weights(key.layer, key.expert).view);
  }
  void set_min_epoch(uint64_t epoch) { min_epoch_ = epoch; }
  // Compute every token of a request alone (BLAS results of a row can depend on the batch it is in):
  // lets a test compare a split call with an unsplit one bit for bit.
  void set_row_by_row(bool on) { row_by_row_ = on; }
  // Answer getModel (from the source) and getPlacement (`placement`) as a real worker does for clients
  // whose coordinator is away; before this call both get badRequest like any unexpected request.
  void serve_metadata(PeerPlacement placement) {
    std::lock_guard lock(mutex_);
    metadata_ = std::move(placement);
  }
  // The next `count` forward requests are answered with `code` (count < 0: all of them).
  void fail_next(wire::ErrorCode code, int count) {
    std::lock_guard lock(mutex_);
    fail_code_ = code;
    fail_count_ = count;
  }
  std::vector<ReceivedRequest> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  void clear_received() {
    std::lock_guard lock(mutex_);
    received_.clear();
  }
  void stop() { server_.stop(); }

 private:
  void handle(Frame frame, Responder responder) {
    auto envelope = frame.envelope();
    if (envelope.isGetModel() || envelope.isGetPlacement()) {
      std::lock_guard lock(mutex_);
      if (metadata_) {
        capnp::MallocMessageBuilder message;
        auto root = message.initRoot<wire::Envelope>();
        if (envelope.isGetModel()) fill_model_info(root.initModelInfo(), source_);
        else fill_placement(root.initPlacement(), *metadata_);
        responder.reply(message);
        return;
      }
    }
    if (!envelope.isForwardRequest()) {
      responder.reply_error(wire::ErrorCode::BAD_REQUEST, "test worker: unexpected " + message_kind_name(envelope));
      return;
    }
    auto request = envelope.getForwardRequest();
    size_t received_index = 0;
    {
      std::lock_guard lock(mutex_);
      received_index = received_.size();
      received_.push_back({request.getEpoch(), request.getNumTokens(), request.getExpertId().size(), frame.size_bytes()});
      if (fail_count_ != 0) {
        if (fail_count_ > 0) --fail_count_;
        responder.reply_error(fail_code_, "test worker: injected " + error_code_name(fail_code_), min_epoch_.load());
        return;
      }
    }
    if (request.getEpoch() < min_epoch_) {
      responder.reply_error(wire::ErrorCode::STALE_EPOCH,
                            "epoch " + std::to_string(request.getEpoch()) + " is older than " +
                                std::to_string(min_epoch_.load()),
                            min_epoch_);
      return;
    }
    const int32_t layer = request.getLayer();
    std::vector<TokenAssignment> assignments;
    for (unsigned i = 0; i < request.getExpertId().size(); ++i) {
      ExpertKey key{layer, request.getExpertId()[i]};
      if (!backend_->has_expert(key)) {
        responder.reply_error(wire::ErrorCode::EXPERT_NOT_HOSTED,
                              "expert " + std::to_string(key.expert) + " not hosted", min_epoch_);
        return;
      }
      assignments.push_back({request.getTokenIndex()[i], key.expert, request.getWeight()[i]});
    }
    const size_t rows = request.getNumTokens(), hidden = request.getHidden();
    std::vector<float> x = unpack_tensor(request.getTokens(), request.getDtype(), rows * hidden, "tokens");
    std::vector<float> y(rows * hidden);
    if (!row_by_row_) {
      backend_->forward(layer, x.data(), static_cast<int64_t>(rows), static_cast<int64_t>(hidden), assignments,
                        y.data());
    } else {  // each token alone: its result does not depend on which tokens share the request
      for (size_t row = 0; row < rows; ++row) {
        std::vector<TokenAssignment> mine;
        for (const TokenAssignment& a : assignments)
          if (static_cast<size_t>(a.token) == row) mine.push_back({0, a.expert, a.weight});
        backend_->forward(layer, x.data() + row * hidden, 1, static_cast<int64_t>(hidden), mine, y.data() + row * hidden);
      }
    }
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>().initForwardReply();
    reply.setNumTokens(static_cast<uint32_t>(rows));
    reply.setHidden(static_cast<uint32_t>(hidden));
    reply.setDtype(request.getDtype());
    auto blob = reply.initOutput(static_cast<unsigned>(packed_tensor_bytes(request.getDtype(), y.size())));
    pack_tensor(y, request.getDtype(), kj::arrayPtr(blob.begin(), blob.size()));
    {
      std::lock_guard lock(mutex_);
      received_[received_index].reply_bytes = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
    }
    responder.reply(message);
  }

  const LayerSource& source_;
  std::unique_ptr<ExpertBackend> backend_;
  std::atomic<uint64_t> min_epoch_;
  std::atomic<bool> row_by_row_{false};
  mutable std::mutex mutex_;
  wire::ErrorCode fail_code_ = wire::ErrorCode::INTERNAL;
  int fail_count_ = 0;
  std::vector<ReceivedRequest> received_;
  std::optional<PeerPlacement> metadata_;
  Server server_;
};

}  // namespace moe::test
