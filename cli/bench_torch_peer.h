// The PyTorch CPU peer of `moectl bench engine`, measured in the same run: tools/torch_cpu_moe_peer.py
// run by the venv's python as a child process, given the bench's own weights and routed inputs through
// files, and driven one command at a time over pipes, so that the bench can alternate ours and the
// peer (ABAB). When python, the script or torch is missing, start() says why instead.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace moe {

struct TorchPeerConfig {
  std::string python;  // interpreter with torch
  std::string script;  // tools/torch_cpu_moe_peer.py
  int64_t hidden = 0, intermediate = 0;
  int experts = 0, top_k = 0;
  DType dtype = DType::F32;  // F32 or BF16
  int threads = 1;
  std::string weights_file;  // per expert gate, up, down raw in dtype
};

// One routed input set: x [T, hidden] f32, ids and weights [T, top_k].
struct PeerInput {
  const float* x = nullptr;
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

class TorchPeer {
 public:
  // Starts the child and waits for its "ready" line. On failure returns null and sets *why.
  static std::unique_ptr<TorchPeer> start(const TorchPeerConfig& config, std::string* why);
  TorchPeer(const TorchPeer&) = delete;
  TorchPeer& operator=(const TorchPeer&) = delete;
  ~TorchPeer();

  const std::string& banner() const { return banner_; }  // the child's ready line
  // Hands the peer V input sets of T tokens (written to `path`). Throws std::runtime_error with the
  // peer's answer when it is not "ok".
  void set_inputs(const std::string& path, int64_t tokens, const std::vector<PeerInput>& sets);
  // Median milliseconds of `reps` timed calls (after one warm-up call) on the peer's side.
  double run_ms(int reps);
  // torch.set_num_threads(threads) in the peer.
  void set_threads(int threads);
  // The first set's output [T, hidden] f32, read back through `path`.
  std::vector<float> output(const std::string& path, int64_t tokens);

 private:
  TorchPeer() = default;
  std::string command(const std::string& line);  // one line out, one line back

  TorchPeerConfig config_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string pending_;  // bytes read past the last line
  std::string banner_;
};

}  // namespace moe
