// A chaos run's plan, drawn from (schedule name, seed) with std::mt19937_64 so that any run can be
// repeated: the cluster's shape (replicas 1 or 2, tight or loose --slots, state file or not, a cluster
// token or not) and a sequence of faults, each after a gap and held for a while before it is healed.
// Schedules:
//   process  loopback; kill -9 / restart of workers and of the coordinator, SIGSTOP/SIGCONT, a worker
//            joining, a worker leaving (drain), a hostile peer sending valid-looking control frames.
//   network  a namespace per node; links cut both ways or one way (client<->worker,
//            worker<->coordinator, client<->coordinator), mixed with kill -9 and SIGSTOP.
//   netem    a namespace per node; delay and loss with tc netem on a worker or the client, mixed with
//            cuts and kill -9.
// describe() prints the plan the same way every time; it goes into every failure message.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe::chaos {

enum class FaultKind {
  kKillWorker,        // kill -9; restart (a new process on its node) when `restart`
  kStopWorker,        // SIGSTOP, SIGCONT after hold
  kKillCoordinator,   // kill -9, restart after hold
  kJoinWorker,        // a new worker on a spare node
  kDrainWorker,       // moectl drain; the worker leaves
  kHostilePeer,       // valid-looking commit/release/prepare/heartbeat/register frames from a stranger
  kCutClientWorker,   // links between the client and a worker
  kCutWorkerCoordinator,
  kCutClientCoordinator,
  kNetem,             // delay + loss on what `target` sends (-1: the client)
};

enum class Direction { kBoth, kOutbound, kInbound };  // outbound: packets from the first node named to the second

struct Fault {
  FaultKind kind = FaultKind::kKillWorker;
  int target = 0;        // worker index (kNetem: -1 = the client)
  Direction direction = Direction::kBoth;
  bool restart = false;  // kKillWorker
  int gap_ms = 1000;     // before the fault
  int hold_ms = 0;       // until it is healed
  int delay_ms = 0, jitter_ms = 0;
  double loss_percent = 0;
};

struct ChaosPlan {
  std::string schedule;
  uint64_t seed = 0;
  int workers = 3;
  int replicas = 1;
  int slots = 0;          // 0: loose (the workers' default)
  bool state_file = false;
  bool token = false;
  bool netns = false;
  bool netem = false;
  std::vector<Fault> faults;
};

// Throws std::invalid_argument for an unknown schedule name.
ChaosPlan make_plan(const std::string& schedule, uint64_t seed);
std::vector<std::string> schedule_names();

std::string fault_kind_name(FaultKind kind);
std::string describe(const Fault& fault);
std::string describe(const ChaosPlan& plan);

}  // namespace moe::chaos
