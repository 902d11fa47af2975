// JSON form of placement tables for the state file.
#include "runtime/placement/placement_json.h"

#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

namespace {

template <typename T>
T get_key(const nlohmann::json& object, const char* key, const char* where) {
  if (!object.is_object() || !object.contains(key)) {
    throw PlacementError(std::string("placement JSON: ") + where + " has no key '" + key + "'");
  }
  try {
    return object.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw PlacementError(std::string("placement JSON: ") + where + "." + key + " has the wrong type: " +
                         object.at(key).dump());
  }
}

const nlohmann::json& get_array(const nlohmann::json& object, const char* key, const char* where) {
  if (!object.is_object() || !object.contains(key) || !object.at(key).is_array()) {
    throw PlacementError(std::string("placement JSON: ") + where + "." + key + " is missing or not an array");
  }
  return object.at(key);
}

}  // namespace

nlohmann::json placement_to_json(const PlacementTable& table) {
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& worker : table.workers) {
    workers.push_back({{"id", worker.id}, {"address", worker.address}, {"state", worker_state_name(worker.state)}});
  }
  nlohmann::json assignments = nlohmann::json::array();
  for (const auto& [key, replicas] : table.assignments) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& replica : replicas) list.push_back({{"worker", replica.worker_id}, {"share", replica.share}});
    assignments.push_back({{"layer", key.layer}, {"expert", key.expert}, {"replicas", std::move(list)}});
  }
  nlohmann::json out = {{"epoch", table.epoch},
                        {"workers", std::move(workers)},
                        {"assignments", std::move(assignments)},
                        {"weight_version", table.weight_version}};
  if (!table.layer_versions.empty()) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& [layer, version] : table.layer_versions) layers.push_back({{"layer", layer}, {"version", version}});
    out["layer_versions"] = std::move(layers);
  }
  return out;
}

PlacementTable placement_from_json(const nlohmann::json& json) {
  PlacementTable table;
  table.epoch = get_key<uint64_t>(json, "epoch", "placement");
  if (json.contains("weight_version")) table.weight_version = get_key<uint64_t>(json, "weight_version", "placement");
  if (table.weight_version == 0) throw PlacementError("placement JSON has weight_version 0 (versions start at 1)");
  if (json.contains("layer_versions")) {
    for (const auto& lv : get_array(json, "layer_versions", "placement")) {
      const auto layer = get_key<int32_t>(lv, "layer", "layer_versions");
      const auto version = get_key<uint64_t>(lv, "version", "layer_versions");
      if (version == 0) throw PlacementError("placement JSON gives layer " + std::to_string(layer) + " weight version 0");
      table.layer_versions[layer] = version;
    }
  }
  for (const auto& worker : get_array(json, "workers", "placement")) {
    table.workers.push_back({get_key<uint32_t>(worker, "id", "worker"), get_key<std::string>(worker, "address", "worker"),
                             parse_worker_state(get_key<std::string>(worker, "state", "worker"))});
  }
  for (const auto& assignment : get_array(json, "assignments", "placement")) {
    ExpertKey key{get_key<int32_t>(assignment, "layer", "assignment"), get_key<int32_t>(assignment, "expert", "assignment")};
    std::vector<Replica> replicas;
    for (const auto& replica : get_array(assignment, "replicas", "assignment")) {
      replicas.push_back({get_key<uint32_t>(replica, "worker", "replica"), get_key<float>(replica, "share", "replica")});
    }
    if (!table.assignments.emplace(key, std::move(replicas)).second) {
      throw PlacementError("placement JSON lists expert " + expert_name(key) + " twice");
    }
  }
  check_placement(table);
  return table;
}

}  // namespace moe
