// Answers the stop signals (SIGTERM, SIGINT, and SIGUSR1 under mpirun) in every phase of a daemon's life.
// A thread waits for them from the moment the daemon blocks them, before the slow parts of its start (a
// big model, a state file, the MPI rendezvous): a signal that comes before serving() logs one line through
// `on_early_stop` and ends the process at once with exit status 0 (nothing is served yet, so nothing is
// lost); one that comes after is handed to wait(), and the main thread stops the service in order.
#pragma once

#include <signal.h>

#include <condition_variable>
#include <functional>
#include <mutex>

namespace moe {

class StopSignalWatch {
 public:
  // `signals` as block_stop_signals returned them (already blocked in this thread).
  StopSignalWatch(sigset_t signals, std::function<void(int signal)> on_early_stop);
  StopSignalWatch(const StopSignalWatch&) = delete;
  StopSignalWatch& operator=(const StopSignalWatch&) = delete;

  // The daemon serves: later signals go to wait().
  void serving();
  // Blocks until a stop signal has arrived (after serving()); returns it.
  int wait();

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  bool serving_ = false;
  int received_ = 0;
};

}  // namespace moe
