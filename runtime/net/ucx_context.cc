// UcxContext: ucp_init, one worker, and the progress thread (see ucx_context.h).
#include "runtime/net/ucx_context.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>

#include "runtime/net/net_error.h"
#include "runtime/net/net_log.h"

namespace moe {

namespace {


// Progress calls that find nothing to do before the thread arms the worker and sleeps.
constexpr int kIdleSpins = 256;

void default_env(const char* name, const char* value) {
  if (std::getenv(name) == nullptr) setenv(name, value, 0);
}

void check(ucs_status_t status, const std::string& what) {
  if (status != UCS_OK) throw NetError(NetError::Kind::ConnectFailed, ucx_failure(what, status));
}

}  // namespace

std::string ucx_failure(const std::string& what, ucs_status_t status) {
  return "UCX " + what + " failed: " + ucs_status_string(status) + " (" + std::to_string(static_cast<int>(status)) + ")";
}

UcxContext& UcxContext::instance() {
  static UcxContext* context = new UcxContext();
  return *context;
}

UcxContext::UcxContext() {
  default_env("UCX_KEEPALIVE_INTERVAL", "1s");

  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_STREAM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 0;
  const ucs_status_t init = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  check(init, "ucp_init");

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(context_, &worker_params, &worker_), "ucp_worker_create");
  check(ucp_worker_get_efd(worker_, &worker_fd_), "ucp_worker_get_efd");

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (wake_fd_ < 0 || epoll_fd_ < 0) {
    throw NetError(NetError::Kind::ConnectFailed, std::string("UCX progress thread: eventfd/epoll: ") + std::strerror(errno));
  }
  for (int fd : {worker_fd_, wake_fd_}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      throw NetError(NetError::Kind::ConnectFailed, std::string("UCX progress thread: epoll_ctl: ") + std::strerror(errno));
    }
  }
  thread_ = std::thread([this] { run(); });
}

void UcxContext::post(std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(work));
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void UcxContext::post_after(std::chrono::milliseconds delay, std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    timers_.emplace(std::chrono::steady_clock::now() + delay, std::move(work));
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

int UcxContext::run_due_timers() {
  std::vector<std::function<void()>> due;
  int next = -1;
  {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      due.push_back(std::move(timers_.begin()->second));
      timers_.erase(timers_.begin());
    }
    if (!timers_.empty()) {
      next = static_cast<int>(
          std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - now).count());
    }
  }
  for (auto& w : due) w();
  return next;
}

void UcxContext::run_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(mutex_);
    work.swap(posted_);
  }
  for (auto& w : work) {
    try {
      w();
    } catch (const std::exception& e) {
      net_log(std::string("UCX progress thread: posted work threw: ") + e.what());
    }
  }
}

void UcxContext::run() {
  int idle = 0;
  for (;;) {
    bool busy = false;
    {
      std::lock_guard lock(mutex_);
      busy = !posted_.empty();
    }
    if (busy) run_posted();
    run_due_timers();
    while (ucp_worker_progress(worker_) != 0) busy = true;
    ucp_stream_poll_ep_t ready[16];
    const ssize_t n_ready = ucp_stream_worker_poll(worker_, ready, 16, 0);
    for (ssize_t i = 0; i < n_ready; ++i) static_cast<UcxStreamReady*>(ready[i].user_data)->on_stream_ready();
    if (n_ready > 0) busy = true;
    if (busy) {
      idle = 0;
      continue;
    }
    if (++idle < kIdleSpins) continue;
    idle = 0;
    const ucs_status_t armed = ucp_worker_arm(worker_);
    if (armed == UCS_ERR_BUSY) continue;  // events came in meanwhile
    {
      std::lock_guard lock(mutex_);
      if (!posted_.empty()) continue;
    }
    const int next_timer = run_due_timers();
    epoll_event events[2];
    const int n = epoll_wait(epoll_fd_, events, 2, next_timer < 0 ? 1000 : std::min(next_timer, 1000));
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_fd_) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &count, sizeof(count));
      }
    }
  }
}

}  // namespace moe
