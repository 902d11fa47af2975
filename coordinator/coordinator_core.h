// The inside of CoordinatorService, shared by its three source files: coordinator_service.cc (start,
// stop, state file), coordinator_requests.cc (request handlers), coordinator_control.cc (the control
// thread: leases, planning, the change protocol). One mutex guards membership and the table; network
// waits happen on the control thread without it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
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
  std::vector<uint32_t> prepare(const PlacementTable& current, const PlacementTable& next);
  // For every expert of `current`, the addresses of its live replicas (takes `mutex`).
  std::map<ExpertKey, std::vector<std::string>> expert_holders(const PlacementTable& current);
  void commit(const PlacementTable& next);
  void release_if_due();
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
  void save_state_locked(const PlacementTable& table);
  void membership_changed_locked();
  void load_saved_state();

  const CoordinatorConfig config;
  const ModelCatalog model;
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
  std::set<uint32_t> dead_in_table;   // dead workers whose experts the table still lists
  std::vector<uint32_t> links_to_drop;
  uint64_t membership_version = 0;
  uint64_t epoch_floor = 0;           // the highest epoch any worker reported serving
  bool table_stale = false;           // workers serve an epoch above the table's: re-adopt from their reports
  const Clock::time_point started_at = Clock::now();
  uint64_t failed_plan_version = UINT64_MAX;  // a plan failed at this version: wait for a change
  std::optional<std::pair<uint64_t, Clock::time_point>> release_due;  // epoch, when
  uint64_t released_epoch = 0;        // the last epoch whose release was sent
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
