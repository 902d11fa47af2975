// CheckedLoad: reference outputs, client threads, the call record and its figures (see bench_checked_load.h).
#include "cli/bench_checked_load.h"
#include "cli/random_tokens.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/expert_backend.h"
#include "runtime/model/synthetic_model.h"

namespace moe {

namespace {


// max |got - want| / max |want| (the parity tests' measure).
double relative_error(const Matrix& got, const Matrix& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.data.size(); ++i) {
    num = std::max(num, static_cast<double>(std::abs(got.data[i] - want.data[i])));
    den = std::max(den, static_cast<double>(std::abs(want.data[i])));
  }
  return den == 0 ? num : num / den;
}

}  // namespace

const char* outcome_name(LoadCall::Outcome outcome) {
  switch (outcome) {
    case LoadCall::Outcome::kRight: return "right";
    case LoadCall::Outcome::kDeadline: return "deadline error";
    case LoadCall::Outcome::kUnavailable: return "unavailable error";
    case LoadCall::Outcome::kWrong: return "WRONG ANSWER";
    case LoadCall::Outcome::kError: return "error";
  }
  return "unknown";
}

CheckedLoad::CheckedLoad(CheckedLoadOptions options) : options_(std::move(options)) {
  if (options_.threads < 1 || options_.jobs < 1 || options_.max_tokens < 1)
    throw std::invalid_argument("CheckedLoad: threads, jobs and max_tokens must be >= 1, got " +
                                std::to_string(options_.threads) + ", " + std::to_string(options_.jobs) + ", " +
                                std::to_string(options_.max_tokens));
  auto source = SyntheticLayerSource::from_preset(options_.synthetic, options_.model_seed);
  LocalEngine reference(*source, make_cpu_backend(1));
  const ModelSpec& spec = reference.spec();
  for (size_t i = 0; i < options_.jobs; ++i) {
    Job job;
    job.layer = spec.moe_layers[i % spec.moe_layers.size()];
    job.x = random_tokens(1 + static_cast<int64_t>((i * 7) % static_cast<size_t>(options_.max_tokens)),
                          spec.hidden_size, 1000 + i);
    job.want = reference.forward(job.layer, job.x);
    jobs_.push_back(std::move(job));
  }
  client_ = std::make_unique<ClusterClient>(options_.coordinator, client_options(options_.deadline));
  if (client_->spec().hidden_size != spec.hidden_size)
    throw std::runtime_error("CheckedLoad: the cluster at " + options_.coordinator + " serves hidden size " +
                             std::to_string(client_->spec().hidden_size) + ", the reference '" + options_.synthetic +
                             "' has " + std::to_string(spec.hidden_size));
}

CheckedLoad::~CheckedLoad() { stop(); }

ClusterClientOptions CheckedLoad::client_options(std::chrono::milliseconds deadline) const {
  ClusterClientOptions co;
  co.wire_dtype = wire::DType::F32;
  co.deadline = deadline;
  co.request_timeout = options_.request_timeout;
  co.connect_timeout = options_.connect_timeout;
  co.cluster_token = options_.cluster_token;
  return co;
}

void CheckedLoad::judge(const Job& job, const Matrix& got, LoadCall& call) const {
  if (got.rows != job.want.rows || got.cols != job.want.cols) {
    call.outcome = LoadCall::Outcome::kWrong;
    call.detail = "shape " + std::to_string(got.rows) + "x" + std::to_string(got.cols) + ", want " +
                  std::to_string(job.want.rows) + "x" + std::to_string(job.want.cols);
  } else if (const double error = relative_error(got, job.want); !(error < options_.tolerance)) {
    call.outcome = LoadCall::Outcome::kWrong;
    call.detail = "relative error " + std::to_string(error) + " (tolerance " + std::to_string(options_.tolerance) + ")";
  }
}

std::string CheckedLoad::check_with_new_client(std::chrono::milliseconds deadline) const {
  try {
    ClusterClient fresh(options_.coordinator, client_options(deadline));
    for (const Job& job : jobs_) {
      LoadCall call;
      judge(job, fresh.forward(job.layer, job.x), call);
      if (!call.right())
        return "a new client got a " + std::string(outcome_name(call.outcome)) + " on layer " +
               std::to_string(job.layer) + ", " + std::to_string(job.x.rows) + " tokens: " + call.detail;
    }
  } catch (const std::exception& e) {
    return std::string("a new client failed: ") + e.what();
  }
  return "";
}

void CheckedLoad::start() {
  stop_ = false;
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
}

void CheckedLoad::stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::vector<LoadCall> CheckedLoad::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

void CheckedLoad::run(int thread) {
  const auto run_end = LoadClock::now() + options_.max_run;
  for (size_t n = 0; n < options_.max_calls_per_thread && !stop_.load() && LoadClock::now() < run_end; ++n) {
    const Job& job = jobs_[(static_cast<size_t>(thread) * 5 + n) % jobs_.size()];
    LoadCall call;
    call.thread = thread;
    call.layer = job.layer;
    call.tokens = job.x.rows;
    call.start = LoadClock::now();
    try {
      judge(job, client_->forward(job.layer, job.x), call);
    } catch (const ClusterDeadlineError& e) {
      call.outcome = LoadCall::Outcome::kDeadline;
      call.detail = e.what();
    } catch (const ClusterUnavailableError& e) {
      call.outcome = LoadCall::Outcome::kUnavailable;
      call.detail = e.what();
    } catch (const std::exception& e) {
      call.outcome = LoadCall::Outcome::kError;
      call.detail = e.what();
    }
    call.end = LoadClock::now();
    if (call.right()) ++right_;
    {
      std::lock_guard lock(mutex_);
      calls_.push_back(std::move(call));
    }
    if (options_.pause.count() > 0) std::this_thread::sleep_for(options_.pause);
  }
}

LoadFigures load_figures(const std::vector<LoadCall>& calls, LoadClock::time_point from, LoadClock::time_point to,
                         LoadClock::time_point anchor, size_t min_right_after, double slow_seconds) {
  LoadFigures f;
  std::vector<LoadClock::time_point> right_ends;
  LoadClock::time_point last_failure_end = anchor;
  bool failed_after_anchor = false;
  for (const LoadCall& c : calls) {
    if (c.end < from || c.start > to) continue;
    ++f.calls;
    f.longest_call = std::max(f.longest_call, c.seconds());
    if (c.right()) {
      ++f.right;
      right_ends.push_back(c.end);
      if (c.seconds() > slow_seconds && c.end >= anchor && c.end > last_failure_end) {
        last_failure_end = c.end;
        failed_after_anchor = true;
      }
      continue;
    }
    ++f.failed;
    if (c.outcome == LoadCall::Outcome::kWrong) ++f.wrong;
    if (c.outcome == LoadCall::Outcome::kError) ++f.errors;
    // The first wrong answer, else the first error that is not a deadline error.
    const bool first_wrong = c.outcome == LoadCall::Outcome::kWrong && f.wrong == 1;
    if (first_wrong || (f.first_problem.empty() && c.outcome == LoadCall::Outcome::kError))
      f.first_problem = std::string(outcome_name(c.outcome)) + " (thread " + std::to_string(c.thread) + ", layer " +
                        std::to_string(c.layer) + ", " + std::to_string(c.tokens) + " tokens): " + c.detail;
    if (c.end >= anchor && c.end > last_failure_end) {
      last_failure_end = c.end;
      failed_after_anchor = true;
    }
  }
  std::sort(right_ends.begin(), right_ends.end());
  LoadClock::time_point previous = from;
  for (auto t : right_ends) {
    if (t < from) continue;
    f.longest_interruption = std::max(f.longest_interruption, std::chrono::duration<double>(t - previous).count());
    previous = t;
  }
  f.longest_interruption = std::max(f.longest_interruption, std::chrono::duration<double>(to - previous).count());
  if (failed_after_anchor) f.time_to_full_service = std::chrono::duration<double>(last_failure_end - anchor).count();
  size_t right_after = 0;
  for (const LoadCall& c : calls)
    if (c.right() && c.start >= last_failure_end && c.start <= to) ++right_after;
  f.recovered = right_after >= min_right_after;
  return f;
}

}  // namespace moe
