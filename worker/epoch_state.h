// Which placement epochs this worker serves and which experts each of them needs here: the bookkeeping
// of the change protocol (prepare -> commit -> grace -> release, see /work/shared cluster conventions).
//
//   prepare(N, E)  experts E are being loaded for the future epoch N (kept until N is released past)
//   commit(N, E)   N becomes current; E are this worker's experts in N. The epochs before stay served
//                  (grace) until a release: requests planned on them are still accepted
//   release(N)     grace ends: epochs before N are no longer served; returns the loaded experts that no
//                  kept epoch (>= N) and no prepared epoch needs, i.e. what to unload. With drop_prepared
//                  (a change that failed: the coordinator abandons it) the prepared epochs are forgotten
//                  first, so what only they needed is unloaded too
//
// Experts are the backend's keys (worker/weight_version.h): the same expert in two weight versions is
// two keys.
//
// A request is accepted when its epoch >= oldest_served() (future epochs too: a client may see a commit
// before this worker does); whether its experts are loaded is checked elsewhere. Not thread-safe: the
// owner serialises access.
#pragma once

#include <cstdint>
#include <map>
#include <set>

#include "runtime/core/expert_types.h"

namespace moe {

class EpochState {
 public:
  uint64_t current() const { return current_; }
  uint64_t oldest_served() const { return oldest_; }
  bool in_grace() const { return oldest_ < current_; }

  // Throws ServiceError(staleEpoch) when `epoch` < oldest_served().
  void check_request_epoch(uint64_t epoch) const;

  // Throws ServiceError(staleEpoch) when `epoch` < current().
  void prepare(uint64_t epoch, const std::set<ExpertKey>& experts);
  // Throws ServiceError(staleEpoch) when `epoch` < current(). Committing the current epoch again
  // replaces its expert set.
  void commit(uint64_t epoch, const std::set<ExpertKey>& experts);
  // Throws ServiceError(badRequest) when `epoch` > current(). Returns the members of `loaded` to unload.
  std::set<ExpertKey> release(uint64_t epoch, const std::set<ExpertKey>& loaded, bool drop_prepared = false);

  // Every expert a served or prepared epoch needs.
  std::set<ExpertKey> needed() const;

 private:
  uint64_t current_ = 0;
  uint64_t oldest_ = 0;
  std::map<uint64_t, std::set<ExpertKey>> assigned_;  // epochs oldest_..current_ that were committed
  std::map<uint64_t, std::set<ExpertKey>> prepared_;  // epochs > current_
};

}  // namespace moe
