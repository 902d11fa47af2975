// The worker's count of forward requests in flight until their replies are written (see forward_slots.h).
#include "worker/forward_slots.h"

namespace moe {

std::shared_ptr<ForwardSlots> ForwardSlots::create(uint32_t max, std::function<void(size_t)> observe) {
  return std::make_shared<ForwardSlots>(Private{}, max, std::move(observe));
}

ForwardSlots::ForwardSlots(Private, uint32_t max, std::function<void(size_t)> observe)
    : max_(max), observe_(std::move(observe)) {}

std::shared_ptr<void> ForwardSlots::try_acquire() {
  size_t count = held_.load();
  do {
    if (count >= max_) return nullptr;
  } while (!held_.compare_exchange_weak(count, count + 1));
  notify();
  // The pointer is only a non-null handle; the deleter gives the slot back.
  return std::shared_ptr<void>(this, [self = shared_from_this()](void*) { self->release(); });
}

void ForwardSlots::release() {
  held_.fetch_sub(1);
  notify();
}

void ForwardSlots::notify() {
  // Read under the lock: whichever change notifies last reports the count after every change.
  std::lock_guard lock(observer_mutex_);
  if (observe_) observe_(held_.load());
}

void ForwardSlots::detach_observer() {
  std::lock_guard lock(observer_mutex_);
  observe_ = nullptr;
}

}  // namespace moe
