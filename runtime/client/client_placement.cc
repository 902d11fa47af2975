// ClientPlacement: decoding a placement and the share-proportional replica choice.
#include "runtime/client/client_placement.h"

#include "runtime/wire/wire_error.h"
#include "runtime/wire/text_limits.h"

namespace moe {

namespace {

// splitmix64: a well-mixed hash of the (layer, expert, token) triple.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double unit_hash(int32_t layer, int32_t expert, int32_t token) {
  uint64_t h = mix((uint64_t(uint32_t(layer)) << 32) | uint32_t(expert));
  h = mix(h ^ uint64_t(uint32_t(token)));
  return double(h >> 11) * 0x1.0p-53;  // [0, 1)
}

const std::vector<ClientReplica> kNoReplicas;

}  // namespace

ClientPlacement::ClientPlacement(wire::Placement::Reader placement)
    : epoch_(placement.getEpoch()), weight_version_(placement.getWeightVersion() != 0 ? placement.getWeightVersion() : 1) {
  for (auto lv : placement.getLayerVersions()) layer_versions_[lv.getLayer()] = lv.getVersion() != 0 ? lv.getVersion() : 1;
  for (auto w : placement.getWorkers()) {
    check_text_length("placement epoch " + std::to_string(epoch_) + ": worker " + std::to_string(w.getId()) +
                          "'s address",
                      w.getAddress(), kMaxAddressBytes);
    workers_[w.getId()] = ClientWorker{w.getId(), w.getAddress().cStr(), w.getState()};
  }
  for (auto a : placement.getAssignments()) {
    auto& list = replicas_[ExpertKey{a.getLayer(), a.getExpert()}];
    for (auto r : a.getReplicas()) {
      if (!workers_.count(r.getWorkerId())) {
        throw WireError("placement epoch " + std::to_string(epoch_) + ": expert (" + std::to_string(a.getLayer()) +
                        ", " + std::to_string(a.getExpert()) + ") has a replica on worker " +
                        std::to_string(r.getWorkerId()) + ", which the placement does not list");
      }
      list.push_back({r.getWorkerId(), r.getShare()});
    }
  }
}

const std::vector<ClientReplica>& ClientPlacement::replicas(int32_t layer, int32_t expert) const {
  auto it = replicas_.find(ExpertKey{layer, expert});
  return it == replicas_.end() ? kNoReplicas : it->second;
}

const ClientWorker& ClientPlacement::worker(uint32_t id) const {
  auto it = workers_.find(id);
  if (it == workers_.end())
    throw WireError("placement epoch " + std::to_string(epoch_) + " has no worker " + std::to_string(id));
  return it->second;
}

int64_t ClientPlacement::choose_worker(int32_t layer, int32_t expert, int32_t token,
                                       const std::set<uint32_t>& avoid) const {
  const auto& list = replicas(layer, expert);
  if (list.empty()) return -1;
  if (list.size() == 1) return list[0].worker;
  // Preference tiers: usable and not avoided; then usable; then anything.
  auto usable = [&](const ClientReplica& r) { return worker(r.worker).state != wire::WorkerState::DEAD; };
  for (int tier = 0; tier < 3; ++tier) {
    auto admitted = [&](const ClientReplica& r) {
      if (tier == 0) return usable(r) && !avoid.count(r.worker);
      if (tier == 1) return usable(r);
      return true;
    };
    double total = 0;
    size_t count = 0, last = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!admitted(list[i])) continue;
      total += list[i].share > 0 ? list[i].share : 0.0;
      ++count;
      last = i;
    }
    if (count == 0) continue;
    const double u = unit_hash(layer, expert, token);
    if (total <= 0) {  // no shares given: spread evenly
      size_t pick = static_cast<size_t>(u * count);
      for (size_t i = 0; i < list.size(); ++i) {
        if (admitted(list[i]) && pick-- == 0) return list[i].worker;
      }
    }
    double acc = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!admitted(list[i]) || list[i].share <= 0) continue;
      acc += list[i].share / total;
      if (u < acc) return list[i].worker;
    }
    return list[last].worker;
  }
  return list[0].worker;
}

}  // namespace moe
