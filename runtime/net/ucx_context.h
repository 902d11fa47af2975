// The process's UCX (UCP) context and worker, driven by one progress thread. Every UCP call of the
// process runs on that thread (post() hands work to it), so the worker runs in UCS_THREAD_MODE_SINGLE
// and nothing else needs a lock. The thread progresses the worker while there is work, spins briefly
// when it runs dry, then sleeps on the worker's event fd (ucp_worker_arm) and on an eventfd that post()
// writes. UCX picks the transport per peer (shared memory or CMA on one host, TCP between hosts, RDMA
// or CUDA IPC where present): nothing here names one.
//
// UCM (UCX's malloc/mmap hooks) reads UCX_MEM_* when libucm loads, before any code of ours; under
// ASan/TSan its hooks crash (TSan: in a new thread's madvise), so sanitizer builds run every test with
// UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no (tests/CMakeLists.txt, ops/run-sanitizers.sh).
// The hooks serve only registration caches of RDMA/GPU memory. Set in code, only when the variable is
// not set already: before ucp_init a 1 s keepalive (UCX_KEEPALIVE_INTERVAL, so that a peer killed with
// kill -9 on a shared-memory link is noticed quickly, as TCP notices it).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ucp/api/ucp.h>

namespace moe {

// What an endpoint's user data points at: told (on the progress thread) when stream data has arrived.
class UcxStreamReady {
 public:
  virtual void on_stream_ready() = 0;

 protected:
  ~UcxStreamReady() = default;
};

class UcxContext {
 public:
  // The process-wide instance, made on first use (never destroyed: its thread sleeps when idle).
  // Throws NetError(ConnectFailed) when UCX cannot be initialised, naming the UCX status.
  static UcxContext& instance();

  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  // Runs `work` on the progress thread (in order of posting). Thread-safe.
  void post(std::function<void()> work);
  // Runs `work` on the progress thread once `delay` has passed. Thread-safe.
  void post_after(std::chrono::milliseconds delay, std::function<void()> work);
  bool on_progress_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  ucp_worker_h worker() const { return worker_; }  // progress thread only

 private:
  UcxContext();
  void run();
  void run_posted();
  int run_due_timers();  // milliseconds until the next one (-1: none)

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int worker_fd_ = -1;
  int wake_fd_ = -1;
  int epoll_fd_ = -1;
  std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> timers_;  // guarded by mutex_
  std::thread thread_;
};

// "UCX <what> failed: <ucs_status_string> (<status>)".
std::string ucx_failure(const std::string& what, ucs_status_t status);

}  // namespace moe
