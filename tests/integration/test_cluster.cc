// TestCluster: launching, killing, restarting and watching a loopback cluster (see test_cluster.h).
#include "tests/integration/test_cluster.h"

#include <unistd.h>

#include <csignal>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "runtime/client/coordinator_queries.h"
#include "runtime/client/local_cluster.h"

namespace moe::integration {

namespace fs = std::filesystem;


const StatusWorker* ClusterStatus::find(const std::string& address) const {
  for (const auto& w : workers)
    if (w.address == address) return &w;
  return nullptr;
}

std::string bin_path(const std::string& name) { return (fs::path(MOE_BIN_DIR) / name).string(); }

fs::path scratch_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("moe-integration-" + std::to_string(getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TlsFiles test_tls_files(const std::string& name) {
  const fs::path dir(MOE_TEST_CERTS_DIR);
  return {(dir / (name + ".pem")).string(), (dir / (name + ".key")).string(), (dir / "ca.pem").string()};
}

TlsFiles other_ca_tls_files(const std::string& name) {
  const fs::path dir(MOE_TEST_OTHER_CA_DIR);
  return {(dir / (name + ".pem")).string(), (dir / (name + ".key")).string(), (dir / "ca.pem").string()};
}

void TestCluster::add_transport_flags(std::vector<std::string>& argv, const std::string& name) const {
  if (!options_.tls) {
    argv.push_back("--allow-cleartext-token");
    return;
  }
  const TlsFiles files = test_tls_files(name);
  for (const std::string& f : {std::string("--tls"), std::string("on"), std::string("--tls-cert"), files.cert,
                               std::string("--tls-key"), files.key, std::string("--tls-ca"), files.ca}) {
    argv.push_back(f);
  }
}

TestCluster::TestCluster(const std::string& name, TestClusterOptions options)
    : options_(std::move(options)), dir_(scratch_dir(name)) {
  if (options_.tls) client_tls_ = TlsContext::load(test_tls_files("client"));
  coordinator_address_ = "127.0.0.1:" + std::to_string(pick_free_port());
  if (!options_.cluster_token.empty()) {
    {
      std::ofstream out(token_file());
      out << options_.cluster_token << "\n";
    }
    fs::permissions(token_file(), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
    options_.coordinator_flags.insert(options_.coordinator_flags.begin(), {"--cluster-token-file", token_file().string()});
    options_.worker_flags.insert(options_.worker_flags.begin(), {"--cluster-token-file", token_file().string()});
  }
  start_coordinator();
  for (int i = 0; i < options_.workers; ++i) start_worker();
}

TestCluster::~TestCluster() {
  coordinator_.kill_now();  // first, so that it does not re-place experts while the workers go
  for (auto& w : workers_) w.kill_now();
}

void TestCluster::start_coordinator() {
  std::vector<std::string> argv{bin_path("moe-coordinator"),
                                "--listen",       coordinator_address_,
                                "--heartbeat-ms", std::to_string(options_.heartbeat_ms),
                                "--lease-ms",     std::to_string(options_.lease_ms),
                                "--grace-ms",     std::to_string(options_.grace_ms),
                                "--replicas",     std::to_string(options_.replicas),
                                "--min-workers",  std::to_string(std::max(1, options_.workers))};
  if (options_.state_file) {
    argv.push_back("--state-file");
    argv.push_back(state_file().string());
  }
  for (const auto& f : options_.model_flags) argv.push_back(f);
  add_transport_flags(argv, "coordinator");
  for (const auto& f : options_.coordinator_flags) argv.push_back(f);
  coordinator_ = DaemonProcess(argv, dir_ / "moe-coordinator.log");
  coordinator_expected_ = true;
}

void TestCluster::kill_coordinator() {
  coordinator_expected_ = false;
  coordinator_.kill_now();
}

size_t TestCluster::start_worker() {
  const size_t index = workers_.size();
  const std::string name = "worker" + std::to_string(index);
  std::vector<std::string> argv{bin_path("moe-worker"), "--coordinator", coordinator_address_, "--listen",
                                "127.0.0.1:0",          "--name",        name,                 "--threads",
                                "1"};
  add_transport_flags(argv, "worker");
  for (const auto& f : options_.worker_flags) argv.push_back(f);
  workers_.emplace_back(argv, dir_ / ("moe-" + name + ".log"));
  worker_expected_.push_back(true);
  std::string address = workers_.back().wait_for_log_line("moe-worker listening on ", 10s);
  while (!address.empty() && (address.back() == '\r' || address.back() == ' ')) address.pop_back();
  worker_addresses_.push_back(address);
  return index;
}

void TestCluster::restart_worker(size_t i) {
  workers_.at(i).kill_now();
  const std::string name = "worker" + std::to_string(i);
  std::vector<std::string> argv{bin_path("moe-worker"), "--coordinator", coordinator_address_, "--listen",
                                worker_addresses_.at(i), "--name", name, "--threads", "1"};
  add_transport_flags(argv, "worker");
  for (const auto& f : options_.worker_flags) argv.push_back(f);
  const std::string log = "moe-" + name + "-restart-" + std::to_string(++restarts_) + ".log";  // a log of its own
  workers_.at(i) = DaemonProcess(argv, dir_ / log);
  worker_expected_.at(i) = true;
  workers_.at(i).wait_for_log_line("moe-worker listening on " + worker_addresses_.at(i), 10s);
}

void TestCluster::kill_worker(size_t i) {
  worker_expected_.at(i) = false;
  workers_.at(i).kill_now();
}

std::optional<ClientPlacement> TestCluster::placement(std::string* why) const {
  try {
    Frame reply = query_placement(coordinator_address_, 1000ms, client_tls_, options_.cluster_token);
    return ClientPlacement(reply.envelope().getPlacement());
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

ClusterStatus status_from_reply(wire::StatusReply::Reader s) {
  ClusterStatus out;
  out.epoch = s.getEpoch();
  for (auto w : s.getWorkers())
    out.workers.push_back({w.getInfo().getId(), w.getInfo().getAddress().cStr(), w.getInfo().getState(),
                           w.getHosted().size()});
  return out;
}

std::optional<ClusterStatus> TestCluster::status(std::string* why) const {
  try {
    Frame reply = query_status(coordinator_address_, 1000ms, client_tls_, options_.cluster_token);
    return status_from_reply(reply.envelope().getStatusReply());
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

void TestCluster::check_daemons_alive() {
  if (coordinator_expected_ && !coordinator_.running())
    throw std::runtime_error("moe-coordinator exited (" + coordinator_.exit_status() + ")\n" + logs());
  for (size_t i = 0; i < workers_.size(); ++i)
    if (worker_expected_[i] && !workers_[i].running())
      throw std::runtime_error("moe-worker " + std::to_string(i) + " exited (" + workers_[i].exit_status() + ")\n" +
                               logs());
}

namespace {

std::string describe(const ClientPlacement& p) {
  std::string text = "epoch " + std::to_string(p.epoch()) + ", workers";
  for (const auto& w : p.workers()) text += " " + std::to_string(w.id) + "@" + w.address + ":" + worker_state_name(w.state);
  return text;
}

std::string describe(const ClusterStatus& s) {
  std::string text = "epoch " + std::to_string(s.epoch) + ", workers";
  for (const auto& w : s.workers)
    text += " " + std::to_string(w.id) + "@" + w.address + ":" + worker_state_name(w.state) + "(" +
            std::to_string(w.hosted) + " experts)";
  return text;
}

}  // namespace

// Polls `fetch` every 20 ms until `ready` holds, a daemon dies (check_daemons_alive throws) or `timeout`
// passes; the timeout error names what was awaited, the last thing seen (`noun`) and the daemons' logs.
template <typename T>
T TestCluster::poll_until(const std::string& what, const char* noun,
                          const std::function<std::optional<T>(std::string*)>& fetch,
                          const std::function<bool(const T&)>& ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string seen = "nothing yet";
  while (true) {
    check_daemons_alive();
    std::string why;
    if (auto value = fetch(&why)) {
      if (ready(*value)) return *value;
      seen = describe(*value);
    } else {
      seen = why;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("timed out after " + std::to_string(timeout.count()) + " ms waiting for " + what +
                               "; last " + noun + ": " + seen + "\n" + logs());
    std::this_thread::sleep_for(20ms);
  }
}

ClientPlacement TestCluster::wait_for_placement(const std::string& what,
                                                const std::function<bool(const ClientPlacement&)>& ready,
                                                std::chrono::milliseconds timeout) {
  return poll_until<ClientPlacement>(what, "placement", [this](std::string* why) { return placement(why); }, ready,
                                     timeout);
}

ClusterStatus TestCluster::wait_for_status(const std::string& what, const std::function<bool(const ClusterStatus&)>& ready,
                                           std::chrono::milliseconds timeout) {
  return poll_until<ClusterStatus>(what, "status", [this](std::string* why) { return status(why); }, ready, timeout);
}

ClientPlacement TestCluster::wait_ready(std::chrono::milliseconds timeout) {
  std::vector<std::string> running;
  for (size_t i = 0; i < workers_.size(); ++i)
    if (worker_expected_[i]) running.push_back(worker_addresses_[i]);
  return wait_for_placement(
      "epoch >= 1 with all " + std::to_string(running.size()) + " running workers active",
      [&](const ClientPlacement& p) {
        if (p.epoch() < 1) return false;
        for (const auto& address : running) {
          bool active = false;
          for (const auto& w : p.workers()) active |= w.address == address && w.state == WorkerState::Active;
          if (!active) return false;
        }
        return true;
      },
      timeout);
}

uint32_t TestCluster::worker_id(const ClientPlacement& placement, const std::string& address) {
  for (const auto& w : placement.workers())
    if (w.address == address) return w.id;
  throw std::runtime_error("worker " + address + " is not in the placement of epoch " +
                           std::to_string(placement.epoch()) + ": " + describe(placement));
}

std::string TestCluster::logs() const {
  std::string text = coordinator_.log_tail(25);
  for (const auto& w : workers_) text += "\n" + w.log_tail(15);
  return text;
}

}  // namespace moe::integration
