// The moe-worker service: serves forward requests for the experts it hosts and follows the
// coordinator's placement changes. Everything of the daemon but flag parsing and signals, so tests run
// it in-process.
//
//   io threads (runtime/net Server)   decode, validate, route: forwardRequest -> ForwardBatcher;
//                                     prepare / commit / release -> the control thread;
//                                     fetchExpert (a peer streaming weights) answered at once
//   --no-shared-storage: prepare streams gained experts from the peers it names (worker/expert_fetch.h)
//                        before loading the rest from the model source
//   weight versions (update-weights): a prepare may name a new version (and its source); its experts load
//   beside the served ones (worker/weight_version.h), a forward request names the version to compute
//   with, the commit switches, the release drops the old version
//   control thread (SerialExecutor)   loads experts (prepare, commit), adopts epochs, unloads (release)
//   compute threads (ForwardBatcher)  batch requests of one layer, run the ExpertBackend, reply
//   link thread (CoordinatorLink)     getModel, registerWorker, heartbeats, reconnects
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/metrics/metrics_endpoint.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/server.h"
#include "runtime/net/ucx_listener.h"
#include "worker/adopted_metadata.h"
#include "worker/coordinator_link.h"
#include "worker/epoch_state.h"
#include "worker/expert_store.h"
#include "worker/forward_batcher.h"
#include "worker/forward_runner.h"
#include "worker/load_window.h"
#include "worker/serial_executor.h"
#include "worker/worker_metrics.h"
#include "worker/worker_options.h"

namespace moe {

class WorkerService : private CoordinatorLink::Peer {
 public:
  // Makes the backend and the metrics endpoint; throws on a bad option or a backend this build lacks.
  explicit WorkerService(WorkerOptions options);
  ~WorkerService() override;  // stop()
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  // Listens (throws NetError(ListenFailed)) and starts talking to the coordinator in the background.
  void start();
  // Stops taking requests (new ones get notReady), stops the coordinator link and the control thread,
  // finishes the queued forward requests, closes the connections. Idempotent.
  void stop();

  // The bound address as registered with the coordinator ("127.0.0.1:40123").
  const std::string& address() const { return address_; }
  uint16_t metrics_port() const { return metrics_endpoint_->port(); }
  prometheus::Registry& metrics_registry() { return metrics_endpoint_->registry(); }

  uint64_t current_epoch() const;
  uint64_t oldest_served_epoch() const;
  std::optional<uint32_t> worker_id() const { return link_->worker_id(); }
  bool registered() const { return link_->registered(); }
  uint64_t registrations() const { return link_->registrations(); }
  // The experts its current epoch's weight versions hold (each layer in the version the epoch serves it in).
  std::set<ExpertKey> hosted() const;
  // The weight version its current epoch serves (0 before it learned the model).
  uint64_t weight_version() const;
  uint64_t batches_run() const { return batcher_->batches_run(); }
  uint64_t forward_requests_run() const { return batcher_->jobs_run(); }
  // The coordinator link gave up for good (a refused cluster token): main exits non-zero.
  bool failed() const { return failed_; }

 private:
  // Checks the cluster token of every request (--cluster-token), then dispatches it.
  void handle(Frame request, Responder responder);
  // prepare, commit and release must bring back the control key this worker sent with its registration
  // (only the coordinator it registered with has it): ServiceError(unauthorized) otherwise.
  void check_control_key(wire::Envelope::Reader envelope) const;
  void handle_forward(Frame request, const Responder& responder);
  void handle_prepare(const Frame& request, const Responder& responder);
  void handle_commit(const Frame& request, const Responder& responder);
  void handle_release(const Frame& request, const Responder& responder);
  void handle_fetch(const Frame& request, const Responder& responder);
  // Loads what it can of `experts` from their peers (each expert's sources tried in order); logs what
  // came from where and what is left for the model source. Never throws for a failing peer.
  void stream_from_peers(const std::set<ExpertKey>& experts, const std::map<ExpertKey, std::vector<std::string>>& sources,
                         uint64_t version);
  // A prepare of a new weight version loads `experts` beside the ones loaded: ServiceError(overloaded)
  // naming the sizes when that would pass this worker's memory (--memory-bytes), estimated from the
  // bytes per expert loaded now (every version has the same shapes).
  void check_update_memory(const std::set<ExpertKey>& experts, uint64_t version) const;
  void post_control(Frame request, Responder responder, void (WorkerService::*handler)(const Frame&, const Responder&));
  void reply_ack(const Responder& responder, uint64_t epoch);
  void update_gauges();
  uint32_t expert_slots() const;

  // CoordinatorLink::Peer
  bool has_model() const override { return store_.has_model(); }
  void adopt_model(wire::ModelInfo::Reader info) override;
  void fill_registration(wire::RegisterWorker::Builder registration) override;
  void on_registered(wire::RegisterReply::Reader reply) override;
  void fill_heartbeat(wire::Heartbeat::Builder heartbeat) override;
  void on_heartbeat_reply(wire::HeartbeatReply::Reader reply) override;
  void on_fatal(const std::string& why) override;

  WorkerOptions options_;
  std::string listen_host_;
  uint16_t listen_port_ = 0;
  std::string address_;
  std::string name_;
  uint64_t memory_bytes_ = 0;

  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<WorkerMetrics> metrics_;
  LoadWindow load_window_;
  ExpertStore store_;
  AdoptedMetadata adopted_;  // answers getModel / getPlacement of clients while the coordinator is away
  const std::string control_key_;  // drawn at start, sent with every registration (see check_control_key)
  mutable std::mutex epoch_mutex_;
  EpochState epochs_;
  uint64_t weight_version_ = 0;  // of the current epoch (guarded by epoch_mutex_)
  // The current epoch's layers in another version (Placement.layerVersions; guarded by epoch_mutex_).
  std::map<int32_t, uint64_t> layer_versions_;
  std::atomic<uint64_t> peak_bytes_{0};  // the most resident weight bytes seen (update_gauges)

  std::unique_ptr<IoPool> io_;
  std::unique_ptr<ForwardRunner> runner_;
  std::unique_ptr<ForwardBatcher> batcher_;
  std::unique_ptr<SerialExecutor> control_;
  std::unique_ptr<CoordinatorLink> link_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<UcxListener> ucx_listener_;  // --transport ucx: forward requests also over UCX
  std::string ucx_address_;                    // "host:port" of ucx_listener_ ("" without)
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drained_{false};  // the coordinator said drained: SIGTERM sent once
  std::atomic<bool> failed_{false};   // on_fatal: SIGTERM sent once, exit status 1
  bool started_ = false;
};

}  // namespace moe
