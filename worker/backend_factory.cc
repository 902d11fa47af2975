// Backend construction by name (see backend_factory.h).
#include "worker/backend_factory.h"

#include <unistd.h>

#include <stdexcept>

#ifdef MOE_HAVE_CUDA_BACKEND
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_backend.h"
#endif

namespace moe {

std::unique_ptr<ExpertBackend> make_worker_backend(const std::string& name, int threads, const std::string& cuda_path) {
  if (name == "cpu") return make_cpu_backend(threads);
  if (name == "cuda") {
#ifdef MOE_HAVE_CUDA_BACKEND
    const auto path = parse_cuda_expert_path(cuda_path);
    if (!path) {
      throw std::invalid_argument("--cuda-path: unknown path '" + cuda_path +
                                  "' (auto, streaming, tiles32, tiles64, tiles128, cublas)");
    }
    auto backend = make_cuda_backend(0);
    backend->set_expert_path(*path);
    return backend;
#else
    throw std::runtime_error("--backend cuda: this build has no CUDA backend (rebuild with CUDA, MOE_ENABLE_CUDA=ON)");
#endif
  }
  throw std::invalid_argument("unknown backend '" + name + "' (want cpu or cuda)");
}

uint64_t default_memory_bytes(const std::string& backend) {
#ifdef MOE_HAVE_CUDA_BACKEND
  if (backend == "cuda") {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) return free_bytes / 10 * 8;
  }
#endif
  (void)backend;
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page_size = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return uint64_t{8} << 30;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 10 * 8;
}

uint64_t backend_bytes_per_weight(const std::string& backend) { return backend == "cuda" ? 2 : 4; }

}  // namespace moe
