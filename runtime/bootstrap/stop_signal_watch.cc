// The stop signal watch (see stop_signal_watch.h).
#include "runtime/bootstrap/stop_signal_watch.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace moe {

StopSignalWatch::StopSignalWatch(sigset_t signals, std::function<void(int)> on_early_stop) : signals_(signals) {
  thread_ = std::thread([this, on_early_stop = std::move(on_early_stop)] {
    while (!serving_) {
      timespec poll{0, 50 * 1000 * 1000};
      const int signal = sigtimedwait(&signals_, nullptr, &poll);
      if (signal <= 0) continue;  // timeout or EINTR
      if (serving_) {
        received_ = signal;
        return;
      }
      on_early_stop(signal);
      std::fflush(nullptr);
      std::_Exit(0);
    }
  });
}

StopSignalWatch::~StopSignalWatch() { serving(); }

void StopSignalWatch::serving() {
  serving_ = true;
  if (thread_.joinable()) thread_.join();
}

int StopSignalWatch::wait() {
  if (const int signal = received_) return signal;
  int signal = 0;
  while (sigwait(&signals_, &signal) != 0) {
  }
  return signal;
}

}  // namespace moe
