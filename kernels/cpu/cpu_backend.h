// The CPU expert backend: the reference every other backend is checked against, and the fallback.
//
// Weights are converted once, at load, to f32 (biases too; ExpertMath picks the activation); gate and up are stacked into one [2I, H] matrix so one
// product gives both. forward() groups the assignments by expert and, per expert:
//   - up to max_streaming_tokens tokens (decode and small batches): hand-written streaming kernels read
//     each weight once, with SiLU(gate)·up fused into the gate/up pass; the work of all such experts
//     is split into (expert, block of rows) tasks on the backend's thread pool, which keeps both cores
//     of a small machine busy where one small sgemm per expert would not (measured: T=128 on 2 cores);
//   - more tokens: gather the rows, one OpenBLAS sgemm for gate+up, SiLU·up, one sgemm for down
//     (OpenBLAS threads inside each GEMM).
// On CPUs with AMX-BF16 (kernel "amx", the default there) or, opt-in, AVX512_BF16 (kernel "avx512bf16"),
// experts are instead packed at load (kernels/cpu/amx_experts.h: bf16 weights stay bf16, f32 are split
// into two bf16 planes) and every group runs through amx_forward, decode and prefill alike; OpenBLAS
// and the streaming kernels remain the path ("blas") for every other CPU.
// Results are combined in ascending expert order on the calling thread, so output is deterministic for
// a given batch; forward_rows is the deterministic mode's path (the same bits whatever the batch).
// forward() may write its output over its input (out == x). Threading: OpenBLAS's thread count is
// process-wide; make_cpu_backend(threads > 0) sets it.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "kernels/cpu/aligned_buffer.h"
#include "kernels/cpu/amx_experts.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/expert_backend.h"

namespace moe {

struct CpuExpert {
  int64_t hidden = 0;
  int64_t intermediate = 0;
  AlignedFloats gate_up;  // [2 * intermediate, hidden]: gate rows, then up rows
  AlignedFloats down;     // [hidden, intermediate]
  std::vector<float> gate_up_bias;  // [2 * intermediate] (gate, then up) or empty
  std::vector<float> down_bias;     // [hidden] or empty
  ExpertMath math;
  // Kernels amx, avx512bf16, for experts with the default math and no biases: the weights packed
  // instead (gate_up and down empty). Other experts keep the f32 layout and the blas path.
  AmxExpert amx;
  bool packed() const { return amx.gate.rows > 0; }
  size_t bytes() const {
    return (gate_up.size() + down.size() + gate_up_bias.size() + down_bias.size()) * sizeof(float) + amx.bytes();
  }
};

namespace cpu_detail {
struct ExpertGroup;  // the tokens of one call routed to one expert (cpu_backend.cc)
}

// Most tokens of one expert the streaming kernels take (the per-task stack buffers are sized by it).
inline constexpr int kMaxStreamingTokens = 64;

// Which kernels run the experts. Auto: MOE_CPU_KERNEL (auto | amx | avx512bf16 | blas) when set, else
// amx where amx_available(), else blas (avx512bf16 only when asked for: see resolve_kernel).
enum class CpuKernel { Auto, Amx, Avx512Bf16, Blas };

// Parses "auto", "amx", "avx512bf16" or "blas"; throws std::invalid_argument naming the value otherwise.
CpuKernel parse_cpu_kernel(const std::string& name);
const char* cpu_kernel_name(CpuKernel kernel);

struct CpuBackendOptions {
  int threads = 0;  // <= 0: OpenBLAS's default thread count (OPENBLAS_NUM_THREADS or the cores)
  // Experts with at most this many tokens (clamped to kMaxStreamingTokens) use the streaming kernels,
  // others OpenBLAS sgemm. 0: every expert through sgemm.
  int max_streaming_tokens = 48;
  CpuKernel kernel = CpuKernel::Auto;  // Amx or Avx512Bf16 on a CPU without it: std::invalid_argument
};

class CpuBackend : public ExpertBackend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options = {});

  std::string name() const override { return "cpu"; }
  void load_expert(ExpertKey key, const ExpertWeightsView& weights) override;
  void unload_expert(ExpertKey key) override;
  bool has_expert(ExpertKey key) const override;
  size_t resident_bytes() const override;
  void forward(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
               std::span<const TokenAssignment> assignments, float* out) override;
  // Deterministic mode (expert_backend.h): every non-packed group through the streaming kernels (in
  // pieces of at most 256 tokens; never sgemm, whose kernels and blocking depend on the row count),
  // packed groups through AMX with a lone last token block summed in the paired blocks' order
  // (amx_gate_up); each row written alone, weighted.
  void forward_rows(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                    std::span<const TokenAssignment> assignments, float* rows) override;

  int threads() const { return pool_.threads(); }
  CpuKernel kernel() const { return kernel_; }  // resolved: never Auto

 private:
  std::shared_ptr<const CpuExpert> find(ExpertKey key) const;
  std::map<int32_t, cpu_detail::ExpertGroup> group(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                                                   std::span<const TokenAssignment> assignments, float* out,
                                                   const char* method) const;
  void compute(std::span<cpu_detail::ExpertGroup* const> groups, const float* x, int64_t hidden, bool row_invariant);

  CpuBackendOptions options_;
  CpuKernel kernel_ = CpuKernel::Blas;
  ThreadPool pool_;
  mutable std::shared_mutex mutex_;  // guards experts_ and resident_bytes_
  std::map<ExpertKey, std::shared_ptr<const CpuExpert>> experts_;
  size_t resident_bytes_ = 0;
};

}  // namespace moe
