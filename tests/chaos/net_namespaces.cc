// NetTopology: creating, faulting and removing the chaos suite's namespaces (see net_namespaces.h).
#include "tests/chaos/net_namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace moe::chaos {

namespace {

constexpr const char* kPrefix = "mcx";

std::string join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed: " + std::string(std::strerror(errno)));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed for " + join(argv));
  if (pid == 0) {
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::optional<std::string> NetTopology::unavailable_reason() {
  if (geteuid() != 0) return "network namespaces need root (CAP_NET_ADMIN); running as uid " + std::to_string(geteuid());
  const std::string probe = std::string(kPrefix) + std::to_string(getpid()) + "-probe";
  std::string out;
  int rc = 0;
  try {
    rc = run_command({"ip", "netns", "add", probe}, &out);
  } catch (const std::exception& e) {
    return std::string("cannot run ip: ") + e.what();
  }
  if (rc != 0) return "`ip netns add " + probe + "` failed (exit " + std::to_string(rc) + "): " + out;
  std::string veth_out;
  const int veth = run_command({"ip", "-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0"}, &veth_out);
  std::string bridge_out;
  const int bridge = run_command({"ip", "-n", probe, "link", "add", "br0", "type", "bridge"}, &bridge_out);
  run_command({"ip", "netns", "del", probe});
  if (veth != 0) return "cannot create a veth pair in a namespace: " + veth_out;
  if (bridge != 0) return "cannot create a bridge in a namespace: " + bridge_out;
  return std::nullopt;
}

std::optional<std::string> NetTopology::netem_unavailable_reason() {
  if (auto why = unavailable_reason()) return why;
  const std::string probe = std::string(kPrefix) + std::to_string(getpid()) + "-netem";
  run_command({"ip", "netns", "add", probe});
  run_command({"ip", "-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0"});
  std::string out;
  const int rc = run_command({"tc", "-n", probe, "qdisc", "add", "dev", "a0", "root", "netem", "delay", "1ms"}, &out);
  run_command({"ip", "netns", "del", probe});
  if (rc != 0) return "tc netem is not available in this kernel (`tc qdisc add ... netem delay 1ms`: " + out + ")";
  return std::nullopt;
}

void NetTopology::remove_leftovers() {
  std::string out;
  if (run_command({"ip", "netns", "list"}, &out) != 0) return;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind(kPrefix, 0) != 0) continue;
    const size_t dash = name.find('-');
    if (dash == std::string::npos) continue;
    const std::string pid = name.substr(std::strlen(kPrefix), dash - std::strlen(kPrefix));
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::filesystem::exists("/proc/" + pid)) continue;  // its run is still going
    run_command({"ip", "netns", "del", name});
  }
}

void NetTopology::ip(const std::vector<std::string>& args) const {
  std::string out;
  const int rc = run_command(args, &out);
  if (rc != 0) throw std::runtime_error("`" + join(args) + "` failed (exit " + std::to_string(rc) + "): " + out);
}

NetTopology::NetTopology(const std::vector<std::string>& nodes) {
  remove_leftovers();
  static int counter = 0;
  prefix_ = std::string(kPrefix) + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-";
  const std::string bridge_ns = prefix_ + "br";
  try {
    ip({"ip", "netns", "add", bridge_ns});
    created_.push_back(bridge_ns);
    ip({"ip", "-n", bridge_ns, "link", "add", "br0", "type", "bridge"});
    ip({"ip", "-n", bridge_ns, "link", "set", "br0", "up"});
    for (size_t i = 0; i < nodes.size(); ++i) {
      const std::string& node = nodes[i];
      const std::string ns = prefix_ + node;
      const std::string address = "10.213.0." + std::to_string(i + 1);
      const std::string port = "p" + std::to_string(i);
      ip({"ip", "netns", "add", ns});
      created_.push_back(ns);
      ip({"ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", bridge_ns});
      ip({"ip", "-n", ns, "addr", "add", address + "/24", "dev", "eth0"});
      ip({"ip", "-n", ns, "link", "set", "eth0", "up"});
      ip({"ip", "-n", ns, "link", "set", "lo", "up"});
      ip({"ip", "-n", bridge_ns, "link", "set", port, "master", "br0"});
      ip({"ip", "-n", bridge_ns, "link", "set", port, "up"});
      index_[node] = static_cast<int>(i);
      addresses_[node] = address;
    }
  } catch (...) {
    for (const auto& ns : created_) run_command({"ip", "netns", "del", ns});
    throw;
  }
}

NetTopology::~NetTopology() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) run_command({"ip", "netns", "del", *it});
}

const std::string& NetTopology::address(const std::string& node) const {
  auto it = addresses_.find(node);
  if (it == addresses_.end()) throw std::invalid_argument("NetTopology: no node '" + node + "'");
  return it->second;
}

std::string NetTopology::namespace_name(const std::string& node) const {
  address(node);  // throws for an unknown node
  return prefix_ + node;
}

std::vector<std::string> NetTopology::exec_prefix(const std::string& node) const {
  // A full path: launchers exec without searching PATH.
  static const std::string ip_path = [] {
    for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"})
      if (std::filesystem::exists(std::string(dir) + "/ip")) return std::string(dir) + "/ip";
    return std::string("ip");
  }();
  return {ip_path, "netns", "exec", namespace_name(node)};
}

void NetTopology::cut_one_way(const std::string& from, const std::string& to) {
  ip({"ip", "-n", namespace_name(from), "route", "replace", "blackhole", address(to) + "/32"});
}

void NetTopology::heal_one_way(const std::string& from, const std::string& to) {
  std::string out;
  run_command({"ip", "-n", namespace_name(from), "route", "del", "blackhole", address(to) + "/32"}, &out);
}

void NetTopology::set_netem(const std::string& node, int delay_ms, int jitter_ms, double loss_percent) {
  std::ostringstream loss;
  loss << loss_percent << "%";
  ip({"tc", "-n", namespace_name(node), "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
      std::to_string(delay_ms) + "ms", std::to_string(jitter_ms) + "ms", "loss", loss.str()});
}

void NetTopology::clear_netem(const std::string& node) {
  run_command({"tc", "-n", namespace_name(node), "qdisc", "del", "dev", "eth0", "root"});
}

NetTopology::Enter::Enter(const NetTopology& topology, const std::string& node) {
  original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) throw std::runtime_error("cannot open /proc/thread-self/ns/net: " + std::string(std::strerror(errno)));
  const std::string path = "/var/run/netns/" + topology.namespace_name(node);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    close(original_);
    throw std::runtime_error("cannot enter namespace " + path + ": " + why);
  }
  close(fd);
}

NetTopology::Enter::~Enter() {
  if (original_ < 0) return;
  setns(original_, CLONE_NEWNET);
  close(original_);
}

}  // namespace moe::chaos
