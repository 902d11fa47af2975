// LocalCluster: launching, readiness and shutdown of a loopback cluster (see local_cluster.h).
#include "runtime/client/local_cluster.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <unistd.h>

#include "runtime/client/cluster_readiness.h"
#include "runtime/model/layer_source_factory.h"

namespace moe {

namespace fs = std::filesystem;

uint16_t pick_free_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

std::string executable_dir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
  return self.parent_path().string();
}

namespace {

std::string binary(const std::string& dir, const std::string& name) {
  fs::path path = fs::path(dir) / name;
  if (!fs::exists(path))
    throw std::runtime_error(name + " not found at " + path.string() + " (build it: ninja " + name + ")");
  return path.string();
}

// The coordinator's model flags for a model reference.
std::vector<std::string> model_flags(const std::string& model) {
  ModelRef ref = ModelRef::parse(model);
  if (!ref.model_dir.empty()) return {"--model", ref.model_dir};
  return {"--synthetic", ref.synthetic, "--seed", std::to_string(ref.synthetic_seed)};
}

}  // namespace

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {
  const std::string coordinator_bin = binary(options_.bin_dir, "moe-coordinator");
  const std::string worker_bin = binary(options_.bin_dir, "moe-worker");
  if (options_.workers < 0) throw std::invalid_argument("LocalCluster: workers must be >= 0, got " + std::to_string(options_.workers));
  if (!options_.log_dir.empty()) fs::create_directories(options_.log_dir);

  coordinator_address_ = "127.0.0.1:" + std::to_string(pick_free_port());
  std::vector<std::string> argv{coordinator_bin,   "--listen",         coordinator_address_,
                                "--heartbeat-ms",  std::to_string(options_.heartbeat_ms),
                                "--lease-ms",      std::to_string(options_.lease_ms),
                                "--grace-ms",      std::to_string(options_.grace_ms),
                                "--replicas",      std::to_string(options_.replicas),
                                "--min-workers",
                                std::to_string(std::max(1, options_.min_workers < 0 ? options_.workers : options_.min_workers))};
  for (auto& f : model_flags(options_.model)) argv.push_back(f);
  add_transport_flags(argv);
  for (auto& f : options_.coordinator_args) argv.push_back(f);
  coordinator_argv_ = argv;
  coordinator_ = ChildProcess(argv, log_path("moe-coordinator"), ChildProcess::Output::kStdoutAndStderr);
  for (int i = 0; i < options_.workers; ++i) add_worker();
}

LocalCluster::~LocalCluster() { stop(); }

void LocalCluster::restart_coordinator() {
  coordinator_.kill_now();
  coordinator_ = ChildProcess(coordinator_argv_, log_path("moe-coordinator"), ChildProcess::Output::kStdoutAndStderr);
}

std::string LocalCluster::log_path(const std::string& name) const {
  if (options_.log_dir.empty()) return "";
  return (fs::path(options_.log_dir) / (name + ".log")).string();
}

size_t LocalCluster::add_worker() {
  const size_t index = workers_.size();
  const std::string name = "worker" + std::to_string(index);
  std::vector<std::string> argv{binary(options_.bin_dir, "moe-worker"), "--coordinator", coordinator_address_,
                                "--listen", "127.0.0.1:0", "--name", name};
  if (options_.worker_threads > 0) {
    argv.push_back("--threads");
    argv.push_back(std::to_string(options_.worker_threads));
  }
  add_transport_flags(argv);
  for (auto& f : options_.worker_args) argv.push_back(f);
  workers_.emplace_back(argv, log_path("moe-" + name), ChildProcess::Output::kStdoutAndStderr);
  return index;
}

void LocalCluster::add_transport_flags(std::vector<std::string>& argv) const {
  if (options_.tls_enabled()) {
    for (const std::string& f : {std::string("--tls"), std::string("on"), std::string("--tls-cert"), options_.tls.cert,
                                 std::string("--tls-key"), options_.tls.key, std::string("--tls-ca"), options_.tls.ca}) {
      argv.push_back(f);
    }
  } else {
    argv.push_back("--allow-cleartext-token");
  }
}

uint64_t LocalCluster::wait_ready(std::chrono::milliseconds timeout) {
  auto tls = options_.tls_enabled() ? TlsContext::load(options_.tls) : nullptr;
  return wait_for_active_workers(coordinator_address_, workers_.size(), timeout, [this] {
    if (!coordinator_.running())
      throw std::runtime_error("moe-coordinator exited (" + coordinator_.exit_status() + ") before the cluster was ready" +
                               (options_.log_dir.empty() ? "" : "; see " + log_path("moe-coordinator")));
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i].running())
        throw std::runtime_error("moe-worker " + std::to_string(i) + " exited (" + workers_[i].exit_status() +
                                 ") before the cluster was ready" +
                                 (options_.log_dir.empty() ? "" : "; see " + log_path("moe-worker" + std::to_string(i))));
    }
  }, tls, options_.cluster_token.empty() ? inherited_cluster_token() : options_.cluster_token);
}

// The daemons inherit this process's environment: a MOE_CLUSTER_TOKEN there is theirs too.
std::string LocalCluster::inherited_cluster_token() {
  const char* token = std::getenv("MOE_CLUSTER_TOKEN");
  return token ? token : "";
}

void LocalCluster::stop(std::chrono::milliseconds grace) {
  for (auto& w : workers_) w.signal(SIGTERM);
  for (auto& w : workers_) w.stop(grace);
  coordinator_.stop(grace);
}

}  // namespace moe
