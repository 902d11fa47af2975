// StopSignalWatch with a thread that leaves the stop signals unblocked (as OpenBLAS's pool does, started
// before main blocks them): a SIGTERM sent to the process is still answered, not the default action.
#include "runtime/bootstrap/stop_signal_watch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "runtime/bootstrap/daemon_startup.h"

namespace moe {
namespace {

// Runs in the death test's child: returns through _exit, 0 when wait() answered SIGTERM.
[[noreturn]] void answer_sigterm_with_an_unblocked_thread(bool serving) {
  std::promise<void> done;
  std::thread library_thread([f = done.get_future()] { f.wait(); });  // SIGTERM unblocked here
  sigset_t signals = block_stop_signals(false);
  StopSignalWatch watch(signals, [serving](int) { _exit(serving ? 2 : 0); });
  if (serving) {
    watch.serving();
    ::kill(::getpid(), SIGTERM);  // main blocks it and is not in sigwait yet: only library_thread wants it
    const int got = watch.wait();
    _exit(got == SIGTERM ? 0 : 3);
  }
  for (int i = 0; i < 500; ++i) {  // the early-stop path exits 0 from the polling thread
    ::kill(::getpid(), SIGTERM);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  _exit(4);
}

TEST(StopSignalWatchDeathTest, SigtermWhileServingIsAnsweredDespiteAThreadThatDoesNotBlockIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(answer_sigterm_with_an_unblocked_thread(true), ::testing::ExitedWithCode(0), "");
}

TEST(StopSignalWatchDeathTest, SigtermWhileStartingIsAnsweredDespiteAThreadThatDoesNotBlockIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(answer_sigterm_with_an_unblocked_thread(false), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace moe
