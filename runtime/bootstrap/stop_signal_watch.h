// Answers the stop signals (SIGTERM, SIGINT, and SIGUSR1 under mpirun) in every phase of a daemon's life.
// Until serving(), a thread polls for them (sigtimedwait, 50 ms) from the moment the daemon blocks them,
// through the slow parts of its start (a big model, a state file, the MPI rendezvous): a signal then logs
// one line through `on_early_stop` and ends the process at once with exit status 0 (nothing is served
// yet, so nothing is lost). serving() stops that thread; wait() then takes the next signal on the calling
// thread (main). Threads a library started before the signals were blocked (OpenBLAS's pool) leave
// them unblocked; a handler there sends a stop signal the kernel gave them on to the thread that
// takes them, instead of the default action ending the process unanswered.
#pragma once

#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace moe {

class StopSignalWatch {
 public:
  // `signals` as block_stop_signals returned them (already blocked in this thread).
  StopSignalWatch(sigset_t signals, std::function<void(int signal)> on_early_stop);
  ~StopSignalWatch();  // serving()
  StopSignalWatch(const StopSignalWatch&) = delete;
  StopSignalWatch& operator=(const StopSignalWatch&) = delete;

  // The daemon serves: the polling thread ends (within 50 ms); later signals go to wait().
  void serving();
  // Blocks the calling thread until a stop signal arrives; returns it.
  int wait();

 private:
  sigset_t signals_;
  std::atomic<bool> serving_{false};
  std::atomic<int> received_{0};  // a signal the polling thread took as serving() was called
  std::thread thread_;
};

}  // namespace moe
