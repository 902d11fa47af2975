// bench faults: one fresh loopback cluster per fault type, checked load, the fault, the figures (see
// bench_faults.h).
#include "cli/bench_faults.h"

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "cli/bench_checked_load.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/client/local_cluster.h"

namespace moe {

namespace {

using namespace std::chrono_literals;

struct FaultType {
  std::string name;
  int replicas = 1;
  bool state_file = false;
  // Applies the fault to the cluster (may block while it lasts, e.g. SIGSTOP then SIGCONT).
  std::function<void(LocalCluster&, const BenchFaultsOptions&)> inject;
};

struct Row {
  std::string name;
  LoadFigures figures;
  std::string note;
};

// The id the coordinator gave the worker LocalCluster named "worker<index>".
uint32_t worker_id(const std::string& coordinator, size_t index) {
  Frame reply = query_status(coordinator, 2000ms, nullptr, LocalCluster::inherited_cluster_token());
  const std::string name = "worker" + std::to_string(index);
  for (auto w : reply.envelope().getStatusReply().getWorkers())
    if (name == w.getName().cStr()) return w.getInfo().getId();
  throw std::runtime_error("bench faults: no worker named " + name + " in the status of " + coordinator);
}

std::vector<FaultType> fault_types() {
  auto kill_worker = [](LocalCluster& c, const BenchFaultsOptions&) { c.worker(1).kill_now(); };
  auto restart_coordinator = [](LocalCluster& c, const BenchFaultsOptions&) {
    c.coordinator().kill_now();
    std::this_thread::sleep_for(1000ms);  // an outage longer than a heartbeat: the workers notice
    c.restart_coordinator();
  };
  return {
      {"worker kill -9, replicas 2", 2, false, kill_worker},
      {"worker kill -9, replicas 1", 1, false, kill_worker},
      {"worker SIGSTOP past its lease", 1, false,
       [](LocalCluster& c, const BenchFaultsOptions& o) {
         c.worker(1).signal(SIGSTOP);
         std::this_thread::sleep_for(std::chrono::milliseconds(o.lease_ms + 1000));
         c.worker(1).signal(SIGCONT);
       }},
      {"coordinator kill -9 + restart, state file", 1, true, restart_coordinator},
      {"coordinator kill -9 + restart, no state file", 1, false, restart_coordinator},
      {"worker joining", 1, false, [](LocalCluster& c, const BenchFaultsOptions&) { c.add_worker(); }},
      {"drain of a worker", 1, false,
       [](LocalCluster& c, const BenchFaultsOptions&) {
         const uint32_t id = worker_id(c.coordinator_address(), 1);
         query_coordinator(c.coordinator_address(), 30000ms, wire::Envelope::ACK,
                           [&](wire::Envelope::Builder e) { e.initDrain().setWorkerId(id); }, nullptr,
                           LocalCluster::inherited_cluster_token());
       }},
  };
}

double p99_seconds(const std::vector<LoadCall>& calls) {
  std::vector<double> s;
  for (const auto& c : calls)
    if (c.right()) s.push_back(c.seconds());
  if (s.empty()) return 0;
  std::sort(s.begin(), s.end());
  return s[std::min(s.size() - 1, s.size() * 99 / 100)];
}

Row run_one(const BenchFaultsOptions& o, const FaultType& type, const std::string& log_root, size_t index) {
  LocalClusterOptions c;
  c.bin_dir = o.bin_dir.empty() ? executable_dir() : o.bin_dir;
  c.workers = o.workers;
  c.model = "synthetic:" + o.synthetic + ":0";
  c.log_dir = log_root + "/" + std::to_string(index);
  c.heartbeat_ms = static_cast<uint32_t>(o.heartbeat_ms);
  c.lease_ms = static_cast<uint32_t>(o.lease_ms);
  c.grace_ms = static_cast<uint32_t>(o.grace_ms);
  c.worker_threads = 1;
  c.replicas = type.replicas;
  if (type.state_file) c.coordinator_args = {"--state-file", c.log_dir + "/coordinator-state.json"};
  LocalCluster cluster(c);
  cluster.wait_ready(60s);

  CheckedLoadOptions lo;
  lo.coordinator = cluster.coordinator_address();
  lo.synthetic = o.synthetic;
  lo.threads = o.threads;
  lo.deadline = std::chrono::milliseconds(o.deadline_ms);
  lo.request_timeout = std::min(500ms, lo.deadline);
  lo.max_run = std::chrono::milliseconds(static_cast<int64_t>(o.seconds * 1000) + 120000);
  CheckedLoad load(lo);
  load.start();
  const auto warm_end = LoadClock::now() + 1s;
  while (LoadClock::now() < warm_end || load.right_calls() < 10) {
    if (LoadClock::now() > warm_end + 10s) throw std::runtime_error("bench faults: the load did not get going before '" + type.name + "'");
    std::this_thread::sleep_for(20ms);
  }
  // A call slower than 5x the warm p99 (at least 100 ms) counts as interrupted service.
  const double slow = std::max(0.1, 5 * p99_seconds(load.calls()));
  const auto fault_at = LoadClock::now();
  std::string note;
  try {
    type.inject(cluster, o);
  } catch (const std::exception& e) {
    note = std::string("the fault itself failed: ") + e.what();
  }
  // The window runs from the fault until `seconds` after the fault is over (a SIGSTOP lasts a while).
  const auto end = LoadClock::now() + std::chrono::duration_cast<LoadClock::duration>(std::chrono::duration<double>(o.seconds));
  while (LoadClock::now() < end) std::this_thread::sleep_for(20ms);
  load.stop();
  Row row{type.name, load_figures(load.calls(), fault_at, end, fault_at, 5, slow), note};
  cluster.stop(2000ms);
  return row;
}

std::string seconds_text(double s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << s << " s";
  return out.str();
}

}  // namespace

int run_bench_faults(const BenchFaultsOptions& o, std::ostream& out) {
  if (o.workers < 2) throw std::invalid_argument("bench faults: --workers must be >= 2, got " + std::to_string(o.workers));
  if (!(o.seconds > 0)) throw std::invalid_argument("bench faults: --seconds must be > 0");
  const std::string log_root =
      (std::filesystem::temp_directory_path() / ("moe-bench-faults-" + std::to_string(getpid()))).string();
  out << "bench faults: 1 coordinator + " << o.workers << " workers on 127.0.0.1, synthetic '" << o.synthetic << "', "
      << o.threads << " client threads, " << o.deadline_ms << " ms deadline per call, heartbeat " << o.heartbeat_ms
      << " ms, lease " << o.lease_ms << " ms; each fault on a fresh cluster after 1 s of load, figures from the fault until "
      << o.seconds << " s after it is over; logs in " << log_root << "\n"
      << std::flush;
  std::vector<Row> rows;
  size_t index = 0;
  for (const FaultType& type : fault_types()) {
    ++index;
    if (!o.only.empty() && type.name.find(o.only) == std::string::npos) continue;
    rows.push_back(run_one(o, type, log_root, index));
    const Row& r = rows.back();
    out << std::left << std::setw(46) << r.name << std::right << std::setw(7) << r.figures.calls << " calls"
        << std::setw(6) << r.figures.failed << " failed (" << std::fixed << std::setprecision(2)
        << r.figures.failed_percent() << "%), longest interruption " << seconds_text(r.figures.longest_interruption)
        << ", full service after " << seconds_text(r.figures.time_to_full_service)
        << (r.figures.recovered ? "" : " (NOT recovered)") << ", wrong answers " << r.figures.wrong
        << (r.figures.first_problem.empty() ? "" : "; first problem: " + r.figures.first_problem)
        << (r.note.empty() ? "" : "; " + r.note) << "\n"
        << std::flush;
  }

  bool all_met = true;
  auto target = [&](const std::string& text, bool met) {
    out << "  " << (met ? "met    " : "MISSED ") << text << "\n";
    all_met &= met;
  };
  out << "targets:\n";
  size_t wrong = 0;
  for (const Row& r : rows) {
    wrong += r.figures.wrong;
    const double lease = o.lease_ms / 1000.0;
    if (r.name == "worker kill -9, replicas 2")
      target("replicas 2, worker loss: zero failed calls (" + std::to_string(r.figures.failed) + ")", r.figures.failed == 0);
    if (r.name == "worker kill -9, replicas 1" || r.name == "worker SIGSTOP past its lease")
      target("no replicas, " + r.name + ": full service within 2 s of the lease expiring (" +
                 seconds_text(std::max(0.0, r.figures.time_to_full_service - lease)) + " after it)",
             r.figures.recovered && r.figures.time_to_full_service <= lease + 2.0);
    if (r.name.rfind("coordinator kill", 0) == 0)
      target(r.name + ": zero failed calls for clients holding a placement (" + std::to_string(r.figures.failed) + ")",
             r.figures.failed == 0);
  }
  target("zero wrong answers across every fault type (" + std::to_string(wrong) + ")", wrong == 0);
  if (all_met) {
    std::error_code ignored;
    std::filesystem::remove_all(log_root, ignored);
  } else {
    out << "logs kept in " << log_root << "\n";
  }
  return all_met ? 0 : 1;
}

}  // namespace moe
