// run_chaos: cluster, load, faults, invariants (see chaos_run.h).
#include "tests/chaos/chaos_run.h"

#include <iomanip>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/bench_checked_load.h"
#include "tests/chaos/chaos_cluster.h"
#include "tests/chaos/hostile_peer.h"

namespace moe::chaos {

namespace {

using namespace std::chrono_literals;
using Clock = LoadClock;

constexpr auto kCallDeadline = 3000ms;
constexpr double kDeadlineSlack = 0.5;     // seconds a call may run past its deadline
constexpr double kFullServiceWithin = 5.0;  // seconds after the last fault is healed
constexpr auto kTailMax = 6500ms;           // load after the last heal, at most
constexpr auto kTailQuiet = 1500ms;         // ... stopping early once this long has passed without a failure

struct Step {
  Fault fault;
  Clock::time_point applied, healed;
  std::string note;
};

double since(Clock::time_point t0, Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); }

std::string fmt(double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << seconds << " s";
  return out.str();
}

void cut(NetTopology& net, const std::string& a, const std::string& b, Direction d, bool heal) {
  auto apply = [&](const std::string& from, const std::string& to) {
    heal ? net.heal_one_way(from, to) : net.cut_one_way(from, to);
  };
  if (d != Direction::kInbound) apply(a, b);
  if (d != Direction::kOutbound) apply(b, a);
}

// Applies one fault, holds it, heals it. Returns a note for the timeline. Throws when the harness fails.
std::string apply(ChaosCluster& cluster, const ChaosPlan& plan, const Fault& f, Step& step) {
  const auto hold = std::chrono::milliseconds(f.hold_ms);
  const auto t = static_cast<size_t>(std::max(0, f.target));
  step.applied = Clock::now();
  std::string note;
  switch (f.kind) {
    case FaultKind::kKillWorker:
      cluster.kill_worker(t);
      if (f.restart) {
        std::this_thread::sleep_for(hold);
        cluster.restart_worker(t);
        note = "restarted at " + cluster.worker_address(t);
      }
      break;
    case FaultKind::kStopWorker:
      cluster.stop_worker(t);
      std::this_thread::sleep_for(hold);
      cluster.continue_worker(t);
      break;
    case FaultKind::kKillCoordinator:
      cluster.kill_coordinator();
      std::this_thread::sleep_for(hold);
      cluster.start_coordinator();
      break;
    case FaultKind::kJoinWorker: {
      const size_t i = cluster.start_worker();
      note = "w" + std::to_string(i) + " at " + cluster.worker_address(i);
      break;
    }
    case FaultKind::kDrainWorker:
      note = "moectl drain: " + cluster.drain_worker(t, 20s);
      break;
    case FaultKind::kHostilePeer: {
      std::string why;
      const auto status = cluster.status(&why);
      std::vector<uint32_t> ids;
      if (status)
        for (const auto& w : status->workers) ids.push_back(w.id);
      for (const std::string& line : send_hostile_frames(cluster.worker_address(t), cluster.coordinator_address(),
                                                         status ? status->epoch : 1, ids, plan.token))
        note += "\n      " + line;
      break;
    }
    case FaultKind::kCutClientWorker:
    case FaultKind::kCutWorkerCoordinator:
    case FaultKind::kCutClientCoordinator: {
      const std::string a = f.kind == FaultKind::kCutWorkerCoordinator ? cluster.worker_node(t) : "client";
      const std::string b = f.kind == FaultKind::kCutClientWorker ? cluster.worker_node(t) : "coord";
      cut(*cluster.net(), a, b, f.direction, false);
      std::this_thread::sleep_for(hold);
      cut(*cluster.net(), a, b, f.direction, true);
      break;
    }
    case FaultKind::kNetem: {
      const std::string node = f.target < 0 ? "client" : cluster.worker_node(t);
      cluster.net()->set_netem(node, f.delay_ms, f.jitter_ms, f.loss_percent);
      std::this_thread::sleep_for(hold);
      cluster.net()->clear_netem(node);
      break;
    }
  }
  step.healed = Clock::now();
  return note;
}

}  // namespace

ChaosResult run_chaos(const ChaosPlan& plan, std::ostream& progress) {
  ChaosResult result;
  std::ostringstream report;
  report << describe(plan);
  progress << "chaos: " << describe(plan) << std::flush;
  if (plan.netns) {
    if (auto why = NetTopology::unavailable_reason()) {
      result.skipped = true;
      result.skip_reason = "schedule " + plan.schedule + " needs network namespaces: " + *why;
      return result;
    }
  }
  if (plan.netem) {
    if (auto why = NetTopology::netem_unavailable_reason()) {
      result.skipped = true;
      result.skip_reason = "schedule " + plan.schedule + " needs tc netem: " + *why;
      return result;
    }
  }

  ChaosClusterOptions o;
  o.name = plan.schedule + "-" + std::to_string(plan.seed);
  o.workers = plan.workers;
  o.replicas = plan.replicas;
  o.slots = plan.slots;
  o.state_file = plan.state_file;
  o.netns = plan.netns;
  if (plan.token) o.cluster_token = "chaos-token-" + std::to_string(plan.seed);

  auto fail = [&](const std::string& what) { result.violations.push_back(what); };
  std::unique_ptr<ChaosCluster> cluster;
  std::optional<NetTopology::Enter> in_client_namespace;
  std::unique_ptr<CheckedLoad> load;
  std::vector<Step> steps;
  Clock::time_point t0 = Clock::now(), last_heal, end;
  try {
    cluster = std::make_unique<ChaosCluster>(o);
    if (cluster->net()) in_client_namespace.emplace(*cluster->net(), "client");
    cluster->wait_ready(20s);
    CheckedLoadOptions lo;
    lo.coordinator = cluster->coordinator_address();
    lo.threads = 2;
    lo.deadline = kCallDeadline;
    lo.cluster_token = o.cluster_token;
    lo.max_run = 120s;
    load = std::make_unique<CheckedLoad>(lo);
    load->start();
    t0 = Clock::now();
    while (load->right_calls() < 20 && Clock::now() - t0 < 10s) std::this_thread::sleep_for(20ms);
    if (load->right_calls() < 20) throw std::runtime_error("the load did not get going: " +
                                                           std::to_string(load->right_calls()) + " right calls in 10 s");
    for (const Fault& f : plan.faults) {
      std::this_thread::sleep_for(std::chrono::milliseconds(f.gap_ms));
      Step step;
      step.fault = f;
      step.note = apply(*cluster, plan, f, step);
      progress << "  +" << fmt(since(t0, step.applied)) << " " << describe(f)
               << (step.note.empty() ? "" : " (" + step.note + ")") << "\n" << std::flush;
      steps.push_back(step);
    }
    last_heal = steps.empty() ? Clock::now() : steps.back().healed;
    while (Clock::now() - last_heal < kTailMax) {
      std::this_thread::sleep_for(100ms);
      const auto now = Clock::now();
      const LoadFigures tail = load_figures(load->calls(), last_heal, now, last_heal);
      const auto quiet_since = last_heal + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(tail.time_to_full_service));
      if (tail.recovered && now - quiet_since >= kTailQuiet) break;
    }
    end = Clock::now();
    load->stop();
  } catch (const std::exception& e) {
    fail(std::string("the run could not go on: ") + e.what());
    if (load) load->stop();
    end = Clock::now();
    if (last_heal == Clock::time_point{}) last_heal = end;
  }

  if (load) {
    const std::vector<LoadCall> calls = load->calls();
    // Invariants over every call.
    size_t wrong = 0, errors = 0, late = 0;
    std::string first_wrong, first_error, first_late;
    for (const LoadCall& c : calls) {
      const std::string where = "call at +" + fmt(since(t0, c.start)) + " (thread " + std::to_string(c.thread) +
                                ", layer " + std::to_string(c.layer) + ", " + std::to_string(c.tokens) + " tokens)";
      if (c.outcome == LoadCall::Outcome::kWrong && wrong++ == 0) first_wrong = where + ": " + c.detail;
      if (c.outcome == LoadCall::Outcome::kError && errors++ == 0) first_error = where + ": " + c.detail;
      if (c.seconds() > std::chrono::duration<double>(kCallDeadline).count() + kDeadlineSlack && late++ == 0)
        first_late = where + " took " + fmt(c.seconds());
    }
    if (wrong) fail(std::to_string(wrong) + " wrong answers; first: " + first_wrong);
    if (errors) fail(std::to_string(errors) + " calls failed with an error other than a deadline or unavailable-experts error; first: " + first_error);
    if (late) fail(std::to_string(late) + " calls outlived their 3 s deadline; first: " + first_late);

    report << "timeline (load from +0.00 s, " << calls.size() << " calls):\n";
    for (size_t i = 0; i < steps.size(); ++i) {
      const auto window_end = i + 1 < steps.size() ? steps[i + 1].applied : end;
      const LoadFigures f = load_figures(calls, steps[i].applied, window_end, steps[i].healed);
      report << "  +" << fmt(since(t0, steps[i].applied)) << " .. +" << fmt(since(t0, steps[i].healed)) << " "
             << describe(steps[i].fault) << ": " << f.calls << " calls, " << f.failed << " failed, longest interruption "
             << fmt(f.longest_interruption) << ", full service " << fmt(f.time_to_full_service) << " after the heal"
             << (steps[i].note.empty() ? "" : "; " + steps[i].note) << "\n";
    }
    {
      const LoadFigures tail = load_figures(calls, last_heal, end, last_heal);
      report << "after the last heal: " << tail.calls << " calls, " << tail.failed << " failed, full service after "
             << fmt(tail.time_to_full_service) << (tail.recovered ? "" : " (NOT recovered)") << "\n";
      if (tail.time_to_full_service > kFullServiceWithin || !tail.recovered)
        fail("no full service within 5 s of the last fault's heal: the last failed call ended " +
             fmt(tail.time_to_full_service) + " after it" + (tail.recovered ? "" : ", and too few right calls followed"));
    }
    if (cluster) {
      const std::string fresh = load->check_with_new_client(5s);
      if (!fresh.empty()) fail("the run ends in an outage: " + fresh);
    }
  }
  if (cluster)
    for (const std::string& crash : cluster->crashed()) fail("crash: " + crash);
  if (!result.violations.empty() && cluster) {
    report << "logs kept in " << cluster->dir() << "\n" << cluster->logs() << "\n";
    cluster->keep_logs();
  }
  in_client_namespace.reset();
  load.reset();
  cluster.reset();  // kills the daemons, deletes the namespaces
  result.report = report.str();
  return result;
}

}  // namespace moe::chaos
