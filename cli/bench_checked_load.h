// Checked load on a running cluster, for `moectl bench faults` and the chaos suite (tests/chaos/): a few
// client threads send forward calls (one shared ClusterClient, a per-call deadline) with inputs whose
// LocalEngine outputs were computed up front, and record every call: when it started and ended, and
// whether it gave the right output, a deadline or unavailable error, a wrong output or another error. Figures over a
// time window come from the record: calls failed, the longest stretch without a successful call, the
// time until every call succeeds again after a fault, wrong answers. Every loop is bounded in count and
// time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/client/cluster_client.h"
#include "runtime/engine/local_engine.h"

namespace moe {

struct CheckedLoadOptions {
  std::string coordinator;                      // HOST:PORT
  std::string synthetic = "tiny";               // the model the coordinator serves (synthetic preset)
  uint64_t model_seed = 0;
  int threads = 2;                              // client threads
  std::chrono::milliseconds deadline{3000};     // per forward call
  std::chrono::milliseconds request_timeout{500};
  std::chrono::milliseconds connect_timeout{500};
  size_t jobs = 16;                             // distinct inputs (1..max_tokens tokens, every MoE layer)
  int64_t max_tokens = 24;
  size_t max_calls_per_thread = 200000;         // bound on each thread's loop besides stop()
  std::chrono::milliseconds max_run{600000};    // bound on the whole run besides stop()
  std::chrono::milliseconds pause{0};           // between two calls of one thread
  std::string cluster_token;
  double tolerance = 1e-4;                      // relative error of a right answer (f32 on the wire)
};

using LoadClock = std::chrono::steady_clock;

struct LoadCall {
  // kDeadline and kUnavailable are the clear errors a call may end with (ClusterDeadlineError, and
  // ClusterUnavailableError when experts have no replica anywhere); kError is any other.
  enum class Outcome { kRight, kDeadline, kUnavailable, kWrong, kError };
  LoadClock::time_point start, end;
  Outcome outcome = Outcome::kRight;
  int thread = 0;
  int32_t layer = 0;
  int64_t tokens = 0;
  std::string detail;  // for anything but kRight: what happened
  double seconds() const { return std::chrono::duration<double>(end - start).count(); }
  bool right() const { return outcome == Outcome::kRight; }
};

const char* outcome_name(LoadCall::Outcome outcome);

class CheckedLoad {
 public:
  // Computes the jobs' reference outputs and connects a ClusterClient (throws when it cannot).
  explicit CheckedLoad(CheckedLoadOptions options);
  ~CheckedLoad();  // stop()
  CheckedLoad(const CheckedLoad&) = delete;
  CheckedLoad& operator=(const CheckedLoad&) = delete;

  void start();
  void stop();  // idempotent; joins the threads
  std::vector<LoadCall> calls() const;  // every finished call so far, in finishing order
  size_t right_calls() const { return right_.load(); }
  // Every job once through a new ClusterClient (fresh model + placement from the coordinator), with
  // `deadline` per call: "" when all were right, else what went wrong first.
  std::string check_with_new_client(std::chrono::milliseconds deadline) const;
  ClusterClient& client() { return *client_; }
  const CheckedLoadOptions& options() const { return options_; }

 private:
  struct Job {
    int32_t layer = 0;
    Matrix x, want;
  };
  void run(int thread);
  // Judges one call's output against the job's reference; sets call.outcome and call.detail.
  void judge(const Job& job, const Matrix& got, LoadCall& call) const;
  ClusterClientOptions client_options(std::chrono::milliseconds deadline) const;

  CheckedLoadOptions options_;
  std::vector<Job> jobs_;
  std::unique_ptr<ClusterClient> client_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> right_{0};
  std::vector<std::thread> threads_;
  mutable std::mutex mutex_;
  std::vector<LoadCall> calls_;
};

// Figures of the calls that overlap [from, to]; times in seconds. `anchor` is the fault (or its end):
// time_to_full_service is from there to the end of the last call that failed or took longer than
// `slow_seconds` (0 when none did after it), and recovered says at least `min_right_after` right calls
// started after that call.
struct LoadFigures {
  size_t calls = 0, right = 0, failed = 0, wrong = 0, errors = 0;
  double longest_interruption = 0;  // the longest stretch of [from, to] in which no call ended right
  double time_to_full_service = 0;
  bool recovered = true;
  double longest_call = 0;
  std::string first_problem;        // the first wrong answer, else the first non-deadline error, with its detail
  double failed_percent() const { return calls ? 100.0 * double(failed) / double(calls) : 0.0; }
};

LoadFigures load_figures(const std::vector<LoadCall>& calls, LoadClock::time_point from, LoadClock::time_point to,
                         LoadClock::time_point anchor, size_t min_right_after = 5,
                         double slow_seconds = std::numeric_limits<double>::infinity());

}  // namespace moe
