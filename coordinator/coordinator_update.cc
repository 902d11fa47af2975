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
// Clients never mix versions: a forward call routes with one ModelInfo's routers and names its version
// in every request; workers compute it with that version or refuse (runtime/client/cluster_client.h).
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
    const auto load = next.experts_on(worker.id);
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
  {
    std::lock_guard lock(mutex);
    if (stopping || !update_request || update_activity != "queued") return;
    // Between changes only: the old version's grace must be over (its slot on the workers is reused).
    if (release_due || table.epoch == 0 || table_stale || !dead_in_table.empty()) return;
    dir = update_request->model_dir;
    responder = update_request->responder;
    previous = table.weight_version;
    next = table;
    next.epoch = next_epoch_locked();
    next.weight_version = previous + 1;
    update.version = next.weight_version;
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
    for (const auto& [id, error] : errors) why += (why.empty() ? "" : "; ") + ("worker " + std::to_string(id) + ": " + error);
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

}  // namespace moe
