// The stop signal watch (see stop_signal_watch.h).
#include "runtime/bootstrap/stop_signal_watch.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace moe {
namespace {

// The thread that takes the stop signals now: the polling thread while starting, then main (0: main).
std::atomic<pid_t> g_stop_signal_taker{0};

// Threads a library started before the signals were blocked (OpenBLAS's pool, started when it is
// loaded) leave them unblocked, so the kernel may deliver a stop signal there, where the default
// action would end the process without an answer. This handler runs only in such a thread (a
// thread that blocks the signal takes it with sigwait) and sends it on to the taker, which has it
// blocked, so it waits pending there for that thread's sigwait.
extern "C" void forward_stop_signal(int signal) {
  const int saved_errno = errno;
  pid_t to = g_stop_signal_taker.load();
  if (to == 0) to = ::getpid();
  if (to != static_cast<pid_t>(::syscall(SYS_gettid))) ::syscall(SYS_tgkill, ::getpid(), to, signal);
  errno = saved_errno;
}

void install_forwarding(const sigset_t& signals) {
  struct sigaction action {};
  action.sa_handler = forward_stop_signal;
  sigfillset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal : {SIGINT, SIGTERM, SIGUSR1}) {
    if (sigismember(&signals, signal) == 1) ::sigaction(signal, &action, nullptr);
  }
}

}  // namespace

StopSignalWatch::StopSignalWatch(sigset_t signals, std::function<void(int)> on_early_stop) : signals_(signals) {
  g_stop_signal_taker = 0;
  install_forwarding(signals_);
  thread_ = std::thread([this, on_early_stop = std::move(on_early_stop)] {
    g_stop_signal_taker = static_cast<pid_t>(::syscall(SYS_gettid));
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
  g_stop_signal_taker = 0;  // main, which calls wait()
}

int StopSignalWatch::wait() {
  if (const int signal = received_) return signal;
  int signal = 0;
  while (sigwait(&signals_, &signal) != 0) {
  }
  return signal;
}

}  // namespace moe
