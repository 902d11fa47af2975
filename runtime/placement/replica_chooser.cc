// choose_replica: share-proportional, hash-driven replica choice with fallbacks past dead or avoided
// workers.
#include "runtime/placement/replica_chooser.h"

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

}  // namespace

int64_t choose_replica(const PlacementTable& table, ExpertKey key, int32_t token, const std::set<uint32_t>& avoid) {
  auto found = table.assignments.find(key);
  if (found == table.assignments.end() || found->second.empty()) return -1;
  const auto& list = found->second;
  if (list.size() == 1) return list[0].worker_id;
  auto usable = [&](const Replica& r) {
    const PlacedWorker* worker = table.find_worker(r.worker_id);
    return worker != nullptr && worker->state != WorkerState::Dead;
  };
  // Preference tiers: usable and not avoided; then usable; then anything.
  for (int tier = 0; tier < 3; ++tier) {
    auto admitted = [&](const Replica& r) {
      if (tier == 0) return usable(r) && !avoid.count(r.worker_id);
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
    const double u = unit_hash(key.layer, key.expert, token);
    if (total <= 0) {  // no shares given: spread evenly
      size_t pick = static_cast<size_t>(u * count);
      for (size_t i = 0; i < list.size(); ++i) {
        if (admitted(list[i]) && pick-- == 0) return list[i].worker_id;
      }
    }
    double acc = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!admitted(list[i]) || list[i].share <= 0) continue;
      acc += list[i].share / total;
      if (u < acc) return list[i].worker_id;
    }
    return list[last].worker_id;
  }
  return list[0].worker_id;
}

}  // namespace moe
