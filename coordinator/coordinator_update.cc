// moectl update-weights: a new checkpoint of the same family and shapes becomes the next weight version,
// rolled out through the change protocol with the placement unchanged. The io thread checks that no other
// update is running and queues the request; the control thread, between other changes (never while a
// release is due, so the old version's slot is free on every worker):
//   1. opens the checkpoint and checks it (family and every shape of the spec; its routers read) -
//      a mismatch is refused with one line naming it;
//   2. prepare: every worker of the placement loads all its experts in the new version beside the old
//      (refused by a worker whose memory cannot hold both). With --no-shared-storage one worker (the seed,
//      the lowest id) loads every expert of the model from the checkpoint first, and the others stream
//      theirs from it;
//   3. any prepare failing: a release of the current epoch makes every worker drop what it loaded, the
//      request gets the workers' reasons, the old version keeps serving;
//   4. commit of epoch N+1 with the new version (state file first, then the workers, then the ModelInfo
//      clients fetch), reply; after the grace period the release drops the old version everywhere.
// Layer by layer: when some worker cannot hold two versions of all its experts (by its declared memory
// and the experts' sizes, or its refusal of the whole prepare), the update goes one step at a time, each
// step as many MoE layers as every worker can hold beside the whole old version: prepare those layers'
// experts in the new version, commit an epoch whose placement lists them in Placement.layerVersions (the
// ModelInfo then has their new routers), grace, release (their old version is unloaded) - then the next
// step. The last step commits the new version whole and answers moectl. A step that fails stops the
// update there: the layers done keep the new version (status says so), and update-weights with the same
// checkpoint finishes it (another checkpoint is refused until then); so does it after a coordinator
// restart (the state file keeps the layers and the checkpoint).
// Clients never mix versions: a forward call routes with one ModelInfo's routers and names its version
// in every request; workers compute it with that version or refuse (runtime/client/cluster_client.h).
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

using Core = CoordinatorService::Core;

namespace {

void reply_update(const Responder& responder, uint64_t version, uint64_t epoch, uint64_t previous) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initUpdateWeightsReply();
  reply.setWeightVersion(version);
  reply.setEpoch(epoch);
  reply.setPreviousVersion(previous);
  responder.reply(message);
}

// The first field of the spec (as its HF-style config) that differs, as "name is A there, B here"; "" when
// none does.
std::string spec_mismatch(const ModelSpec& served, const ModelSpec& next) {
  if (served.family != next.family) {
    return std::string("family is ") + family_name(next.family) + " there, " + family_name(served.family) + " here";
  }
  const nlohmann::json a = model_spec_to_config(served);
  const nlohmann::json b = model_spec_to_config(next);
  for (const auto& [key, value] : a.items()) {
    if (!b.contains(key)) return key + " is missing there, " + value.dump() + " here";
    if (b.at(key) != value) return key + " is " + b.at(key).dump() + " there, " + value.dump() + " here";
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) return key + " is " + value.dump() + " there, missing here";
  }
  return "";
}

}  // namespace

std::shared_ptr<const ModelCatalog> Core::open_weights(const std::string& model_dir, uint64_t version) const {
  ModelRef ref;
  ref.model_dir = std::filesystem::absolute(model_dir).lexically_normal().string();
  std::shared_ptr<const ModelCatalog> next;
  try {
    next = std::make_shared<const ModelCatalog>(ref, config.deterministic, version);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read checkpoint " + ref.model_dir + ": " + e.what());
  }
  if (const std::string why = spec_mismatch(model.spec(), next->spec()); !why.empty()) {
    throw std::runtime_error("checkpoint " + ref.model_dir + " does not match the served model " + model.name() + ": " + why);
  }
  if (next->bytes_per_param() != model.bytes_per_param()) {
    throw std::runtime_error("checkpoint " + ref.model_dir + " stores expert weights in " +
                             std::to_string(next->bytes_per_param()) + "-byte elements, the served model in " +
                             std::to_string(model.bytes_per_param()) + ": the placement's memory would not hold");
  }
  return next;
}

void Core::on_update_weights(wire::UpdateWeights::Reader request, const Responder& responder) {
  const std::string dir = request.getModel();
  if (dir.empty()) throw ServiceError(wire::ErrorCode::BAD_REQUEST, "updateWeights names no checkpoint folder");
  if (dir.size() > 4096) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, "updateWeights.model is " + std::to_string(dir.size()) +
                                                         " bytes, at most 4096");
  }
  std::lock_guard lock(mutex);
  if (update_request) {
    throw ServiceError(wire::ErrorCode::NOT_READY,
                       "update-weights to " + update_request->model_dir + " is already running (" +
                           (update_activity.empty() ? std::string("queued") : update_activity) +
                           "): wait for it to finish",
                       table.epoch, false);
  }
  if (table.epoch == 0 || table_stale) {
    throw ServiceError(wire::ErrorCode::NOT_READY, "update-weights: no placement yet", table.epoch);
  }
  coordinator_log("update-weights to " + dir + " requested (serving weight version " +
                  std::to_string(table.weight_version) + ")");
  update_request = PendingUpdate{dir, responder};
  update_activity = "queued";
  wake = true;
  wake_cv.notify_all();
}

void Core::adopt_reported_weights() {
  uint64_t version = 0;
  std::string source;
  {
    std::lock_guard lock(mutex);
    if (stopping || !must_adopt_locked()) return;
    for (const auto& worker : membership.all()) {
      if (worker.live() && worker.confirmed && worker.weight_version > version && !worker.weight_source.empty()) {
        version = worker.weight_version;
        source = worker.weight_source;
      }
    }
    if (version <= table.weight_version) return;
  }
  std::shared_ptr<const ModelCatalog> adopted;
  try {
    const ModelRef ref = ModelRef::parse(source);
    if (ref.model_dir.empty()) throw std::runtime_error("'" + source + "' is not a checkpoint folder");
    adopted = open_weights(ref.model_dir, version);
  } catch (const std::exception& e) {
    coordinator_log("the workers serve weight version " + std::to_string(version) + " from " + source +
                    ", which this coordinator cannot serve: " + e.what());
    return;
  }
  std::lock_guard lock(mutex);
  if (version <= table.weight_version) return;
  coordinator_log("adopting weight version " + std::to_string(version) + " (" + source + ") the workers serve");
  weights = std::move(adopted);
  table.weight_version = version;
}

void Core::abort_prepared(uint64_t epoch) {
  std::vector<ControlTarget> targets;
  {
    std::lock_guard lock(mutex);
    for (const auto& worker : membership.all()) {
      if (worker.live()) targets.push_back({worker.id, worker.address, worker.control_key});
    }
  }
  broadcast(targets, "release of epoch " + std::to_string(epoch) + " (dropping an unfinished prepare)",
            [&](capnp::MessageBuilder& message) {
              auto release = message.initRoot<wire::Envelope>().initRelease();
              release.setEpoch(epoch);
              release.setDropPrepared(true);
            });
}

std::vector<uint32_t> Core::prepare_version(const PlacementTable& next, const VersionPrepare& update) {
  std::vector<uint32_t> failed;
  std::vector<std::pair<uint32_t, std::future<Frame>>> waiting;
  std::map<ExpertKey, std::vector<std::string>> holders;  // --no-shared-storage: the seed holds them all
  auto send = [&](const PlacedWorker& worker, const std::vector<ExpertKey>& load) {
    try {
      waiting.emplace_back(worker.id, send_prepare(worker.id, worker.address, next.epoch, load, holders, update.version,
                                                   update.source));
    } catch (const std::exception& e) {
      coordinator_log("prepare of epoch " + std::to_string(next.epoch) + " to worker " + std::to_string(worker.id) +
                      " not sent: " + e.what());
      (*update.errors)[worker.id] = std::string("not sent: ") + e.what();
      failed.push_back(worker.id);
    }
  };
  const PlacedWorker* seed = config.no_shared_storage ? next.find_worker(update.seed) : nullptr;
  if (seed) {
    send(*seed, update.seed_load);
    failed = await_prepares(waiting, next.epoch, update.errors);
    if (!failed.empty()) return failed;
    for (const ExpertKey& key : update.seed_load) holders[key] = {seed->address};
  }
  for (const auto& worker : next.workers) {
    if (seed && worker.id == seed->id) continue;
    auto load = next.experts_on(worker.id);
    if (!update.layers.empty()) std::erase_if(load, [&](ExpertKey key) { return !update.layers.count(key.layer); });
    if (!load.empty()) send(worker, load);
  }
  auto more = await_prepares(waiting, next.epoch, update.errors);
  failed.insert(failed.end(), more.begin(), more.end());
  return failed;
}

void Core::update_weights_step() {
  PlacementTable next;
  std::string dir;
  std::optional<Responder> responder;
  uint64_t previous = 0;
  VersionPrepare update;
  std::map<uint32_t, std::string> errors;
  update.errors = &errors;
  std::string short_memory;
  bool finish_layers = false;
  {
    std::lock_guard lock(mutex);
    if (stopping || !update_request) return;
    if (layerwise_next) {
      finish_layers = true;
    } else if (update_activity != "queued") {
      return;
    }
  }
  if (finish_layers) return layerwise_step();
  {
    std::lock_guard lock(mutex);
    // Between changes only: the old version's grace must be over (its slot on the workers is reused).
    if (release_due || table.epoch == 0 || table_stale || !dead_in_table.empty()) return;
    dir = update_request->model_dir;
    responder = update_request->responder;
    previous = table.weight_version;
    next = table;
    next.epoch = next_epoch_locked();
    // A layer-by-layer update that stopped part way: only its checkpoint may finish it.
    next.weight_version = table.layer_versions.empty() ? previous + 1 : table.layer_versions.begin()->second;
    update.version = next.weight_version;
    short_memory = table.layer_versions.empty() ? two_versions_do_not_fit_locked() : "some layers serve it already";
    update_activity = "checking " + dir;
    for (const auto& worker : next.workers) {
      const WorkerRecord* record = membership.find(worker.id);
      if (!record || !record->live() || next.experts_on(worker.id).empty()) continue;
      if (update.seed == 0) update.seed = worker.id;  // ascending ids: the lowest
    }
  }
  auto finish = [&](const std::string& refusal) {
    std::lock_guard lock(mutex);
    if (!refusal.empty()) {
      send_error(*responder,
                 ServiceError(wire::ErrorCode::BAD_REQUEST, "update-weights refused: " + refusal, table.epoch, false),
                 "updateWeights");
    }
    update_request.reset();
    update_activity.clear();
  };
  std::shared_ptr<const ModelCatalog> weights_next;
  try {
    weights_next = open_weights(dir, update.version);
  } catch (const std::exception& e) {
    coordinator_log("update-weights to " + dir + " refused: " + e.what());
    finish(std::string(e.what()) + "; weight version " + std::to_string(previous) + " keeps serving");
    return;
  }
  update.source = weights_next->source();
  auto go_layerwise = [&](const std::string& why) {
    coordinator_log("update-weights to version " + std::to_string(update.version) + " (" + update.source +
                    ") goes layer by layer: " + why);
    std::lock_guard lock(mutex);
    layerwise_next = weights_next;
    layerwise_previous = previous;
    layerwise_stopped.clear();
    update_activity = "layer by layer to weight version " + std::to_string(update.version) + ": starting";
  };
  {
    std::string refusal;
    {
      std::lock_guard lock(mutex);
      if (!table.layer_versions.empty() && (!layer_weights || layer_weights->source() != update.source)) {
        refusal = "a layer-by-layer update to weight version " + std::to_string(update.version) + " from " +
                  (layer_weights ? layer_weights->source() : std::string("?")) + " stopped after " +
                  std::to_string(table.layer_versions.size()) + " of " + std::to_string(model.spec().moe_layers.size()) +
                  " MoE layers: finish it first (update-weights with that checkpoint)";
      }
    }
    if (!refusal.empty()) {
      coordinator_log("update-weights to " + dir + " refused: " + refusal);
      finish(refusal);
      return;
    }
  }
  if (!short_memory.empty()) {
    go_layerwise(short_memory);
    return layerwise_step();
  }
  for (const auto& catalog_expert : model.experts().experts) update.seed_load.push_back(catalog_expert.key);
  {
    std::lock_guard lock(mutex);
    update_activity = "epoch " + std::to_string(next.epoch) + " is being prepared (weight version " +
                      std::to_string(update.version) + " from " + weights_next->source() + ")";
    control_activity = update_activity;
  }
  coordinator_log("epoch " + std::to_string(next.epoch) + ": update-weights to version " + std::to_string(update.version) +
                  " from " + update.source + (config.no_shared_storage ? " (seed worker " + std::to_string(update.seed) +
                                                                            " reads it, the others stream from it)"
                                                                      : "") +
                  "; preparing");
  const auto failed = prepare_version(next, update);
  if (!failed.empty()) {
    abort_prepared(table.epoch);  // the control thread is the only one that changes the table
    std::string why;
    bool memory_only = !errors.empty();
    for (const auto& [id, error] : errors) {
      why += (why.empty() ? "" : "; ") + ("worker " + std::to_string(id) + ": " + error);
      memory_only &= error.find("(--memory-bytes)") != std::string::npos;
    }
    if (memory_only && !config.no_layerwise) {  // the workers' memory cannot hold both versions whole
      {
        std::lock_guard lock(mutex);
        control_activity.clear();
      }
      go_layerwise("the workers refused both versions whole (" + why + ")");
      return;  // the next round, after the abort's release, starts it
    }
    coordinator_log("update-weights to " + dir + " failed: " + why + "; weight version " + std::to_string(previous) +
                    " keeps serving");
    {
      std::lock_guard lock(mutex);
      control_activity.clear();
    }
    finish("prepare of weight version " + std::to_string(update.version) + " failed on " + std::to_string(failed.size()) +
           " worker(s): " + why + "; weight version " + std::to_string(previous) + " keeps serving");
    return;
  }
  commit(next, weights_next);
  {
    std::lock_guard lock(mutex);
    control_activity.clear();
  }
  coordinator_log("weight version " + std::to_string(update.version) + " (" + update.source + ") serves from epoch " +
                  std::to_string(next.epoch) + "; version " + std::to_string(previous) + " is dropped at its release");
  reply_update(*responder, update.version, next.epoch, previous);
  finish("");
}

namespace {

// How many bytes a worker's backend spends per byte of the checkpoint's experts: its last heartbeat's
// memory over the checkpoint bytes of what it holds (a CPU backend may keep bf16 weights as f32: 2), at
// least 1. Before a heartbeat has reported its memory, the most a backend keeps (f32: 4 bytes over the
// checkpoint's bytes per parameter), so that an update decided right after a start errs toward layer by
// layer instead of a whole prepare the workers then refuse.
double memory_factor(const WorkerRecord& record, uint64_t held, size_t bytes_per_param) {
  if (held == 0) return 1.0;
  if (record.memory_used_bytes == 0) return std::max(1.0, 4.0 / static_cast<double>(std::max<size_t>(1, bytes_per_param)));
  if (record.memory_used_bytes <= held) return 1.0;
  return static_cast<double>(record.memory_used_bytes) / static_cast<double>(held);
}

}  // namespace

std::string Core::two_versions_do_not_fit_locked() {
  if (config.no_layerwise) return "";
  for (const auto& worker : table.workers) {
    const WorkerRecord* record = membership.find(worker.id);
    if (!record || record->memory_bytes == 0) continue;
    uint64_t held = 0;
    for (const ExpertKey& key : table.experts_on(worker.id)) held += model.experts().bytes_of(key);
    held = static_cast<uint64_t>(static_cast<double>(held) * memory_factor(*record, held, model.bytes_per_param()));
    if (2 * held > record->memory_bytes) {
      return "worker " + std::to_string(worker.id) + " holds " + std::to_string(held) + " bytes of experts, twice that is over its " +
             std::to_string(record->memory_bytes) + " bytes of memory (--memory-bytes)";
    }
  }
  return "";
}

void Core::mix_weights_locked() {
  if (table.layer_versions.empty() || !layer_weights) {
    mixed_weights.reset();
    if (table.layer_versions.empty()) layer_weights.reset();
    return;
  }
  mixed_weights = std::make_shared<const ModelCatalog>(weights ? *weights : model, *layer_weights, table.layer_versions);
}

void Core::layerwise_step() {
  PlacementTable next;
  VersionPrepare update;
  std::map<uint32_t, std::string> errors;
  update.errors = &errors;
  std::shared_ptr<const ModelCatalog> target;
  uint64_t previous = 0;
  size_t total = 0, done_before = 0;
  std::string step_text;
  bool last = false;
  {
    std::lock_guard lock(mutex);
    if (stopping || !update_request || !layerwise_next) return;
    // Each step waits for the one before to be released: its layers' old version is gone from the workers
    // before the next layers' new version loads.
    if (release_due || table.epoch == 0 || table_stale || !dead_in_table.empty()) return;
    target = layerwise_next;
    previous = layerwise_previous;
    update.version = table.layer_versions.empty() ? table.weight_version + 1 : table.layer_versions.begin()->second;
    update.source = target->source();
    std::vector<int32_t> remaining;
    for (int32_t layer : model.spec().moe_layers) {
      if (table.version_of(layer) != update.version) remaining.push_back(layer);
    }
    total = model.spec().moe_layers.size();
    done_before = total - remaining.size();
    // As many layers as every worker holds beside all its experts (at least one: a worker that cannot
    // hold even that refuses it).
    std::map<uint32_t, uint64_t> free_bytes;
    std::map<uint32_t, double> factor;
    for (const auto& worker : table.workers) {
      const WorkerRecord* record = membership.find(worker.id);
      if (!record || record->memory_bytes == 0) continue;
      uint64_t held = 0;
      for (const ExpertKey& key : table.experts_on(worker.id)) held += model.experts().bytes_of(key);
      factor[worker.id] = memory_factor(*record, held, model.bytes_per_param());
      held = static_cast<uint64_t>(static_cast<double>(held) * factor[worker.id]);
      free_bytes[worker.id] = record->memory_bytes > held ? record->memory_bytes - held : 0;
    }
    for (int32_t layer : remaining) {
      std::map<uint32_t, uint64_t> needed;
      for (const auto& [key, replicas] : table.assignments) {
        if (key.layer != layer) continue;
        for (const Replica& replica : replicas) {
          const double f = factor.count(replica.worker_id) ? factor[replica.worker_id] : 1.0;
          needed[replica.worker_id] += static_cast<uint64_t>(static_cast<double>(model.experts().bytes_of(key)) * f);
        }
      }
      bool fits = true;
      for (const auto& [id, bytes] : needed) fits &= !free_bytes.count(id) || bytes <= free_bytes[id];
      if (!fits && !update.layers.empty()) break;
      for (const auto& [id, bytes] : needed) {
        if (free_bytes.count(id)) free_bytes[id] -= std::min(free_bytes[id], bytes);
      }
      update.layers.insert(layer);
    }
    next = table;
    next.epoch = next_epoch_locked();
    for (int32_t layer : update.layers) next.layer_versions[layer] = update.version;
    last = next.layer_versions.size() == total;
    if (last) {
      next.weight_version = update.version;
      next.layer_versions.clear();
    }
    for (int32_t layer : update.layers) step_text += (step_text.empty() ? "" : ", ") + std::to_string(layer);
    step_text = "MoE layer(s) " + step_text;
    for (const auto& worker : next.workers) {
      const WorkerRecord* record = membership.find(worker.id);
      if (!record || !record->live() || next.experts_on(worker.id).empty()) continue;
      if (update.seed == 0) update.seed = worker.id;
    }
    update_activity = "layer by layer to weight version " + std::to_string(update.version) + " (" + update.source +
                      "): " + std::to_string(done_before) + "/" + std::to_string(total) + " MoE layers done, preparing " +
                      step_text + " in epoch " + std::to_string(next.epoch);
    control_activity = update_activity;
  }
  for (const auto& catalog_expert : model.experts().experts) {
    if (update.layers.count(catalog_expert.key.layer)) update.seed_load.push_back(catalog_expert.key);
  }
  coordinator_log("epoch " + std::to_string(next.epoch) + ": update-weights to version " + std::to_string(update.version) +
                  " layer by layer, " + std::to_string(done_before) + "/" + std::to_string(total) + " done; preparing " +
                  step_text);
  const auto failed = prepare_version(next, update);
  if (!failed.empty()) {
    abort_prepared(table.epoch);
    std::string why;
    for (const auto& [id, error] : errors) why += (why.empty() ? "" : "; ") + ("worker " + std::to_string(id) + ": " + error);
    const std::string stopped = "layer-by-layer update to weight version " + std::to_string(update.version) + " stopped after " +
                                std::to_string(done_before) + " of " + std::to_string(total) + " MoE layers: prepare of " +
                                step_text + " failed on " + std::to_string(failed.size()) + " worker(s): " + why +
                                (done_before > 0 ? "; the layers done keep serving version " + std::to_string(update.version) +
                                                       ", the others version " + std::to_string(previous)
                                                 : "; weight version " + std::to_string(previous) + " keeps serving") +
                                "; update-weights with " + update.source + " again finishes it";
    coordinator_log(stopped);
    std::lock_guard lock(mutex);
    control_activity.clear();
    send_error(update_request->responder,
               ServiceError(wire::ErrorCode::BAD_REQUEST, "update-weights: " + stopped, table.epoch, false), "updateWeights");
    layerwise_stopped = "prepare of " + step_text + " failed";
    layerwise_next.reset();
    update_request.reset();
    update_activity.clear();
    return;
  }
  commit(next, last ? target : nullptr, last ? nullptr : target);
  std::lock_guard lock(mutex);
  control_activity.clear();
  if (!last) {
    update_activity = "layer by layer to weight version " + std::to_string(update.version) + " (" + update.source + "): " +
                      std::to_string(done_before + update.layers.size()) + "/" + std::to_string(total) +
                      " MoE layers done";
    coordinator_log("epoch " + std::to_string(next.epoch) + ": " + step_text + " serve weight version " +
                    std::to_string(update.version) + "; their old version is dropped at the release");
    return;
  }
  coordinator_log("weight version " + std::to_string(update.version) + " (" + update.source + ") serves every layer from epoch " +
                  std::to_string(next.epoch) + " (rolled out layer by layer); version " + std::to_string(previous) +
                  " is dropped at its release");
  reply_update(update_request->responder, update.version, next.epoch, previous);
  layerwise_next.reset();
  layerwise_stopped.clear();
  update_request.reset();
  update_activity.clear();
}

}  // namespace moe
