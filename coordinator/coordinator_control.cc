// The control thread: lease checks, planning (first placement, reassignment of dead workers' experts)
// and the change protocol: prepare the gainers in parallel and wait for their acks; a gainer that fails
// is dead and the plan is made again without it; save the state file; commit to every live worker;
// publish; after --grace-ms, release.
#include <algorithm>
#include <future>
#include <map>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/placement/reassign_lost.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

using Core = CoordinatorService::Core;

namespace {

std::string ids_text(const std::vector<uint32_t>& ids) {
  std::string out;
  for (uint32_t id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out;
}

}  // namespace

void Core::control_loop() {
  for (;;) {
    std::vector<uint32_t> drop;
    {
      std::unique_lock lock(mutex);
      auto until = Clock::now() + std::chrono::seconds(1);
      for (const auto& worker : membership.all()) {
        if (worker.live()) until = std::min(until, worker.lease_deadline);
      }
      if (release_due) until = std::min(until, release_due->second);
      if (table.epoch == 0) until = std::min(until, started_at + std::chrono::milliseconds(config.adopt_wait()));
      wake_cv.wait_until(lock, until, [&] { return wake || stopping; });
      if (stopping) return;
      wake = false;
      drop.swap(links_to_drop);
    }
    for (uint32_t id : drop) links.drop(id);
    check_leases();
    plan_and_change();
    release_if_due();
    catch_up_commits();
    update_weights_step();
    rebalance_step();
    ++control_rounds;
  }
}

void Core::check_leases() {
  std::lock_guard lock(mutex);
  prune_dead_locked(Clock::now());
  for (uint32_t id : membership.expired(Clock::now())) {
    WorkerRecord& worker = *membership.find(id);
    if (worker.confirmed) {
      metrics.lease_expired();
      mark_dead_locked(worker, "lease expired (no heartbeat for " + std::to_string(config.lease_ms) + " ms)");
    } else {
      mark_dead_locked(worker, "did not register again within " + std::to_string(config.lease_ms) +
                                   " ms of the coordinator restart");
    }
  }
}

void Core::plan_and_change() {
  adopt_reported_weights();
  for (;;) {
    PlacementTable current, next;
    std::string why;
    bool adopting = false;
    {
      std::lock_guard lock(mutex);
      if (stopping || membership_version == failed_plan_version) return;
      auto placeable = membership.placeable();
      try {
        if (must_adopt_locked()) {
          auto adoption = plan_adoption_locked();
          if (!adoption) return;  // more reports may come: the control loop wakes at the adopt deadline
          next = std::move(adoption->next);
          current = std::move(adoption->reported);
          why = std::move(adoption->why);
          adopting = true;
        } else if (table.epoch == 0) {
          if (placeable.size() < config.min_workers) return;
          next = initial_placement(model.experts(), placeable, config.replicas);
          why = "first placement on " + std::to_string(placeable.size()) + " worker(s)";
        } else {
          std::vector<uint32_t> dead;
          for (uint32_t id : dead_in_table) {
            if (table.find_worker(id)) dead.push_back(id);
          }
          const auto unplaced = unplaced_experts(table, model.experts());
          if (dead.empty() && unplaced.empty()) return;
          // Orphans first (evicting surplus replicas where the survivors are full); what still does not fit
          // stays unplaced until the membership changes (a worker joins).
          std::vector<WorkerCapacity> hosts;
          for (const auto& worker : placeable) {
            if (!draining.count(worker.id)) hosts.push_back(worker);
          }
          next = reassign_lost(table, dead, hosts, model.experts(), estimates.per_expert_with_departed());
          if (dead.empty() && next.assignments == table.assignments) {
            plan_blocked = "capacity is short: " + experts_text(unplaced) + " have no replica and no worker has room";
            failed_plan_version = membership_version;
            return;
          }
          why = dead.empty() ? "unplaced experts return" : "experts of dead worker(s) " + ids_text(dead) + " move to the survivors";
        }
        std::vector<WorkerCapacity> gainers;  // a worker over its capacity from before gains nothing here
        for (const auto& worker : placeable) {
          if (!table.gained_by(worker.id, next).empty()) gainers.push_back(worker);
        }
        check_capacity(next, gainers, model.experts());
      } catch (const PlacementError& e) {
        coordinator_log("cannot plan a placement: " + std::string(e.what()) + "; waiting for a membership change");
        plan_blocked = e.what();
        failed_plan_version = membership_version;
        return;
      }
      next.epoch = std::max(next.epoch, next_epoch_locked());  // above every epoch any worker has seen
      if (const auto short_of = unplaced_experts(next, model.experts()); !short_of.empty()) {
        why += "; " + std::to_string(short_of.size()) + " expert(s) stay unavailable until a worker with room joins";
        std::string list = experts_text(short_of);
        list.insert(list.find(':'), " unavailable");  // "8 experts unavailable: (layer 0, expert 1), ..."
        coordinator_log("capacity short for epoch " + std::to_string(next.epoch) + ": " + list + "; " +
                        std::to_string(placeable.size()) + " worker(s) have no room for them");
      }
      plan_blocked.clear();
      control_activity = "epoch " + std::to_string(next.epoch) + " is being prepared (" + why + ")";
      if (!adopting) current = table;
    }
    coordinator_log("epoch " + std::to_string(next.epoch) + ": " + why + "; preparing");
    const auto failed = prepare(current, next);
    if (failed.empty()) {
      commit(next);
      metrics.set_unavailable_experts(unplaced_experts(next, model.experts()).size());
      size_t moved = 0;
      for (const auto& worker : next.workers) moved += current.gained_by(worker.id, next).size();
      metrics.weights_moved(moved);
      return;
    }
    std::lock_guard lock(mutex);
    for (uint32_t id : failed) {
      if (WorkerRecord* worker = membership.find(id)) mark_dead_locked(*worker, "prepare of epoch " + std::to_string(next.epoch) + " failed");
    }
  }
}

std::map<ExpertKey, std::vector<std::string>> Core::expert_holders(const PlacementTable& current) {
  std::map<ExpertKey, std::vector<std::string>> holders;
  std::lock_guard lock(mutex);
  for (const auto& [key, replicas] : current.assignments) {
    for (const Replica& replica : replicas) {
      const WorkerRecord* worker = membership.find(replica.worker_id);
      const PlacedWorker* placed = current.find_worker(replica.worker_id);
      if (worker && worker->live() && placed) holders[key].push_back(placed->address);
    }
  }
  return holders;
}

std::future<Frame> Core::send_prepare(uint32_t worker_id, const std::string& address, uint64_t epoch,
                                     const std::vector<ExpertKey>& load,
                                     const std::map<ExpertKey, std::vector<std::string>>& holders, uint64_t version,
                                     const std::string& source, const std::map<int32_t, uint64_t>& layer_versions,
                                     const std::string& layer_source) {
  capnp::MallocMessageBuilder message;
  auto prepare = message.initRoot<wire::Envelope>().initPrepare();
  prepare.setEpoch(epoch);
  prepare.setWeightVersion(version);
  prepare.setWeightSource(source);
  if (!layer_versions.empty()) {
    auto list = prepare.initLayerVersions(static_cast<unsigned>(layer_versions.size()));
    unsigned l = 0;
    for (const auto& [layer, v] : layer_versions) {
      list[l].setLayer(layer);
      list[l++].setVersion(v);
    }
    prepare.setLayerSource(layer_source);
  }
  {
    std::lock_guard lock(mutex);
    const WorkerRecord* record = membership.find(worker_id);
    authorise_control(message, record ? record->control_key : std::string());
  }
  auto list = prepare.initLoad(static_cast<unsigned>(load.size()));
  for (unsigned i = 0; i < load.size(); ++i) {
    list[i].setLayer(load[i].layer);
    list[i].setExpert(load[i].expert);
  }
  std::vector<ExpertKey> streamed;
  for (const ExpertKey& key : load) {
    if (holders.count(key)) streamed.push_back(key);
  }
  auto sources = prepare.initSources(static_cast<unsigned>(streamed.size()));
  for (unsigned i = 0; i < streamed.size(); ++i) {
    sources[i].initExpert().setLayer(streamed[i].layer);
    sources[i].getExpert().setExpert(streamed[i].expert);
    const auto& addresses = holders.at(streamed[i]);
    auto addresses_list = sources[i].initAddresses(static_cast<unsigned>(addresses.size()));
    for (unsigned a = 0; a < addresses.size(); ++a) addresses_list.set(a, addresses[a]);
  }
  return links.get(worker_id, address)->request(message, std::chrono::milliseconds(config.prepare_timeout_ms));
}

std::vector<uint32_t> Core::await_prepares(std::vector<std::pair<uint32_t, std::future<Frame>>>& waiting, uint64_t epoch,
                                           std::map<uint32_t, std::string>* errors) {
  std::vector<uint32_t> failed;
  for (auto& [id, reply] : waiting) {
    try {
      Frame frame = reply.get();  // bounded by the request's deadline
      expect_kind(frame.envelope(), wire::Envelope::PREPARE_ACK);
      const uint64_t acked = frame.envelope().getPrepareAck().getEpoch();
      if (acked != epoch) {
        throw WireError("prepareAck for epoch " + std::to_string(acked) + ", expected " + std::to_string(epoch));
      }
    } catch (const std::exception& e) {
      coordinator_log("prepare of epoch " + std::to_string(epoch) + " on worker " + std::to_string(id) + " failed: " + e.what());
      if (errors) (*errors)[id] = e.what();
      failed.push_back(id);
    }
  }
  waiting.clear();
  return failed;
}

std::vector<uint32_t> Core::prepare(const PlacementTable& current, const PlacementTable& next) {
  std::map<ExpertKey, std::vector<std::string>> holders;  // --no-shared-storage: where gainers stream from
  if (config.no_shared_storage) holders = expert_holders(current);
  uint64_t version;
  std::string source, layer_source;
  std::map<int32_t, uint64_t> layer_versions;  // a layer-by-layer update under way: gained experts load in their layer's version
  {
    std::lock_guard lock(mutex);
    version = table.weight_version;
    source = weights ? weights->source() : model.source();
    layer_versions = table.layer_versions;
    if (layer_weights) layer_source = layer_weights->source();
  }
  std::vector<uint32_t> failed;
  std::vector<std::pair<uint32_t, std::future<Frame>>> waiting;
  for (const auto& worker : next.workers) {
    const auto gained = current.gained_by(worker.id, next);
    if (gained.empty()) continue;
    try {
      waiting.emplace_back(worker.id, send_prepare(worker.id, worker.address, next.epoch, gained, holders, version, source,
                                                   layer_versions, layer_source));
    } catch (const std::exception& e) {
      coordinator_log("prepare of epoch " + std::to_string(next.epoch) + " to worker " + std::to_string(worker.id) +
                      " not sent: " + e.what());
      failed.push_back(worker.id);
    }
  }
  auto more = await_prepares(waiting, next.epoch, nullptr);
  failed.insert(failed.end(), more.begin(), more.end());
  return failed;
}

void Core::commit(const PlacementTable& next_in, std::shared_ptr<const ModelCatalog> new_weights,
                  std::shared_ptr<const ModelCatalog> newer_layers) {
  PlacementTable next = next_in;
  std::vector<ControlTarget> targets;
  std::string source, layer_source;
  {
    std::lock_guard lock(mutex);
    if (!new_weights && !newer_layers) {  // planners know nothing of versions
      next.weight_version = table.weight_version;
      next.layer_versions = table.layer_versions;
    }
    source = new_weights ? new_weights->source() : weights ? weights->source() : model.source();
    if (!next.layer_versions.empty()) {
      layer_source = newer_layers ? newer_layers->source() : layer_weights ? layer_weights->source() : std::string();
    }
    save_state_locked(next, new_weights.get(), newer_layers.get());  // before anyone hears of the epoch: a restart never reuses its number
    for (const auto& worker : membership.all()) {
      if (worker.live()) targets.push_back({worker.id, worker.address, worker.control_key});
    }
  }
  broadcast(targets, "commit of epoch " + std::to_string(next.epoch), [&](capnp::MessageBuilder& message) {
    auto commit = message.initRoot<wire::Envelope>().initCommit();
    placement_to_wire(next, commit.initPlacement());
    commit.setWeightSource(source);
    commit.setLayerSource(layer_source);
  });
  std::lock_guard lock(mutex);
  table = next;
  committed_at = Clock::now();
  if (new_weights) weights = std::move(new_weights);  // clients now route with the new version's routers
  if (newer_layers) layer_weights = std::move(newer_layers);
  mix_weights_locked();
  std::erase_if(dead_in_table, [&](uint32_t id) { return !table.find_worker(id); });
  table_stale = false;
  for (auto& worker : membership.all()) {
    if (!worker.live()) continue;
    const PlacedWorker* placed = table.find_worker(worker.id);
    if (placed) {
      worker.state = placed->state;
    } else {
      worker.stale_in_table = false;  // the epoch that listed its lost experts is gone
      if (worker.state != WorkerState::Draining) worker.state = WorkerState::Joining;
    }
    table_stale |= worker.serving_epoch > table.epoch;
  }
  release_due = std::make_pair(next.epoch, Clock::now() + std::chrono::milliseconds(config.grace_ms));
  metrics.set_epoch(table.epoch);
  metrics.placement_changed();
  metrics.set_workers(membership);
  coordinator_log("epoch " + std::to_string(table.epoch) + " committed: " + std::to_string(table.assignments.size()) +
                  " experts on " + std::to_string(table.workers.size()) + " worker(s)");
}

void Core::catch_up_commits() {
  std::vector<ControlTarget> targets;
  PlacementTable current;
  std::string source, layer_source;
  {
    std::lock_guard lock(mutex);
    if (stopping || table.epoch == 0 || table_stale || release_due || !control_activity.empty()) return;
    const auto now = Clock::now();
    if (now < committed_at + std::chrono::milliseconds(config.lease_ms)) return;
    for (const auto& worker : membership.all()) {
      // A worker whose lease ran out is check_leases's to judge: a commit to it would only hold this loop
      // for the request's deadline (a SIGSTOPped worker) while its lease cannot be checked.
      if (worker.live() && worker.confirmed && now < worker.lease_deadline && worker.serving_epoch < table.epoch &&
          table.find_worker(worker.id)) {
        targets.push_back({worker.id, worker.address, worker.control_key});
      }
    }
    if (targets.empty()) return;
    current = table;
    source = weights ? weights->source() : model.source();
    if (!current.layer_versions.empty() && layer_weights) layer_source = layer_weights->source();
    committed_at = now;  // at most once a lease period
  }
  std::string ids;
  for (const auto& target : targets) ids += (ids.empty() ? "" : ", ") + std::to_string(target.id);
  coordinator_log("worker(s) " + ids + " still serve an epoch before " + std::to_string(current.epoch) +
                  ": committing it to them again");
  broadcast(targets, "catch-up commit of epoch " + std::to_string(current.epoch), [&](capnp::MessageBuilder& message) {
    auto commit = message.initRoot<wire::Envelope>().initCommit();
    placement_to_wire(current, commit.initPlacement());
    commit.setWeightSource(source);
    commit.setLayerSource(layer_source);
  });
  std::lock_guard lock(mutex);
  if (table.epoch == current.epoch && !release_due) {
    release_due = std::make_pair(current.epoch, Clock::now() + std::chrono::milliseconds(config.grace_ms));
  }
}

void Core::release_if_due() {
  std::vector<ControlTarget> targets;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mutex);
    if (!release_due || Clock::now() < release_due->second) return;
    epoch = release_due->first;
    release_due.reset();
    released_epoch = epoch;
    for (const auto& worker : membership.all()) {
      if (worker.live()) targets.push_back({worker.id, worker.address, worker.control_key});
    }
  }
  broadcast(targets, "release of epoch " + std::to_string(epoch),
            [&](capnp::MessageBuilder& message) {
              auto release = message.initRoot<wire::Envelope>().initRelease();
              release.setEpoch(epoch);
            });
  coordinator_log("epoch " + std::to_string(epoch) + " released on " + std::to_string(targets.size()) + " worker(s)");
}

void Core::authorise_control(capnp::MessageBuilder& message, const std::string& control_key) const {
  auto envelope = message.getRoot<wire::Envelope>();
  set_cluster_token(envelope, config.cluster_token);
  envelope.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(control_key.data()), control_key.size()));
}

void Core::broadcast(const std::vector<ControlTarget>& targets, const std::string& what,
                     const std::function<void(capnp::MessageBuilder&)>& fill) {
  std::vector<std::pair<uint32_t, std::future<Frame>>> waiting;
  for (const auto& [id, address, key] : targets) {
    capnp::MallocMessageBuilder message;
    fill(message);
    authorise_control(message, key);
    try {
      waiting.emplace_back(id, links.get(id, address)->request(message, std::chrono::milliseconds(config.rpc_timeout_ms)));
    } catch (const std::exception& e) {
      coordinator_log(what + " to worker " + std::to_string(id) + " not sent: " + e.what());
    }
  }
  for (auto& [id, reply] : waiting) {
    try {
      Frame frame = reply.get();
      expect_kind(frame.envelope(), wire::Envelope::ACK);
    } catch (const std::exception& e) {
      coordinator_log(what + " on worker " + std::to_string(id) + " failed: " + e.what());
    }
  }
}

}  // namespace moe
