// CoordinatorService: start (model, metrics, state file, server, control thread), stop, and the
// membership bookkeeping every other part calls with the lock held.
#include "coordinator/coordinator_service.h"

#include <stdexcept>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "coordinator/state_store.h"
#include "runtime/net/address.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_check.h"

namespace moe {

using Core = CoordinatorService::Core;

Core::Core(CoordinatorConfig cfg)
    : config(std::move(cfg)),
      model(config.model, config.deterministic),
      // /metrics: the cluster token and TLS as on every other port, unless --metrics-open.
      metrics_endpoint(parse_host_port(config.listen).host, config.metrics_port, "coordinator", "none",
                       config.metrics_open ? std::string() : config.cluster_token,
                       config.metrics_open ? nullptr : shared_native(make_tls(config.transport))),
      metrics(metrics_endpoint.registry()),
      pool(config.io_threads, make_tls(config.transport)),
      links(pool.context(), std::chrono::milliseconds(config.rpc_timeout_ms)) {}

void Core::load_saved_state() {
  if (config.state_file.empty()) return;
  auto saved = load_state(config.state_file);
  if (!saved) {
    coordinator_log("no state file at " + config.state_file + ": starting empty");
    return;
  }
  if (saved->placement.epoch > 0) {  // the file must describe this model
    const auto unplaced = unplaced_experts(saved->placement, model.experts());
    if (unplaced.size() == model.experts().experts.size()) {
      throw std::runtime_error("state file " + config.state_file + " places none of the experts of model " + model.name() +
                               ": it belongs to another model");
    }
    if (!unplaced.empty()) {  // a partial placement (capacity was short): the control thread places them
      coordinator_log("state file leaves " + experts_text(unplaced) + " unplaced: they are placed when capacity allows");
    }
    for (const auto& [key, replicas] : saved->placement.assignments) model.experts().bytes_of(key);
  }
  table = saved->placement;
  epoch_floor = table.epoch;
  if (table.epoch > 0) {
    // The workers may still be in the grace period of this epoch (the coordinator died before its release,
    // e.g. between two steps of a layer-by-layer update-weights): release it once they had a lease period
    // to register again, so what only older epochs needed (an old weight version) is unloaded.
    release_due = std::make_pair(table.epoch, Clock::now() + std::chrono::milliseconds(config.lease_ms + config.grace_ms));
  }
  if (table.epoch > 0 && (table.weight_version != 1 || !saved->weight_source.empty())) {
    // An update-weights committed before the restart: serve that version's routers, as the workers do.
    const std::string source = saved->weight_source.empty() ? model.source() : saved->weight_source;
    const ModelRef ref = ModelRef::parse(source);
    if (ref.model_dir.empty()) {
      throw std::runtime_error("state file " + config.state_file + " names weight version " +
                               std::to_string(table.weight_version) + " from '" + source + "', not a checkpoint folder");
    }
    weights = open_weights(ref.model_dir, table.weight_version);
    coordinator_log("state file: weight version " + std::to_string(table.weight_version) + " from " + source);
  }
  if (table.epoch > 0 && !table.layer_versions.empty()) {
    // A layer-by-layer update-weights was under way: its layers done so far keep the newer version.
    uint64_t newer = 0;
    for (const auto& [layer, version] : table.layer_versions) newer = std::max(newer, version);
    const ModelRef ref = ModelRef::parse(saved->layer_source);
    if (ref.model_dir.empty()) {
      throw std::runtime_error("state file " + config.state_file + " serves " + std::to_string(table.layer_versions.size()) +
                               " layers in weight version " + std::to_string(newer) + " from '" + saved->layer_source +
                               "', not a checkpoint folder");
    }
    layer_weights = open_weights(ref.model_dir, newer);
    mix_weights_locked();
    layerwise_stopped = "the coordinator restarted during it";
    coordinator_log("state file: a layer-by-layer update to weight version " + std::to_string(newer) + " (" +
                    saved->layer_source + ") stopped after " + std::to_string(table.layer_versions.size()) + " of " +
                    std::to_string(model.spec().moe_layers.size()) + " MoE layers; `moectl update-weights --model " +
                    ref.model_dir + "` finishes it");
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.lease_ms);
  for (auto& worker : saved->workers) {
    worker.confirmed = false;
    worker.lease_deadline = deadline;
    worker.registration = 0;
    membership.add(std::move(worker));
  }
  membership.set_next_id(std::max(membership.next_id(), saved->next_worker_id));
  metrics.set_epoch(table.epoch);
  metrics.set_workers(membership);
  coordinator_log("reloaded epoch " + std::to_string(table.epoch) + " with " + std::to_string(membership.all().size()) +
                  " worker(s) from " + config.state_file + "; waiting up to " + std::to_string(config.lease_ms) +
                  " ms for them to register again");
}

void Core::start() {
  load_saved_state();
  const HostPort listen = parse_host_port(config.listen);
  server = std::make_unique<Server>(pool.context(), listen.host, listen.port,
                                    [this](Frame request, Responder responder) { handle(std::move(request), responder); },
                                    server_options(config.transport, FrameLimits{}));
  control = std::thread([this] { control_loop(); });
  coordinator_log("serving model " + model.name() + " (" + std::to_string(model.experts().experts.size()) +
                  " experts) on " + server->address() + (server->tls() ? " with mutual TLS" : "") + ", replicas " +
                  std::to_string(config.replicas) +
                  ", waiting for " + std::to_string(config.min_workers) + " worker(s)" +
                  (config.metrics_port ? ", metrics on port " + std::to_string(metrics_endpoint.port()) +
                                               (metrics_endpoint.tls() ? " (https)" : "")
                                         : ""));
}

void Core::stop() {
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    stopping = true;
    wake = true;
  }
  wake_cv.notify_all();
  links.close_all();  // fails the prepares / commits the control thread may be waiting on: it returns now
  if (control.joinable()) control.join();
  if (server) server->stop();
  pool.stop();
  coordinator_log("stopped");
}

void Core::membership_changed_locked() {
  ++membership_version;
  metrics.set_workers(membership);
  save_state_locked(table);
  wake = true;
  wake_cv.notify_all();
}

void Core::mark_dead_locked(WorkerRecord& worker, const std::string& reason) {
  if (!worker.live()) return;
  worker.state = WorkerState::Dead;
  worker.registration = 0;
  worker.registered_on = nullptr;
  worker.dead_since = Clock::now();
  estimates.forget_worker(worker.id);
  coordinator_log(worker.label() + " is dead: " + reason);
  if (table.find_worker(worker.id)) dead_in_table.insert(worker.id);
  links_to_drop.push_back(worker.id);
  membership_changed_locked();
}

void Core::save_state_locked(const PlacementTable& placement, const ModelCatalog* new_weights,
                             const ModelCatalog* newer_layers) {
  if (config.state_file.empty()) return;
  SavedState state;
  state.placement = placement;
  if (!placement.layer_versions.empty()) {
    if (newer_layers) {
      state.layer_source = newer_layers->source();
    } else if (layer_weights) {
      state.layer_source = layer_weights->source();
    }
  }
  if (new_weights) {
    state.weight_source = new_weights->source();
  } else if (weights) {
    state.weight_source = weights->source();
  }
  state.next_worker_id = membership.next_id();
  for (const auto& worker : membership.all()) {
    if (worker.live()) state.workers.push_back(worker);
  }
  try {
    save_state(config.state_file, state);
  } catch (const std::exception& e) {
    coordinator_log(std::string("cannot save state: ") + e.what());
  }
}

CoordinatorService::CoordinatorService(CoordinatorConfig config) : core_(std::make_shared<Core>(std::move(config))) {
  try {
    core_->start();
  } catch (...) {
    core_->stop();
    throw;
  }
}

CoordinatorService::~CoordinatorService() { stop(); }

void CoordinatorService::stop() { core_->stop(); }

std::string CoordinatorService::address() const { return core_->server->address(); }
uint16_t CoordinatorService::port() const { return core_->server->port(); }
uint16_t CoordinatorService::metrics_port() const { return core_->metrics_endpoint.port(); }
prometheus::Registry& CoordinatorService::metrics_registry() { return core_->metrics_endpoint.registry(); }

uint64_t CoordinatorService::epoch() const {
  std::lock_guard lock(core_->mutex);
  return core_->table.epoch;
}

uint64_t CoordinatorService::control_rounds() const { return core_->control_rounds.load(); }

PlacementTable CoordinatorService::placement() const {
  std::lock_guard lock(core_->mutex);
  return core_->table;
}

}  // namespace moe
