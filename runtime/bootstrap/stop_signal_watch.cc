// The stop signal thread (see stop_signal_watch.h).
#include "runtime/bootstrap/stop_signal_watch.h"

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace moe {

StopSignalWatch::StopSignalWatch(sigset_t signals, std::function<void(int)> on_early_stop) {
  // Detached: it lives until a signal comes or the process ends; it touches only this object, which
  // main keeps for the whole life of the process.
  std::thread([this, signals, on_early_stop = std::move(on_early_stop)] {
    int received = 0;
    while (sigwait(&signals, &received) != 0) {
    }
    {
      std::lock_guard lock(mutex_);
      if (serving_) {
        received_ = received;
        arrived_.notify_all();
        return;
      }
    }
    on_early_stop(received);
    std::fflush(nullptr);
    std::_Exit(0);
  }).detach();
}

void StopSignalWatch::serving() {
  std::lock_guard lock(mutex_);
  serving_ = true;
}

int StopSignalWatch::wait() {
  std::unique_lock lock(mutex_);
  arrived_.wait(lock, [&] { return received_ != 0; });
  return received_;
}

}  // namespace moe
