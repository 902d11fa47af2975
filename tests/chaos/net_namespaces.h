// Network namespaces for the chaos suite: every node (client, coordinator, each worker) gets its own
// namespace with one address in 10.213.0.0/24, reached over a veth pair into a bridge that lives in a
// namespace of its own, as separate machines on one switch would be. Nothing is added to the namespace
// the test runs in. Faults: a link cut both ways or one way (a blackhole route to the peer's address in
// the sender's namespace: packets vanish silently, as on a dead link), and delay/loss with tc netem
// where the kernel has it. Names start with "mcx<pid>-"; the destructor deletes the namespaces, and a
// new topology first deletes those left by a run whose process is gone. Every `ip`/`tc` call is checked
// and its output goes into the error.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moe::chaos {

// Runs a command (argv, no shell) to completion; returns its exit code, output (stdout + stderr) in `output`.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

class NetTopology {
 public:
  // Why namespaces cannot be used here (not root, no CAP_NET_ADMIN, no `ip`, no veth/bridge), or nullopt.
  static std::optional<std::string> unavailable_reason();
  // Why tc netem cannot be used (the kernel lacks the qdisc), or nullopt. Needs namespaces.
  static std::optional<std::string> netem_unavailable_reason();
  // Deletes namespaces named mcx<pid>-* whose pid no longer runs.
  static void remove_leftovers();

  // Creates the bridge namespace and one namespace per node (node i gets 10.213.0.(i+1)). Throws
  // std::runtime_error with the failing command and its output.
  explicit NetTopology(const std::vector<std::string>& nodes);
  ~NetTopology();
  NetTopology(const NetTopology&) = delete;
  NetTopology& operator=(const NetTopology&) = delete;

  const std::string& address(const std::string& node) const;   // "10.213.0.N"
  std::string namespace_name(const std::string& node) const;
  // {"ip", "netns", "exec", NS}: put before a command line to run it on `node`.
  std::vector<std::string> exec_prefix(const std::string& node) const;

  // Drops the packets `from` sends to `to` (one way). Idempotent.
  void cut_one_way(const std::string& from, const std::string& to);
  void heal_one_way(const std::string& from, const std::string& to);
  // Delay and loss on everything `node` sends (tc netem on its interface); clear_netem removes it.
  void set_netem(const std::string& node, int delay_ms, int jitter_ms, double loss_percent);
  void clear_netem(const std::string& node);

  // Moves the calling thread into `node`'s namespace until the guard goes away (threads it starts
  // meanwhile are born there: a client's io threads, load threads).
  class Enter {
   public:
    Enter(const NetTopology& topology, const std::string& node);
    ~Enter();
    Enter(const Enter&) = delete;
    Enter& operator=(const Enter&) = delete;

   private:
    int original_ = -1;
  };

 private:
  void ip(const std::vector<std::string>& args) const;  // throws on failure
  std::string prefix_;
  std::map<std::string, int> index_;
  std::map<std::string, std::string> addresses_;
  std::vector<std::string> created_;  // namespaces to delete
};

}  // namespace moe::chaos
