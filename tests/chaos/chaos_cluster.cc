// ChaosCluster: launching, faulting and watching the daemons of one chaos run (see chaos_cluster.h).
#include "tests/chaos/chaos_cluster.h"

#include <csignal>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "runtime/client/coordinator_queries.h"
#include "runtime/client/local_cluster.h"

namespace moe::chaos {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using integration::bin_path;

namespace {

constexpr int kCoordinatorPort = 7400;
constexpr int kWorkerPort = 7500;

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

ChaosCluster::ChaosCluster(ChaosClusterOptions options)
    : options_(std::move(options)), dir_(integration::scratch_dir("chaos-" + options_.name)) {
  if (options_.netns) {
    std::vector<std::string> nodes{"client", "coord"};
    for (int i = 0; i < options_.workers + options_.spare_workers; ++i) nodes.push_back("w" + std::to_string(i));
    net_ = std::make_unique<NetTopology>(nodes);
    coordinator_address_ = net_->address("coord") + ":" + std::to_string(kCoordinatorPort);
  } else {
    coordinator_address_ = "127.0.0.1:" + std::to_string(pick_free_port());
  }
  start_coordinator();
  for (int i = 0; i < options_.workers; ++i) start_worker();
}

ChaosCluster::~ChaosCluster() {
  if (coordinator_) coordinator_->kill_now();
  for (auto& w : workers_)
    if (w.process) w.process->kill_now();
  net_.reset();  // after the processes: nothing runs in the namespaces any more
  if (!keep_logs_) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
    fs::remove(dir_.parent_path(), ignored);  // only when empty
  }
}

std::vector<std::string> ChaosCluster::prefix(const std::string& node) const {
  return net_ ? net_->exec_prefix(node) : std::vector<std::string>{};
}

void ChaosCluster::note_if_crashed(DaemonProcess* process, bool expected, const std::string& who) {
  if (process && expected && !process->running())
    exited_.push_back(who + " exited (" + process->exit_status() + ") before the fault that was to stop it");
}

void ChaosCluster::start_coordinator() {
  note_if_crashed(coordinator_.get(), coordinator_expected_, "moe-coordinator");
  std::vector<std::string> argv = prefix("coord");
  for (const std::string& a :
       {bin_path("moe-coordinator"), std::string("--listen"), coordinator_address_, std::string("--heartbeat-ms"),
        std::to_string(options_.heartbeat_ms), std::string("--lease-ms"), std::to_string(options_.lease_ms),
        std::string("--grace-ms"), std::to_string(options_.grace_ms), std::string("--replicas"),
        std::to_string(options_.replicas), std::string("--min-workers"), std::to_string(std::max(1, options_.workers)),
        std::string("--synthetic"), std::string("tiny"), std::string("--seed"), std::string("0"),
        std::string("--rpc-timeout-ms"), std::string("1000")})
    argv.push_back(a);
  if (options_.state_file) {
    argv.push_back("--state-file");
    argv.push_back((dir_ / "coordinator-state.json").string());
  }
  if (!options_.cluster_token.empty()) {
    argv.push_back("--cluster-token");
    argv.push_back(options_.cluster_token);
    argv.push_back("--allow-cleartext-token");  // loopback (and test namespaces) without TLS
  }
  const int n = coordinator_incarnation_++;
  coordinator_ = std::make_unique<DaemonProcess>(argv, dir_ / ("moe-coordinator." + std::to_string(n) + ".log"));
  coordinator_expected_ = true;
}

void ChaosCluster::kill_coordinator() {
  note_if_crashed(coordinator_.get(), coordinator_expected_, "moe-coordinator");
  coordinator_expected_ = false;
  if (coordinator_) coordinator_->kill_now();
}

size_t ChaosCluster::live_workers() const {
  size_t n = 0;
  for (const auto& w : workers_) n += w.state == State::kRunning;
  return n;
}

void ChaosCluster::launch_worker(size_t i) {
  Worker& w = workers_.at(i);
  const std::string node = worker_node(i);
  const std::string listen = net_ ? net_->address(node) + ":" + std::to_string(kWorkerPort) : "127.0.0.1:0";
  std::vector<std::string> argv = prefix(node);
  for (const std::string& a : {bin_path("moe-worker"), std::string("--coordinator"), coordinator_address_,
                               std::string("--listen"), listen, std::string("--name"), node, std::string("--threads"),
                               std::string("1"), std::string("--batch-wait-us"), std::string("0")})
    argv.push_back(a);
  if (options_.slots > 0) {
    argv.push_back("--slots");
    argv.push_back(std::to_string(options_.slots));
  }
  if (!options_.cluster_token.empty()) {
    argv.push_back("--cluster-token");
    argv.push_back(options_.cluster_token);
    argv.push_back("--allow-cleartext-token");  // loopback (and test namespaces) without TLS
  }
  note_if_crashed(w.process.get(), w.state == State::kRunning, node);
  if (w.process) w.process->kill_now();
  const int n = w.incarnation++;
  w.process = std::make_unique<DaemonProcess>(argv, dir_ / ("moe-" + node + "." + std::to_string(n) + ".log"));
  w.state = State::kRunning;
  w.address = trim(w.process->wait_for_log_line("moe-worker listening on ", 10s));
}

size_t ChaosCluster::start_worker() {
  const size_t i = workers_.size();
  if (net_ && i >= static_cast<size_t>(options_.workers + options_.spare_workers))
    throw std::runtime_error("ChaosCluster: no spare node for worker " + std::to_string(i) + " (" +
                             std::to_string(options_.spare_workers) + " spare)");
  workers_.emplace_back();
  launch_worker(i);
  return i;
}

void ChaosCluster::restart_worker(size_t i) {
  launch_worker(i);
}

void ChaosCluster::kill_worker(size_t i) {
  Worker& w = workers_.at(i);
  note_if_crashed(w.process.get(), w.state == State::kRunning, worker_node(i));
  w.state = State::kKilled;
  if (w.process) w.process->kill_now();
}

void ChaosCluster::stop_worker(size_t i) {
  Worker& w = workers_.at(i);
  note_if_crashed(w.process.get(), w.state == State::kRunning, worker_node(i));
  w.state = State::kStopped;
  w.process->kill(SIGSTOP);
}

void ChaosCluster::continue_worker(size_t i) {
  Worker& w = workers_.at(i);
  w.process->kill(SIGCONT);
  w.state = State::kRunning;
}

std::string ChaosCluster::drain_worker(size_t i, std::chrono::milliseconds timeout) {
  std::string why;
  const auto s = status(&why);
  if (!s) return "no status from the coordinator: " + why;
  const integration::StatusWorker* found = s->find(worker_address(i));
  if (!found) return "worker " + worker_address(i) + " is not in the coordinator's status";
  std::vector<std::string> argv = prefix("client");
  for (const std::string& a : {bin_path("moectl"), std::string("drain"), std::string("--cluster"), coordinator_address_,
                               std::to_string(found->id)})
    argv.push_back(a);
  if (!options_.cluster_token.empty()) {
    argv.push_back("--cluster-token");
    argv.push_back(options_.cluster_token);
  }
  workers_.at(i).state = State::kLeaving;
  const fs::path log = dir_ / ("moectl-drain-" + worker_node(i) + ".log");
  const std::string result = integration::run_to_completion(argv, log, timeout);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return result + ": " + trim(text);
}

std::vector<std::string> ChaosCluster::crashed() {
  std::vector<std::string> out = exited_;
  if (coordinator_expected_ && coordinator_ && !coordinator_->running())
    out.push_back("moe-coordinator exited (" + coordinator_->exit_status() + ") without being killed");
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (!w.process) continue;
    if (w.state == State::kRunning && !w.process->running())
      out.push_back(worker_node(i) + " (" + w.address + ") exited (" + w.process->exit_status() + ") without being killed");
    if (w.state == State::kLeaving && !w.process->running() && w.process->exit_status() != "exit 0")
      out.push_back(worker_node(i) + " (" + w.address + ") left after a drain with " + w.process->exit_status() +
                    ", not exit 0");
  }
  return out;
}

std::optional<ClusterStatus> ChaosCluster::status(std::string* why) const {
  try {
    Frame reply = query_coordinator(coordinator_address_, 1000ms, wire::Envelope::STATUS_REPLY,
                                    [&](wire::Envelope::Builder e) { e.setStatus(); }, nullptr,
                                    options_.cluster_token);
    return integration::status_from_reply(reply.envelope().getStatusReply());
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

ClusterStatus ChaosCluster::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string seen = "nothing yet";
  while (true) {
    std::string why;
    if (auto s = status(&why)) {
      bool ready = s->epoch >= 1;
      for (size_t i = 0; i < workers_.size() && ready; ++i) {
        if (!worker_live(i)) continue;
        const integration::StatusWorker* w = s->find(workers_[i].address);
        ready = w && w->state == wire::WorkerState::ACTIVE && w->hosted > 0;
      }
      if (ready) return *s;
      seen = "epoch " + std::to_string(s->epoch) + ",";
      for (const auto& w : s->workers)
        seen += " " + std::to_string(w.id) + "@" + w.address + ":" + integration::worker_state_name(w.state) + "(" +
                std::to_string(w.hosted) + ")";
    } else {
      seen = why;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("cluster not ready after " + std::to_string(timeout.count()) + " ms; last status: " + seen +
                               "\n" + logs());
    std::this_thread::sleep_for(50ms);
  }
}

std::string ChaosCluster::logs() const {
  std::string text = coordinator_ ? coordinator_->log_tail(30) : "";
  for (const auto& w : workers_)
    if (w.process) text += "\n" + w.process->log_tail(15);
  return text;
}

}  // namespace moe::chaos
