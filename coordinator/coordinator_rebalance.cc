// Live rebalancing and elasticity on the control thread: `moectl rebalance` (on demand, or a dry run),
// the periodic check (--rebalance-threshold / --rebalance-interval-ms), scale out (a worker that
// registers after the first placement gets experts in the next epoch) and `moectl drain` (the worker's
// experts move away; the drain is acknowledged once the committed epoch leaves it nothing, and its
// heartbeat replies say `drained` once that epoch is released, so it may exit). Every change is planned by
// plan_rebalance and runs through the same prepare -> commit -> grace -> release protocol as failover,
// one change at a time (never while a release is due), so no request is dropped. Every request is answered
// within --rpc-timeout-ms unless a change for it is being carried out: with an error "cannot act: <why>"
// when the control thread cannot act on it (dead workers' experts not re-homed, capacity too short to plan,
// a change still preparing or in its grace period).
#include <algorithm>

#include <boost/asio/steady_timer.hpp>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "coordinator/rebalance_plan.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_error.h"

namespace moe {

using Core = CoordinatorService::Core;

namespace {

std::string fixed2(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

void reply_rebalance(const Responder& responder, uint64_t epoch, size_t moved, double before, double after) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initRebalanceReply();
  reply.setEpoch(epoch);
  reply.setExpertsMoved(static_cast<uint32_t>(moved));
  reply.setImbalanceBefore(static_cast<float>(before));
  reply.setImbalanceAfter(static_cast<float>(after));
  responder.reply(message);
}

void reply_ack(const Responder& responder, uint64_t epoch) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initAck().setEpoch(epoch);
  responder.reply(message);
}

}  // namespace

void Core::on_rebalance(wire::Rebalance::Reader request, const Responder& responder) {
  std::lock_guard lock(mutex);
  if (table.epoch == 0) throw ServiceError(wire::ErrorCode::NOT_READY, "rebalance: no placement yet");
  coordinator_log(std::string("rebalance requested") + (request.getDryRun() ? " (dry run)" : ""));
  const uint64_t id = ++next_request;
  rebalance_requests.push_back({request.getDryRun(), responder, id});
  arm_request_deadline(id);
  wake = true;
  wake_cv.notify_all();
}

void Core::on_drain(wire::Drain::Reader request, const Responder& responder) {
  const uint32_t id = request.getWorkerId();
  std::lock_guard lock(mutex);
  WorkerRecord* record = membership.find(id);
  if (!record || !record->live()) throw ServiceError(wire::ErrorCode::BAD_REQUEST, "drain: no live worker " + std::to_string(id));
  size_t others = 0;
  for (const auto& worker : membership.placeable()) others += worker.id != id && !draining.count(worker.id);
  if (others == 0) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                       "drain: worker " + std::to_string(id) + " is the last one that could host experts");
  }
  if (draining.insert(id).second) coordinator_log(record->label() + " is draining: its experts move away");
  record->state = WorkerState::Draining;
  metrics.set_workers(membership);
  const uint64_t request_id = ++next_request;
  drain_requests.push_back({id, responder, request_id});
  arm_request_deadline(request_id);
  wake = true;
  wake_cv.notify_all();
}

void Core::arm_request_deadline(uint64_t request) {
  auto timer = std::make_shared<boost::asio::steady_timer>(pool.context(), std::chrono::milliseconds(config.rpc_timeout_ms));
  timer->async_wait([weak = weak_from_this(), timer, request](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto core = weak.lock()) core->request_deadline_passed(request);
  });
}

std::string Core::cannot_act_locked() const {
  if (!dead_in_table.empty()) {
    std::string ids;
    for (uint32_t id : dead_in_table) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
    return "the experts of dead worker(s) " + ids + " are not re-homed" + (plan_blocked.empty() ? "" : ": " + plan_blocked);
  }
  if (!control_activity.empty()) return control_activity;
  if (table.epoch == 0) return "no placement yet";
  if (release_due) return "epoch " + std::to_string(release_due->first) + " is in its grace period";
  if (!plan_blocked.empty()) return plan_blocked;
  return "the control thread is busy";
}

namespace {

// Ends the drain of a worker whose drain request failed: it keeps serving with its experts.
void undrain(std::set<uint32_t>& draining, Membership& membership, const PlacementTable& table, uint32_t worker_id) {
  if (!draining.erase(worker_id)) return;
  WorkerRecord* record = membership.find(worker_id);
  if (!record || !record->live()) return;
  record->state = table.experts_on(worker_id).empty() ? WorkerState::Joining : WorkerState::Active;
}

}  // namespace

void Core::refuse_waiting_requests_locked(const std::string& reason) {
  for (const auto& request : rebalance_requests) {
    send_error(request.responder, ServiceError(wire::ErrorCode::NOT_READY, "rebalance: cannot act: " + reason, table.epoch),
               "rebalance");
  }
  rebalance_requests.clear();
  std::erase_if(drain_requests, [&](const PendingDrain& drain) {
    if (drain.acting) return false;
    send_error(drain.responder,
               ServiceError(wire::ErrorCode::NOT_READY,
                            "drain of worker " + std::to_string(drain.worker_id) + ": cannot act: " + reason, table.epoch),
               "drain");
    undrain(draining, membership, table, drain.worker_id);
    return true;
  });
  metrics.set_workers(membership);
}

void Core::request_deadline_passed(uint64_t request) {
  std::lock_guard lock(mutex);
  if (stopping) return;
  const std::string late = "cannot act within " + std::to_string(config.rpc_timeout_ms) + " ms: ";
  auto rebalance = std::find_if(rebalance_requests.begin(), rebalance_requests.end(),
                                [&](const PendingRebalance& r) { return r.id == request; });
  if (rebalance != rebalance_requests.end()) {
    const std::string reason = cannot_act_locked();
    send_error(rebalance->responder, ServiceError(wire::ErrorCode::NOT_READY, "rebalance: " + late + reason, table.epoch),
               "rebalance");
    rebalance_requests.erase(rebalance);
    return;
  }
  auto drain = std::find_if(drain_requests.begin(), drain_requests.end(),
                            [&](const PendingDrain& d) { return d.id == request; });
  if (drain == drain_requests.end()) return;  // answered
  if (drain->acting) {                         // its change is being carried out: answered when it ends
    arm_request_deadline(request);
    return;
  }
  const std::string reason = cannot_act_locked();
  const uint32_t worker_id = drain->worker_id;
  send_error(drain->responder,
             ServiceError(wire::ErrorCode::NOT_READY,
                          "drain of worker " + std::to_string(worker_id) + ": " + late + reason, table.epoch),
             "drain");
  drain_requests.erase(drain);
  if (std::none_of(drain_requests.begin(), drain_requests.end(),
                   [&](const PendingDrain& d) { return d.worker_id == worker_id; })) {
    undrain(draining, membership, table, worker_id);
    metrics.set_workers(membership);
  }
}

bool Core::drained_locked(uint32_t worker_id) const {
  if (!draining.count(worker_id) || table.epoch == 0) return false;
  return table.experts_on(worker_id).empty() && released_epoch >= table.epoch;
}

void Core::answer_finished_drains_locked() {
  std::erase_if(drain_requests, [&](const PendingDrain& drain) {
    const WorkerRecord* record = membership.find(drain.worker_id);
    if (record && record->live() && !table.experts_on(drain.worker_id).empty()) return false;
    reply_ack(drain.responder, table.epoch);
    coordinator_log("worker " + std::to_string(drain.worker_id) + " is drained: epoch " + std::to_string(table.epoch) +
                    " gives it nothing");
    return true;
  });
}

void Core::rebalance_step() {
  PlacementTable current;
  RebalanceResult result;
  std::vector<PendingRebalance> requests;
  std::string why;
  bool must_change = false;  // a drain or a scale out: change even when the imbalance does not improve
  bool periodic_check = false;
  {
    std::lock_guard lock(mutex);
    control_activity.clear();
    if (stopping || table.epoch == 0 || table_stale) return;
    if (!dead_in_table.empty()) {  // failover could not plan: nothing else can either
      refuse_waiting_requests_locked(cannot_act_locked());
      return;
    }
    if (release_due) return;  // the requests wait for the release (within their deadline)
    answer_finished_drains_locked();
    std::vector<WorkerCapacity> hosts;
    for (const auto& worker : membership.placeable()) {
      if (!draining.count(worker.id)) hosts.push_back(worker);
    }
    for (uint32_t id : draining) {  // a commit of another change may have reset the state from its table
      if (WorkerRecord* record = membership.find(id); record && record->live()) record->state = WorkerState::Draining;
    }
    const bool drain = !drain_requests.empty();
    bool scale_out = false;
    if (membership_version != scale_out_version) {
      for (const auto& host : hosts) scale_out |= table.experts_on(host.id).empty();
      if (scale_out) scale_out_version = membership_version;
    }
    const auto now = Clock::now();
    const bool periodic = config.rebalance_threshold > 0 && now >= next_periodic_check;
    if (periodic) next_periodic_check = now + std::chrono::milliseconds(config.rebalance_interval_ms);
    requests.swap(rebalance_requests);
    if (!drain && !scale_out && requests.empty() && !periodic) return;
    const auto loads = estimates.per_expert();
    periodic_check =
        periodic && max_expected_imbalance(table, loads, model.spec().moe_layers) > config.rebalance_threshold;
    if (!drain && !scale_out && requests.empty() && !periodic_check) return;
    must_change = drain || scale_out;
    why = drain ? "drain" : scale_out ? "scale out onto new worker(s)" : requests.empty() ? "imbalance over the threshold"
                                                                                          : "moectl rebalance";
    try {
      if (hosts.empty()) throw PlacementError("no worker may host experts");
      result = plan_rebalance(table, model.experts(), hosts, loads, config.replica_budget, config.replicas);
      result.next.epoch = std::max(result.next.epoch, next_epoch_locked());
    } catch (const PlacementError& e) {
      coordinator_log("cannot plan a rebalance (" + why + "): " + e.what());
      rebalance_requests.insert(rebalance_requests.end(), requests.begin(), requests.end());
      refuse_waiting_requests_locked(e.what());
      return;
    }
    current = table;
    for (auto& pending : drain_requests) pending.acting = drain;
    control_activity = "epoch " + std::to_string(result.next.epoch) + " is being prepared (" + why + ")";
  }
  struct StopActing {  // whatever happens below, drains still pending wait for the next step again
    Core& core;
    ~StopActing() {
      std::lock_guard lock(core.mutex);
      for (auto& pending : core.drain_requests) pending.acting = false;
    }
  } stop_acting{*this};
  const std::string summary = std::to_string(result.experts_moved) + " expert copies move, expected imbalance " +
                              fixed2(result.imbalance_before) + " -> " + fixed2(result.imbalance_after) + " (" +
                              std::to_string(result.slots_per_layer) + " slots per worker per layer)";
  std::vector<PendingRebalance> real;
  for (auto& request : requests) {
    if (request.dry_run) {
      reply_rebalance(request.responder, current.epoch, result.experts_moved, result.imbalance_before, result.imbalance_after);
    } else {
      real.push_back(std::move(request));
    }
  }
  const bool changes = result.next.assignments != current.assignments || result.next.workers != current.workers;
  const bool improves = result.imbalance_after < result.imbalance_before - 0.01;
  const bool only_dry_runs = !must_change && !periodic_check && real.empty();  // a dry run never changes anything
  if (!changes || only_dry_runs || (!must_change && real.empty() && !improves)) {
    if (changes || !real.empty()) coordinator_log("rebalance (" + why + ") leaves the placement as it is: " + summary);
    for (const auto& request : real) {
      reply_rebalance(request.responder, current.epoch, 0, result.imbalance_before, result.imbalance_before);
    }
    return;
  }
  coordinator_log("epoch " + std::to_string(result.next.epoch) + ": rebalance (" + why + "): " + summary + "; preparing");
  const auto failed = prepare(current, result.next);
  if (!failed.empty()) {
    std::lock_guard lock(mutex);
    for (uint32_t id : failed) {
      if (WorkerRecord* worker = membership.find(id)) {
        mark_dead_locked(*worker, "prepare of epoch " + std::to_string(result.next.epoch) + " failed");
      }
    }
    for (const auto& request : real) {
      send_error(request.responder,
                 ServiceError(wire::ErrorCode::INTERNAL,
                              "rebalance: prepare of epoch " + std::to_string(result.next.epoch) + " failed on " +
                                  std::to_string(failed.size()) + " worker(s); try again",
                              current.epoch, true),
                 "rebalance");
    }
    return;
  }
  commit(result.next);
  metrics.set_unavailable_experts(unplaced_experts(result.next, model.experts()).size());
  metrics.weights_moved(result.experts_moved);
  metrics.rebalanced();
  for (const auto& request : real) {
    reply_rebalance(request.responder, result.next.epoch, result.experts_moved, result.imbalance_before,
                    result.imbalance_after);
  }
  std::lock_guard lock(mutex);
  answer_finished_drains_locked();
}

}  // namespace moe
