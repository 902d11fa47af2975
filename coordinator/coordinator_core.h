// The inside of CoordinatorService, shared by its three source files: coordinator_service.cc (start,
// stop, state file), coordinator_requests.cc (request handlers), coordinator_control.cc (the control
// thread: leases, planning, the change protocol). One mutex guards membership and the table; network
// waits happen on the control thread without it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/coordinator_config.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/load_estimates.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/membership.h"
#include "coordinator/model_catalog.h"
#include "coordinator/worker_links.h"
#include "runtime/metrics/metrics_endpoint.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/server.h"
#include "runtime/placement/placement_table.h"
#include "runtime/wire/service_error.h"

namespace moe {

struct CoordinatorService::Core : std::enable_shared_from_this<CoordinatorService::Core> {
  using Clock = std::chrono::steady_clock;

  explicit Core(CoordinatorConfig cfg);
  void start();
  void stop();

  // coordinator_requests.cc (io threads)
  void handle(Frame request, Responder responder);
  void on_register(wire::RegisterWorker::Reader request, const Responder& responder);
  void on_heartbeat(wire::Heartbeat::Reader request, const Responder& responder);
  void on_get_model(const Responder& responder);
  void on_get_placement(const Responder& responder);
  void on_status(const Responder& responder);
  void on_registration_closed(uint32_t worker_id, uint64_t registration);
  // The one way the coordinator answers with an error: counts it in moe_coordinator_errors_total{code},
  // logs it with the request kind (`what`) and the peer, replies. Any thread; never takes `mutex`.
  void send_error(const Responder& responder, const ServiceError& error, const std::string& what);
  // coordinator_rebalance.cc: moectl rebalance / drain (io threads) and the rebalance step (control thread)
  void on_rebalance(wire::Rebalance::Reader request, const Responder& responder);
  void on_drain(wire::Drain::Reader request, const Responder& responder);
  // coordinator_update.cc: moectl update-weights (io thread queues it, the control thread carries it out)
  void on_update_weights(wire::UpdateWeights::Reader request, const Responder& responder);
  void update_weights_step();
  // One step of a layer-by-layer update (the update being carried out, `layerwise_next`): the next layers
  // that fit prepared in the new version, committed; the old version of those layers goes at the release.
  // The last step commits the new version whole and answers the request.
  void layerwise_step();
  // Why some worker of the table cannot hold all its experts in two versions at once, by its declared
  // memory and the experts' sizes ("" when every one can).
  std::string two_versions_do_not_fit_locked();
  // ModelInfo while the table serves some layers in a newer version: `weights` mixed with `layer_weights`.
  void mix_weights_locked();
  // Opens the checkpoint of a new weight version and checks it has the served model's family and shapes;
  // throws std::runtime_error with a one-line reason naming the mismatch.
  std::shared_ptr<const ModelCatalog> open_weights(const std::string& model_dir, uint64_t version) const;
  // Tells every live worker to drop what an unfinished prepare loaded (a release of the current epoch with
  // dropPrepared).
  void abort_prepared(uint64_t epoch);
  // Before adopting the workers' placement: when they serve a weight version above this coordinator's (it
  // restarted without its state file after an update), serve that version (the source they report).
  void adopt_reported_weights();
  void rebalance_step();
  void answer_finished_drains_locked();
  // A queued rebalance or drain gets an answer within config.rpc_timeout_ms: an error naming why the
  // control thread could not act (cannot_act_locked) when it is still waiting then (a drain being carried
  // out is given another period). Requests that cannot act at all are answered at once by rebalance_step.
  void arm_request_deadline(uint64_t request);
  void request_deadline_passed(uint64_t request);
  std::string cannot_act_locked() const;
  void refuse_waiting_requests_locked(const std::string& reason);
  bool drained_locked(uint32_t worker_id) const;

  // coordinator_control.cc (control thread)
  void control_loop();
  void check_leases();
  void plan_and_change();
  // Prepares `next` in the served weight version, or in `version` from `source` (update-weights: every
  // worker of `next` loads all its experts; with --no-shared-storage `seed` loads `seed_load` from the
  // source first and the others stream from it). Returns the workers that failed, with why in `errors`.
  std::vector<uint32_t> prepare(const PlacementTable& current, const PlacementTable& next);
  struct VersionPrepare {
    uint64_t version = 0;
    std::string source;
    std::vector<ExpertKey> seed_load;  // --no-shared-storage: what the seed loads (every expert)
    uint32_t seed = 0;
    std::map<uint32_t, std::string>* errors = nullptr;
    std::set<int32_t> layers;  // a layer-by-layer step: only these layers' experts (empty: all)
  };
  std::vector<uint32_t> prepare_version(const PlacementTable& next, const VersionPrepare& update);
  // One prepare request (throws when it cannot be sent); `holders` name where streamed experts come from.
  std::future<Frame> send_prepare(uint32_t worker_id, const std::string& address, uint64_t epoch,
                                  const std::vector<ExpertKey>& load,
                                  const std::map<ExpertKey, std::vector<std::string>>& holders, uint64_t version,
                                  const std::string& source, const std::map<int32_t, uint64_t>& layer_versions = {},
                                  const std::string& layer_source = "");
  // Waits for the acks; returns the workers that failed (and why, into `errors` when given).
  std::vector<uint32_t> await_prepares(std::vector<std::pair<uint32_t, std::future<Frame>>>& waiting, uint64_t epoch,
                                       std::map<uint32_t, std::string>* errors);
  // For every expert of `current`, the addresses of its live replicas (takes `mutex`).
  std::map<ExpertKey, std::vector<std::string>> expert_holders(const PlacementTable& current);
  // With `new_weights`, the epoch switches to that weight version (next.weight_version): the state file,
  // the commit (with its source) and, once sent, the ModelInfo served to clients. Without it the epoch
  // keeps the served version.
  // With `newer_layers` (a step of a layer-by-layer update), next.layer_versions' layers switch to that
  // catalog's version; without either, the epoch keeps the served versions (layer_versions too).
  void commit(const PlacementTable& next, std::shared_ptr<const ModelCatalog> new_weights = nullptr,
              std::shared_ptr<const ModelCatalog> newer_layers = nullptr);
  void release_if_due();
  // A worker the committed table lists that still serves an older epoch a lease period after the commit
  // (it missed it: the coordinator restarted between its state file and the broadcast, or the commit
  // timed out) gets the commit again, and the epoch's release is due again after the grace period: its
  // old weight version is dropped too.
  void catch_up_commits();
  // A worker an epoch-moving request goes to, with the control key it registered with.
  struct ControlTarget {
    uint32_t id = 0;
    std::string address;
    std::string control_key;
  };
  void broadcast(const std::vector<ControlTarget>& targets, const std::string& what,
                 const std::function<void(capnp::MessageBuilder&)>& fill);
  // Sets the cluster token and `control_key` on an epoch-moving request (prepare, commit, release).
  void authorise_control(capnp::MessageBuilder& message, const std::string& control_key) const;

  // coordinator_service.cc; callers hold `mutex`
  void mark_dead_locked(WorkerRecord& worker, const std::string& reason);
  // coordinator_adoption.cc; callers hold `mutex`
  // The epoch number the next change gets: above the table's and above any epoch a worker reported.
  uint64_t next_epoch_locked() const { return std::max(table.epoch, epoch_floor) + 1; }
  // Whether the workers report a placement this coordinator does not have (it restarted without its state
  // file, or the file is stale): then the next plan adopts what they hold.
  bool must_adopt_locked() const;
  // The adopted table (next_epoch_locked()) and, for prepare, a table of what each worker reported.
  // nullopt when it should wait for more reports (until started_at + adopt wait).
  struct Adoption {
    PlacementTable reported;
    PlacementTable next;
    std::string why;
  };
  std::optional<Adoption> plan_adoption_locked();
  // A registration of a worker the coordinator knows (same address, and same name or previous id).
  void reregistered_locked(WorkerRecord& record, const std::set<ExpertKey>& hosted);
  // Drops dead workers older than --dead-worker-ttl-ms that no committed epoch lists.
  void prune_dead_locked(Clock::time_point now);
  // The state file names the weights of `table.weight_version`: `new_weights` when given, else the served ones.
  // The layers of table.layer_versions are `newer_layers`' (else `layer_weights`').
  void save_state_locked(const PlacementTable& table, const ModelCatalog* new_weights = nullptr,
                         const ModelCatalog* newer_layers = nullptr);
  void membership_changed_locked();
  void load_saved_state();

  const CoordinatorConfig config;
  const ModelCatalog model;         // the model the coordinator started with: spec and experts (every version's)
  MetricsEndpoint metrics_endpoint;
  CoordinatorMetrics metrics;
  IoPool pool;
  WorkerLinks links;  // control thread only
  std::unique_ptr<Server> server;
  std::thread control;
  std::atomic<uint64_t> control_rounds{0};  // finished control-loop rounds (tests)

  mutable std::mutex mutex;
  std::condition_variable wake_cv;
  bool wake = false;
  bool stopping = false;
  Membership membership;
  PlacementTable table;               // the committed placement, served to clients
  // The served weights when they are not `model`'s (after update-weights, or a state file saying so):
  // routers for ModelInfo, and the source workers load from. Null: `model`.
  std::shared_ptr<const ModelCatalog> weights;
  struct PendingUpdate {
    std::string model_dir;
    Responder responder;
  };
  std::optional<PendingUpdate> update_request;  // the update-weights queued or being carried out
  // Layer by layer (when a worker's memory cannot hold two versions of all its experts): the table serves
  // table.layer_versions' layers in `layer_weights`' version, the others in `weights`'; clients get
  // `mixed_weights`' ModelInfo (routers of each layer's version). All null when no layer is ahead.
  std::shared_ptr<const ModelCatalog> layer_weights;
  std::shared_ptr<const ModelCatalog> mixed_weights;
  std::shared_ptr<const ModelCatalog> layerwise_next;  // the update carried out layer by layer (control thread)
  uint64_t layerwise_previous = 0;    // the version it started from
  std::string layerwise_stopped;      // why the last layer-by-layer update stopped part way ("" when none)
  std::string update_activity;                  // what it is doing ("" when none), for moectl status
  std::set<uint32_t> dead_in_table;   // dead workers whose experts the table still lists
  std::vector<uint32_t> links_to_drop;
  uint64_t membership_version = 0;
  uint64_t epoch_floor = 0;           // the highest epoch any worker reported serving
  bool table_stale = false;           // workers serve an epoch above the table's: re-adopt from their reports
  const Clock::time_point started_at = Clock::now();
  uint64_t failed_plan_version = UINT64_MAX;  // a plan failed at this version: wait for a change
  std::optional<std::pair<uint64_t, Clock::time_point>> release_due;  // epoch, when
  uint64_t released_epoch = 0;        // the last epoch whose release was sent
  Clock::time_point committed_at = Clock::now();  // of the table (start, for a table from the state file)
  // Rebalancing (coordinator_rebalance.cc).
  struct PendingRebalance {
    bool dry_run = false;
    Responder responder;
    uint64_t id = 0;
  };
  struct PendingDrain {
    uint32_t worker_id = 0;
    Responder responder;
    uint64_t id = 0;
    bool acting = false;  // a change that drains it is being prepared
  };
  LoadEstimates estimates{config.load_ewma_alpha};
  std::vector<PendingRebalance> rebalance_requests;
  std::vector<PendingDrain> drain_requests;
  std::set<uint32_t> draining;        // workers moectl drain asked to empty
  uint64_t scale_out_version = UINT64_MAX;  // membership version of the last scale-out attempt
  uint64_t next_request = 0;          // ids of queued rebalance / drain requests
  std::string plan_blocked;           // why the last failover plan could not place everything ("" if it could)
  std::string control_activity;       // what the control thread is busy with ("" when idle)
  Clock::time_point next_periodic_check = Clock::now();
};

}  // namespace moe
