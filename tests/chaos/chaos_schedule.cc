// Drawing and printing chaos plans (see chaos_schedule.h).
#include "tests/chaos/chaos_schedule.h"

#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

namespace moe::chaos {

namespace {

constexpr int kTinyExperts = 16;  // synthetic "tiny": MoE layers 0 and 1, 8 routed experts each
constexpr int kFaults = 4;

int uniform(std::mt19937_64& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
bool coin(std::mt19937_64& rng, double p = 0.5) { return std::bernoulli_distribution(p)(rng); }

Direction pick_direction(std::mt19937_64& rng) {
  switch (uniform(rng, 0, 2)) {
    case 0: return Direction::kBoth;
    case 1: return Direction::kOutbound;
    default: return Direction::kInbound;
  }
}

}  // namespace

std::vector<std::string> schedule_names() { return {"process", "network", "netem"}; }

ChaosPlan make_plan(const std::string& schedule, uint64_t seed) {
  ChaosPlan plan;
  plan.schedule = schedule;
  plan.seed = seed;
  std::vector<FaultKind> kinds;
  if (schedule == "process") {
    kinds = {FaultKind::kKillWorker,  FaultKind::kKillWorker,  FaultKind::kStopWorker, FaultKind::kKillCoordinator,
             FaultKind::kJoinWorker,  FaultKind::kDrainWorker, FaultKind::kHostilePeer};
  } else if (schedule == "network") {
    plan.netns = true;
    kinds = {FaultKind::kCutClientWorker, FaultKind::kCutClientWorker, FaultKind::kCutWorkerCoordinator,
             FaultKind::kCutWorkerCoordinator, FaultKind::kCutClientCoordinator, FaultKind::kKillWorker,
             FaultKind::kStopWorker, FaultKind::kKillCoordinator};
  } else if (schedule == "netem") {
    plan.netns = true;
    plan.netem = true;
    kinds = {FaultKind::kNetem, FaultKind::kNetem, FaultKind::kCutClientWorker, FaultKind::kKillWorker};
  } else {
    throw std::invalid_argument("unknown chaos schedule '" + schedule + "' (process, network, netem)");
  }
  std::mt19937_64 rng(seed);
  plan.replicas = uniform(rng, 1, 2);
  // Tight: after losing one worker, the rest hold every copy with no slot to spare.
  if (coin(rng)) plan.slots = (kTinyExperts * plan.replicas + plan.workers - 2) / (plan.workers - 1);
  plan.state_file = coin(rng);
  plan.token = coin(rng);

  // Keep the cluster able to serve once every fault is healed: a worker leaves for good (kill without
  // restart, drain) only while more than workers - 1 are live; one spare node takes one join.
  std::set<int> live;
  for (int i = 0; i < plan.workers; ++i) live.insert(i);
  int next_worker = plan.workers;
  int spare = 1;
  auto pick_live = [&] {
    auto it = live.begin();
    std::advance(it, uniform(rng, 0, static_cast<int>(live.size()) - 1));
    return *it;
  };
  for (int n = 0; n < kFaults; ++n) {
    Fault f;
    for (int tries = 0; tries < 20; ++tries) {
      f = Fault{};
      f.kind = kinds[static_cast<size_t>(uniform(rng, 0, static_cast<int>(kinds.size()) - 1))];
      f.gap_ms = uniform(rng, 600, 1400);
      bool ok = true;
      switch (f.kind) {
        case FaultKind::kKillWorker:
          f.target = pick_live();
          f.restart = live.size() <= static_cast<size_t>(plan.workers - 1) || coin(rng);
          f.hold_ms = f.restart ? uniform(rng, 200, 1500) : 0;
          if (!f.restart) live.erase(f.target);
          break;
        case FaultKind::kStopWorker:
          f.target = pick_live();
          f.hold_ms = uniform(rng, 300, 2000);
          break;
        case FaultKind::kKillCoordinator:
          f.hold_ms = uniform(rng, 200, 1500);
          break;
        case FaultKind::kJoinWorker:
          ok = spare > 0;
          if (ok) {
            --spare;
            f.target = next_worker++;
            live.insert(f.target);
          }
          break;
        case FaultKind::kDrainWorker:
          ok = live.size() > static_cast<size_t>(plan.workers - 1);
          if (ok) {
            f.target = pick_live();
            live.erase(f.target);
          }
          break;
        case FaultKind::kHostilePeer:
          f.target = pick_live();
          break;
        case FaultKind::kCutClientWorker:
        case FaultKind::kCutWorkerCoordinator:
          f.target = pick_live();
          f.direction = pick_direction(rng);
          f.hold_ms = uniform(rng, 300, 2000);
          break;
        case FaultKind::kCutClientCoordinator:
          f.direction = pick_direction(rng);
          f.hold_ms = uniform(rng, 300, 2000);
          break;
        case FaultKind::kNetem:
          f.target = coin(rng, 0.3) ? -1 : pick_live();
          f.delay_ms = uniform(rng, 5, 80);
          f.jitter_ms = uniform(rng, 0, f.delay_ms / 2);
          f.loss_percent = uniform(rng, 0, 10);
          f.hold_ms = uniform(rng, 1000, 2500);
          break;
      }
      if (ok) break;
    }
    plan.faults.push_back(f);
  }
  return plan;
}

std::string fault_kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKillWorker: return "kill-worker";
    case FaultKind::kStopWorker: return "stop-worker";
    case FaultKind::kKillCoordinator: return "kill-coordinator";
    case FaultKind::kJoinWorker: return "join-worker";
    case FaultKind::kDrainWorker: return "drain-worker";
    case FaultKind::kHostilePeer: return "hostile-peer";
    case FaultKind::kCutClientWorker: return "cut-client-worker";
    case FaultKind::kCutWorkerCoordinator: return "cut-worker-coordinator";
    case FaultKind::kCutClientCoordinator: return "cut-client-coordinator";
    case FaultKind::kNetem: return "netem";
  }
  return "unknown";
}

std::string describe(const Fault& f) {
  std::ostringstream out;
  out << "after " << f.gap_ms << " ms " << fault_kind_name(f.kind);
  const char* dir = f.direction == Direction::kBoth ? "both ways" : f.direction == Direction::kOutbound ? "one way (out)" : "one way (in)";
  switch (f.kind) {
    case FaultKind::kKillWorker:
      out << " w" << f.target << (f.restart ? ", restarted after " + std::to_string(f.hold_ms) + " ms" : ", not restarted");
      break;
    case FaultKind::kStopWorker: out << " w" << f.target << " for " << f.hold_ms << " ms"; break;
    case FaultKind::kKillCoordinator: out << ", restarted after " << f.hold_ms << " ms"; break;
    case FaultKind::kJoinWorker:
    case FaultKind::kDrainWorker:
    case FaultKind::kHostilePeer: out << " w" << f.target; break;
    case FaultKind::kCutClientWorker:
      out << " client" << (f.direction == Direction::kInbound ? "<-" : f.direction == Direction::kOutbound ? "->" : "<->")
          << "w" << f.target << " " << dir << " for " << f.hold_ms << " ms";
      break;
    case FaultKind::kCutWorkerCoordinator:
      out << " w" << f.target << (f.direction == Direction::kInbound ? "<-" : f.direction == Direction::kOutbound ? "->" : "<->")
          << "coord " << dir << " for " << f.hold_ms << " ms";
      break;
    case FaultKind::kCutClientCoordinator:
      out << " client" << (f.direction == Direction::kInbound ? "<-" : f.direction == Direction::kOutbound ? "->" : "<->")
          << "coord " << dir << " for " << f.hold_ms << " ms";
      break;
    case FaultKind::kNetem:
      out << " on " << (f.target < 0 ? std::string("client") : "w" + std::to_string(f.target)) << ": delay "
          << f.delay_ms << "±" << f.jitter_ms << " ms, loss " << f.loss_percent << "% for " << f.hold_ms << " ms";
      break;
  }
  return out.str();
}

std::string describe(const ChaosPlan& plan) {
  std::ostringstream out;
  out << "schedule " << plan.schedule << ", seed " << plan.seed << ": " << plan.workers << " workers, replicas "
      << plan.replicas << ", slots " << (plan.slots ? std::to_string(plan.slots) + " (tight)" : std::string("loose"))
      << ", state file " << (plan.state_file ? "yes" : "no") << ", cluster token " << (plan.token ? "yes" : "no")
      << (plan.netns ? ", a network namespace per node" : ", loopback") << "\n";
  for (size_t i = 0; i < plan.faults.size(); ++i) out << "  " << i + 1 << ". " << describe(plan.faults[i]) << "\n";
  out << "  rerun: test_chaos --schedule=" << plan.schedule << " --seed=" << plan.seed << "\n";
  return out.str();
}

}  // namespace moe::chaos
