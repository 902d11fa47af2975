// The coordinator's request handlers (io threads): handle() checks the cluster token of every request
// first, then dispatches to registerWorker, heartbeat (counted only on the worker's registration
// connection), getModel, getPlacement, status (rebalance and drain: coordinator_rebalance.cc). Each takes
// the lock briefly and replies at once; the control thread does the slow work. Every refusal is a
// ServiceError, answered and counted by send_error.
#include <algorithm>
#include <map>
#include <set>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "runtime/net/address.h"
#include "runtime/net/net_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/service_error.h"
#include "runtime/wire/text_limits.h"
#include "runtime/wire/wire_error.h"

namespace moe {

using Core = CoordinatorService::Core;

namespace {
// Every text field of a registration: name, address, backend (runtime/wire/text_limits.h).
void check_text(const char* field, capnp::Text::Reader text, size_t max) {
  try {
    check_text_length(std::string("registerWorker: ") + field, text, max);
  } catch (const WireError& e) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, e.what());
  }
}

// A list of experts a worker reports (hosted at registration, load in heartbeats): at most one entry per
// expert of the model, each naming one.
template <typename List>
void check_experts(const char* what, const List& list, const ExpertCatalog& catalog) {
  if (list.size() > catalog.experts.size()) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, std::string(what) + " lists " + std::to_string(list.size()) +
                                                         " experts, the model has " +
                                                         std::to_string(catalog.experts.size()));
  }
  for (auto ref : list) {
    const ExpertKey key{ref.getLayer(), ref.getExpert()};
    const bool known = std::binary_search(catalog.experts.begin(), catalog.experts.end(), CatalogExpert{key, 0},
                                          [](const CatalogExpert& a, const CatalogExpert& b) { return a.key < b.key; });
    if (!known) {
      throw ServiceError(wire::ErrorCode::BAD_REQUEST, std::string(what) + " names (layer " + std::to_string(key.layer) +
                                                           ", expert " + std::to_string(key.expert) +
                                                           "), which the model does not have");
    }
  }
}
}  // namespace

// Every request passes here first: the cluster token, then the dispatch; every refusal is one ServiceError,
// counted in moe_coordinator_errors_total and logged.
void Core::handle(Frame request, Responder responder) {
  auto envelope = request.envelope();
  const std::string kind = message_kind_name(envelope);
  try {
    check_cluster_token(envelope, config.cluster_token);
    switch (envelope.which()) {
      case wire::Envelope::REGISTER_WORKER: return on_register(envelope.getRegisterWorker(), responder);
      case wire::Envelope::HEARTBEAT: return on_heartbeat(envelope.getHeartbeat(), responder);
      case wire::Envelope::GET_MODEL: return on_get_model(responder);
      case wire::Envelope::GET_PLACEMENT: return on_get_placement(responder);
      case wire::Envelope::STATUS: return on_status(responder);
      case wire::Envelope::REBALANCE: return on_rebalance(envelope.getRebalance(), responder);
      case wire::Envelope::DRAIN: return on_drain(envelope.getDrain(), responder);
      case wire::Envelope::UPDATE_WEIGHTS: return on_update_weights(envelope.getUpdateWeights(), responder);
      default:
        throw ServiceError(wire::ErrorCode::BAD_REQUEST, "moe-coordinator does not handle " + kind + " requests");
    }
  } catch (const ServiceError& e) {
    send_error(responder, e, kind);
  }
}

void Core::send_error(const Responder& responder, const ServiceError& error, const std::string& what) {
  metrics.count_error(error.code());
  const auto connection = responder.connection().lock();
  coordinator_log("refused " + what + " " + std::to_string(responder.request_id()) +
                  (connection ? " from " + connection->peer() : std::string()) + ": " + error_code_name(error.code()) +
                  ": " + error.what());
  capnp::MallocMessageBuilder message;
  set_service_error(message.initRoot<wire::Envelope>(), error);
  responder.reply(message);
}

void Core::on_register(wire::RegisterWorker::Reader request, const Responder& responder) {
  check_text("name", request.getName(), kMaxNameBytes);
  check_text("address", request.getAddress(), kMaxAddressBytes);
  check_text("backend", request.getBackend(), kMaxNameBytes);
  const std::string address = request.getAddress().cStr();
  try {
    parse_host_port(address);
  } catch (const NetError& e) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, std::string("registerWorker: ") + e.what());
  }
  const std::string name = request.getName().cStr();
  if (request.getControlKey().size() > kControlKeyBytes) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, "registerWorker: control key of " +
                                                         std::to_string(request.getControlKey().size()) +
                                                         " bytes, at most " + std::to_string(kControlKeyBytes));
  }
  check_experts("registerWorker.hosted", request.getHosted(), model.experts());
  const auto key = request.getControlKey();
  const std::string control_key(reinterpret_cast<const char*>(key.begin()), key.size());
  const auto connection = responder.connection().lock();
  std::set<ExpertKey> hosted;
  for (auto ref : request.getHosted()) hosted.insert({ref.getLayer(), ref.getExpert()});
  const uint64_t serving = request.getServingEpoch();
  const uint32_t previous_id = request.getPreviousId();

  uint32_t id = 0;
  uint64_t registration = 0;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mutex);
    if (stopping) throw ServiceError(wire::ErrorCode::NOT_READY, "moe-coordinator is stopping");
    if (serving > epoch_floor) epoch_floor = serving;
    if (table.epoch > 0 && serving > table.epoch && !table_stale) {
      table_stale = true;
      coordinator_log(address + " serves epoch " + std::to_string(serving) + ", above this coordinator's epoch " +
                      std::to_string(table.epoch) + " (stale state file): adopting what the workers report");
    }
    // The same worker again (same address, and the same name or the id it had): it keeps its id.
    WorkerRecord* record = membership.find_by_address(address);
    if (record && record->name != name && !(previous_id != 0 && previous_id == record->id) && record->confirmed) {
      if (record->live()) mark_dead_locked(*record, "another worker (" + name + ") registered from its address");
      record = nullptr;
    }
    const auto capacity = request.getCapacity();
    std::string event;
    if (record) {
      const bool reloaded = record->live() && !record->confirmed;
      event = reloaded ? " registered again after the coordinator restart"
                       : record->live() ? " registered again (same name and address: it keeps its id)"
                                        : " is back after its death (same name and address: it keeps its id)";
      event += " (serving epoch " + std::to_string(serving) + ", " + std::to_string(hosted.size()) + " experts loaded)";
      reregistered_locked(*record, hosted);
    } else {
      WorkerRecord fresh;
      fresh.address = address;
      if (previous_id != 0 && !membership.find(previous_id)) fresh.id = previous_id;  // kept across restarts
      record = &membership.add(std::move(fresh));
      event = " registered (joining" + (serving > 0 ? ", serving epoch " + std::to_string(serving) + " with " +
                                                          std::to_string(hosted.size()) + " experts loaded"
                                                    : std::string()) + ")";
    }
    record->name = name;
    record->backend = request.getBackend().cStr();
    record->memory_bytes = capacity.getMemoryBytes();
    record->slots = capacity.getExpertSlots();
    record->serving_epoch = serving;
    record->weight_version = request.getWeightVersion();
    record->weight_source = request.getWeightSource();
    record->reported_hosted = std::move(hosted);
    record->lease_deadline = Clock::now() + std::chrono::milliseconds(config.lease_ms);
    record->registration = registration = membership.new_registration();
    record->registered_on = connection.get();
    record->control_key = control_key;
    id = record->id;
    epoch = table.epoch;
    coordinator_log(record->label() + event + ", backend " + record->backend + ", " +
                    std::to_string(record->slots) + " slots, " + std::to_string(record->memory_bytes) + " bytes");
    membership_changed_locked();
  }
  // The worker is dead when the connection it registered on closes.
  if (connection) {
    connection->on_close([weak = weak_from_this(), id, registration] {
      if (auto self = weak.lock()) self->on_registration_closed(id, registration);
    });
  }
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initRegisterReply();
  reply.setWorkerId(id);
  reply.setLeaseMs(config.lease_ms);
  reply.setHeartbeatMs(config.heartbeat_ms);
  reply.setCurrentEpoch(epoch);
  responder.reply(message);
}

void Core::on_registration_closed(uint32_t worker_id, uint64_t registration) {
  std::lock_guard lock(mutex);
  if (stopping) return;
  WorkerRecord* record = membership.find(worker_id);
  if (record && record->live() && record->registration == registration) {
    mark_dead_locked(*record, "its registration connection closed");
  }
}

void Core::on_heartbeat(wire::Heartbeat::Reader request, const Responder& responder) {
  check_experts("heartbeat.load", request.getLoad(), model.experts());
  const auto connection = responder.connection().lock();
  bool reregister = false;
  bool drained = false;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mutex);
    epoch = table.epoch;
    WorkerRecord* record = membership.find(request.getWorkerId());
    if (!record || !record->live() || !record->confirmed) {
      reregister = true;
    } else if (record->registered_on != connection.get()) {
      // Only the connection the worker registered on speaks for it: a heartbeat from anywhere else would
      // keep a dead worker listed or feed the rebalancer made-up load.
      throw ServiceError(wire::ErrorCode::UNAUTHORIZED,
                         "heartbeat for " + record->label() + " on a connection it did not register on", 0, false);
    } else {
      record->lease_deadline = Clock::now() + std::chrono::milliseconds(config.lease_ms);
      record->serving_epoch = request.getEpoch();
      if (record->serving_epoch > epoch_floor) epoch_floor = record->serving_epoch;
      record->window_ms = request.getWindowMs();
      record->memory_used_bytes = request.getMemoryUsedBytes();
      record->weight_version = request.getWeightVersion();
      record->load.clear();
      std::map<ExpertKey, uint64_t> window;
      for (auto load : request.getLoad()) {
        record->load.push_back({{load.getLayer(), load.getExpert()}, load.getTokens()});
        window[ExpertKey{load.getLayer(), load.getExpert()}] += load.getTokens();
      }
      estimates.add_window(record->id, record->window_ms, window);
      metrics.set_load(membership, table);
      drained = drained_locked(record->id);
    }
  }
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initHeartbeatReply();
  reply.setLeaseMs(config.lease_ms);
  reply.setCurrentEpoch(epoch);
  reply.setReregister(reregister);
  reply.setDrained(drained);
  responder.reply(message);
}

void Core::on_get_model(const Responder& responder) {
  capnp::MallocMessageBuilder message;
  std::shared_ptr<const ModelCatalog> served;
  {
    std::lock_guard lock(mutex);
    served = mixed_weights ? mixed_weights : weights;
  }
  message.initRoot<wire::Envelope>().setModelInfo(served ? served->info() : model.info());
  responder.reply(message);
}

void Core::on_get_placement(const Responder& responder) {
  capnp::MallocMessageBuilder message;
  {
    std::lock_guard lock(mutex);
    if (table_stale) {
      throw ServiceError(wire::ErrorCode::NOT_READY,
                         "placement being adopted from the workers (they serve epochs up to " +
                             std::to_string(epoch_floor) + ", this coordinator had " + std::to_string(table.epoch) + ")");
    }
    if (table.epoch == 0) {
      throw ServiceError(wire::ErrorCode::NOT_READY,
                         "no placement yet: " + std::to_string(membership.placeable().size()) + " of " +
                             std::to_string(config.min_workers) + " workers registered");
    }
    placement_to_wire(table, message.initRoot<wire::Envelope>().initPlacement());
  }
  responder.reply(message);
}

void Core::on_status(const Responder& responder) {
  capnp::MallocMessageBuilder message;
  {
    std::lock_guard lock(mutex);
    auto reply = message.initRoot<wire::Envelope>().initStatusReply();
    reply.setEpoch(table.epoch);
    reply.setModelName(weights ? weights->name() : model.name());
    reply.setWeightVersion(table.epoch > 0 ? table.weight_version : 1);
    reply.setWeightSource(weights ? weights->source() : model.source());
    reply.setWeightUpdate(update_activity);
    reply.setDeterministic(config.deterministic);
    if (!table.layer_versions.empty() || layerwise_next) {
      const auto& newer = layerwise_next ? layerwise_next : layer_weights;
      reply.setLayersUpdated(static_cast<uint32_t>(table.layer_versions.size()));
      reply.setLayersTotal(static_cast<uint32_t>(model.spec().moe_layers.size()));
      reply.setLayersVersion(table.layer_versions.empty() ? table.weight_version + 1 : table.layer_versions.begin()->second);
      if (newer) reply.setLayersSource(newer->source());
      if (update_activity.empty() && newer) {
        reply.setWeightUpdate("layer-by-layer update to weight version " + std::to_string(table.layer_versions.begin()->second) +
                              " stopped after " + std::to_string(table.layer_versions.size()) + " of " +
                              std::to_string(model.spec().moe_layers.size()) + " MoE layers (" +
                              (layerwise_stopped.empty() ? std::string("stopped") : layerwise_stopped) +
                              "); the layers done serve it, the rest version " + std::to_string(table.weight_version) +
                              ": re-run update-weights with " + newer->source() + " to finish");
      }
    }
    const auto now = Clock::now();
    const auto& workers = membership.all();
    auto list = reply.initWorkers(static_cast<unsigned>(workers.size()));
    // Per layer: tokens of the last window on each worker, for max / mean.
    std::map<int32_t, std::map<uint32_t, uint64_t>> layer_loads;
    for (unsigned i = 0; i < workers.size(); ++i) {
      const WorkerRecord& worker = workers[i];
      auto status = list[i];
      auto info = status.initInfo();
      info.setId(worker.id);
      info.setAddress(worker.address);
      info.setState(to_wire(worker.state));
      status.setName(worker.name);
      status.setBackend(worker.backend);
      status.initCapacity().setMemoryBytes(worker.memory_bytes);
      status.getCapacity().setExpertSlots(worker.slots);
      const auto hosted = worker.live() ? table.experts_on(worker.id) : std::vector<ExpertKey>{};
      auto hosted_list = status.initHosted(static_cast<unsigned>(hosted.size()));
      for (unsigned h = 0; h < hosted.size(); ++h) {
        hosted_list[h].setLayer(hosted[h].layer);
        hosted_list[h].setExpert(hosted[h].expert);
      }
      auto load_list = status.initLoad(static_cast<unsigned>(worker.live() ? worker.load.size() : 0));
      for (unsigned l = 0; l < load_list.size(); ++l) {
        load_list[l].setLayer(worker.load[l].key.layer);
        load_list[l].setExpert(worker.load[l].key.expert);
        load_list[l].setTokens(worker.load[l].tokens);
        layer_loads[worker.load[l].key.layer][worker.id] += worker.load[l].tokens;
      }
      const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(worker.lease_deadline - now).count();
      status.setWeightVersion(worker.live() ? worker.weight_version : 0);
      status.setLeaseRemainingMs(worker.live() ? static_cast<uint32_t>(std::max<int64_t>(0, remaining)) : 0);
    }
    // Imbalance of a layer: max / mean over the live workers hosting it; layers without tokens are left out.
    std::vector<std::pair<int32_t, float>> balance;
    for (int32_t layer : model.spec().moe_layers) {
      std::set<uint32_t> hosts;
      for (const auto& [key, replicas] : table.assignments) {
        if (key.layer != layer) continue;
        for (const auto& replica : replicas) hosts.insert(replica.worker_id);
      }
      uint64_t total = 0, peak = 0;
      for (uint32_t host : hosts) {
        const uint64_t tokens = layer_loads[layer][host];
        total += tokens;
        peak = std::max(peak, tokens);
      }
      if (total == 0 || hosts.empty()) continue;
      balance.emplace_back(layer, static_cast<float>(peak) * static_cast<float>(hosts.size()) / static_cast<float>(total));
    }
    auto balance_list = reply.initBalance(static_cast<unsigned>(balance.size()));
    for (unsigned b = 0; b < balance.size(); ++b) {
      balance_list[b].setLayer(balance[b].first);
      balance_list[b].setImbalance(balance[b].second);
    }
  }
  responder.reply(message);
}

}  // namespace moe
